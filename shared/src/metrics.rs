//! Metrics as CloudWatch Embedded Metric Format lines: one JSON object a line on stdout,
//! which CloudWatch Logs turns into metrics in the `Storefront` namespace, each by
//! `Function` and over all functions. No API call, no extra latency, nothing to grant.
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>
//!
//! Every request the edge serves writes `Requests`, `Latency`, `Errors4xx`, `Errors5xx`
//! and `RateLimited`; every batch of jobs writes `JobsDone` and `JobsFailed`. The Lambda
//! binaries and the local server print them ([`enable`], called at start); a library user
//! that did not ask for them (a test) prints nothing.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{json, Map, Value};

/// The CloudWatch namespace of every Storefront metric.
pub const NAMESPACE: &str = "Storefront";

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Prints metrics lines on stdout from now on.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// The unit CloudWatch records a metric in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Self::Count => "Count",
            Self::Milliseconds => "Milliseconds",
        }
    }
}

/// One EMF document: `metrics` (name, unit, value) of `function` at `timestamp_ms`, and
/// `properties` that are logged with them but are not metrics (the request id).
pub fn document(
    function: &str,
    timestamp_ms: i64,
    metrics: &[(&str, Unit, f64)],
    properties: &[(&str, Value)],
) -> Value {
    let definitions: Vec<Value> = metrics
        .iter()
        .map(|(name, unit, _)| json!({"Name": name, "Unit": unit.as_str()}))
        .collect();
    let mut root = Map::new();
    root.insert(
        "_aws".into(),
        json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                // Each metric by function, and over the whole stack (what the alarms watch).
                "Dimensions": [["Function"], []],
                "Metrics": definitions,
            }],
        }),
    );
    root.insert("Function".into(), Value::from(function));
    for (name, _, value) in metrics {
        root.insert((*name).into(), json!(value));
    }
    for (name, value) in properties {
        root.insert((*name).into(), value.clone());
    }
    Value::Object(root)
}

fn emit(document: &Value) {
    if !ENABLED.load(Ordering::Relaxed) {
        return;
    }
    let mut line = document.to_string();
    line.push('\n');
    // One write of the whole line, so lines of concurrent requests never interleave.
    let _ = std::io::stdout().lock().write_all(line.as_bytes());
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// The metrics of one request the edge answered.
pub fn request(function: &str, status: u16, latency_ms: f64, request_id: &str) {
    let class = |low: u16| f64::from(u8::from((low..low + 100).contains(&status)));
    emit(&document(
        function,
        now_ms(),
        &[
            ("Requests", Unit::Count, 1.0),
            ("Latency", Unit::Milliseconds, latency_ms),
            ("Errors4xx", Unit::Count, class(400)),
            ("Errors5xx", Unit::Count, class(500)),
            (
                "RateLimited",
                Unit::Count,
                f64::from(u8::from(status == 429)),
            ),
        ],
        &[("request_id", Value::from(request_id))],
    ));
}

/// The metrics of one batch of jobs.
pub fn jobs(function: &str, done: usize, failed: usize) {
    emit(&document(
        function,
        now_ms(),
        &[
            ("JobsDone", Unit::Count, done as f64),
            ("JobsFailed", Unit::Count, failed as f64),
        ],
        &[],
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_names_each_metric_with_its_value_on_the_root() {
        let doc = document(
            "me",
            1_800_000_000_000,
            &[
                ("Requests", Unit::Count, 1.0),
                ("Latency", Unit::Milliseconds, 2.5),
            ],
            &[("request_id", Value::from("req_1"))],
        );
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(doc["_aws"]["Timestamp"], 1_800_000_000_000_i64);
        assert_eq!(directive["Namespace"], "Storefront");
        assert_eq!(directive["Dimensions"], json!([["Function"], []]));
        assert_eq!(
            directive["Metrics"],
            json!([{"Name": "Requests", "Unit": "Count"}, {"Name": "Latency", "Unit": "Milliseconds"}])
        );
        // Every dimension and metric the directive names is a member of the root.
        assert_eq!(doc["Function"], "me");
        assert_eq!(doc["Requests"], 1.0);
        assert_eq!(doc["Latency"], 2.5);
        assert_eq!(doc["request_id"], "req_1");
    }
}
