//! A webhook receiver on 127.0.0.1 for tests and benchmarks: it records every request it
//! gets (headers, body, when) and answers from a script: the statuses queued with
//! [`Receiver::then`] first, then its default, each after the receiver's delay.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Delivered {
    pub headers: http::HeaderMap,
    pub body: String,
    /// When it arrived.
    pub at: Instant,
    /// The status it was answered with.
    pub status: u16,
}

impl Delivered {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Default)]
struct Script {
    queued: VecDeque<(u16, Vec<(String, String)>)>,
    default: u16,
    delay: Duration,
    received: Vec<Delivered>,
}

/// A running receiver; it stops when dropped.
pub struct Receiver {
    pub url: String,
    script: Arc<Mutex<Script>>,
    task: tokio::task::JoinHandle<()>,
}

fn locked(script: &Mutex<Script>) -> MutexGuard<'_, Script> {
    script
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Receiver {
    /// Starts a receiver answering `default` to everything, on a free loopback port.
    pub async fn start(default: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let url = format!("http://{}/hooks", listener.local_addr().expect("address"));
        let script = Arc::new(Mutex::new(Script {
            default,
            ..Script::default()
        }));
        let shared = script.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let script = shared.clone();
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req| answer(script.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { url, script, task }
    }

    /// Answers the next requests with `statuses`, in order, before the default.
    pub fn then(&self, statuses: &[u16]) {
        let mut script = locked(&self.script);
        script
            .queued
            .extend(statuses.iter().map(|status| (*status, Vec::new())));
    }

    /// Answers the next request with `status` and `headers`.
    pub fn then_with(&self, status: u16, headers: &[(&str, &str)]) {
        let headers = headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect();
        locked(&self.script).queued.push_back((status, headers));
    }

    /// Answers every request from now on with `status`.
    pub fn answer(&self, status: u16) {
        locked(&self.script).default = status;
    }

    /// Waits `delay` before each answer.
    pub fn slow(&self, delay: Duration) {
        locked(&self.script).delay = delay;
    }

    /// What was received so far.
    pub fn received(&self) -> Vec<Delivered> {
        locked(&self.script).received.clone()
    }

    /// Waits until `n` requests have come (or `timeout` passed) and returns them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Delivered> {
        let deadline = Instant::now() + timeout;
        loop {
            let received = self.received();
            if received.len() >= n || Instant::now() >= deadline {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer(
    script: Arc<Mutex<Script>>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let arrived = Instant::now();
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    let ((status, headers), delay) = {
        let mut script = locked(&script);
        let next = script
            .queued
            .pop_front()
            .unwrap_or((script.default, Vec::new()));
        (next, script.delay)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    locked(&script).received.push(Delivered {
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
        at: arrived,
        status,
    });
    let mut response =
        http::Response::new(Full::new(Bytes::from(format!("{{\"answered\":{status}}}"))));
    *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}
