//! X-Ray subsegments for the AWS SDK's calls: with active tracing, Lambda records each
//! invocation as a segment; this interceptor, on every SDK client, records each DynamoDB,
//! SQS, S3 or SSM call inside it as a subsegment (service, operation, status, timing), so
//! a trace shows where an invocation's time went. It sends the subsegment to the X-Ray
//! daemon Lambda runs beside the function (`AWS_XRAY_DAEMON_ADDRESS`, UDP), and only for
//! a sampled invocation (`Sampled=1` in `_X_AMZN_TRACE_ID`, which the Lambda runtime sets
//! per invocation). Outside Lambda it does nothing. A send that fails is dropped: tracing
//! never fails a call.
//! <https://docs.aws.amazon.com/xray/latest/devguide/xray-api-sendingdata.html>

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use serde_json::{json, Value};

/// What precedes every document sent to the daemon.
const HEADER: &str = "{\"format\": \"json\", \"version\": 1}\n";

/// The interceptor; clone it into every SDK client's configuration.
#[derive(Clone, Debug)]
pub struct XRay {
    daemon: Option<Arc<UdpSocket>>,
    /// A fixed trace header (tests); otherwise the invocation's, from the environment.
    trace_header: Option<String>,
}

/// When the call started, kept in the call's own configuration bag.
#[derive(Clone, Debug)]
struct Started(f64);

impl Storable for Started {
    type Storer = StoreReplace<Self>;
}

/// An invocation's trace, as `_X_AMZN_TRACE_ID` names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    pub root: String,
    pub parent: String,
    pub sampled: bool,
}

impl Trace {
    /// Parses `Root=1-…;Parent=…;Sampled=1` (fields in any order, others ignored).
    pub fn parse(header: &str) -> Option<Self> {
        let (mut root, mut parent, mut sampled) = (None, None, false);
        for field in header.split(';') {
            match field.trim().split_once('=') {
                Some(("Root", value)) => root = Some(value.to_owned()),
                Some(("Parent", value)) => parent = Some(value.to_owned()),
                Some(("Sampled", value)) => sampled = value == "1",
                _ => {}
            }
        }
        Some(Self {
            root: root?,
            parent: parent?,
            sampled,
        })
    }
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A new subsegment id: 16 hex digits.
fn subsegment_id() -> String {
    format!("{:016x}", ulid::Ulid::new().0 as u64)
}

/// The subsegment document of one SDK call.
pub fn subsegment(
    trace: &Trace,
    service: &str,
    operation: &str,
    (start, end): (f64, f64),
    status: Option<u16>,
) -> Value {
    let mut doc = json!({
        "name": service,
        "id": subsegment_id(),
        "trace_id": trace.root,
        "parent_id": trace.parent,
        "type": "subsegment",
        "namespace": "aws",
        "start_time": start,
        "end_time": end,
        "aws": {
            "operation": operation,
            "region": std::env::var("AWS_REGION").unwrap_or_default(),
        },
    });
    match status {
        Some(status) => {
            doc["http"] = json!({"response": {"status": status}});
            // X-Ray's vocabulary: a 4xx is an error (the caller's), a 5xx a fault.
            if (400..500).contains(&status) {
                doc["error"] = json!(true);
            }
            if status >= 500 {
                doc["fault"] = json!(true);
            }
        }
        // No answer at all (a timeout, a refused connection).
        None => doc["fault"] = json!(true),
    }
    doc
}

impl XRay {
    /// Reports to the daemon Lambda names in `AWS_XRAY_DAEMON_ADDRESS`; without it (outside
    /// Lambda, or tracing off), an interceptor that does nothing.
    pub fn from_env() -> Self {
        let daemon = std::env::var("AWS_XRAY_DAEMON_ADDRESS")
            .ok()
            .and_then(|address| Self::connect(&address));
        Self {
            daemon,
            trace_header: None,
        }
    }

    /// Reports to the daemon at `address` for the invocation `trace_header` names.
    pub fn to(address: &str, trace_header: &str) -> Self {
        Self {
            daemon: Self::connect(address),
            trace_header: Some(trace_header.to_owned()),
        }
    }

    fn connect(address: &str) -> Option<Arc<UdpSocket>> {
        // Lambda's value may list a TCP and a UDP address: "127.0.0.1:2000" or
        // "169.254.79.129:2000", sometimes "udp:… tcp:…".
        let address = address
            .split_whitespace()
            .find_map(|part| part.strip_prefix("udp:"))
            .unwrap_or(address);
        let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
        socket.connect(address).ok()?;
        Some(Arc::new(socket))
    }

    fn trace(&self) -> Option<Trace> {
        let header = match &self.trace_header {
            Some(header) => header.clone(),
            None => std::env::var("_X_AMZN_TRACE_ID").ok()?,
        };
        Trace::parse(&header).filter(|trace| trace.sampled)
    }
}

impl Intercept for XRay {
    fn name(&self) -> &'static str {
        "XRaySubsegments"
    }

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.daemon.is_some() {
            cfg.interceptor_state().store_put(Started(now_seconds()));
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let (Some(daemon), Some(trace)) = (&self.daemon, self.trace()) else {
            return Ok(());
        };
        let Some(Started(start)) = cfg.load::<Started>().cloned() else {
            return Ok(());
        };
        let (service, operation) = cfg
            .load::<Metadata>()
            .map_or(("AWS", "unknown"), |m| (m.service(), m.name()));
        let status = context.response().map(|r| r.status().as_u16());
        let doc = subsegment(&trace, service, operation, (start, now_seconds()), status);
        let _ = daemon.send(format!("{HEADER}{doc}").as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trace_header_is_read_in_any_order_and_only_a_sampled_one_is_reported() {
        let trace = Trace::parse("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1;Lineage=a:0").unwrap();
        assert_eq!(trace.root, "1-5759e988-bd862e3fe1be46a994272793");
        assert_eq!(trace.parent, "53995c3f42cd8ad8");
        assert!(trace.sampled);
        let unsampled = Trace::parse(
            "Sampled=0;Parent=53995c3f42cd8ad8;Root=1-5759e988-bd862e3fe1be46a994272793",
        )
        .unwrap();
        assert!(!unsampled.sampled);
        assert_eq!(Trace::parse("Sampled=1"), None);
    }

    #[test]
    fn a_subsegment_names_the_call_and_marks_errors_and_faults() {
        let trace = Trace::parse(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )
        .unwrap();
        let ok = subsegment(&trace, "DynamoDB", "GetItem", (1.0, 1.5), Some(200));
        assert_eq!(ok["type"], "subsegment");
        assert_eq!(ok["parent_id"], "53995c3f42cd8ad8");
        assert_eq!(ok["aws"]["operation"], "GetItem");
        assert_eq!(ok["id"].as_str().unwrap().len(), 16);
        assert!(ok.get("error").is_none() && ok.get("fault").is_none());
        let refused = subsegment(&trace, "DynamoDB", "PutItem", (1.0, 1.5), Some(400));
        assert_eq!(refused["error"], true);
        let failed = subsegment(&trace, "SQS", "SendMessage", (1.0, 1.5), None);
        assert_eq!(failed["fault"], true);
    }
}
