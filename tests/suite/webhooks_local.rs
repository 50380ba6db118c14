//! Webhooks through the local server as it runs: its relay, worker loop and queue delays
//! deliver an order's events to a receiver on 127.0.0.1 (`STOREFRONT_WEBHOOK_ALLOW_LOOPBACK`),
//! retry on the schedule in real time, and lose no event to a crash between the write and
//! the relay. Every bound on time here only ends a test that would otherwise hang.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use storefront::clock::SystemClock;
use storefront::config::RateLimits;
use storefront::context::AppContext;
use storefront::domain::RetrySchedule;
use storefront_local::{Options, Server};
use storefront_tests::receiver::Receiver;

use crate::helpers::{self, LocalServer};

const PASSWORD: &str = "a long passphrase";

fn with_webhooks(options: &mut Options, schedule: &str) {
    options.webhook_allow_loopback = true;
    options.webhook_retry_schedule = Some(RetrySchedule::parse(schedule).expect("schedule"));
}

/// A client of one running server.
pub(crate) struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    pub(crate) fn new(base: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Value {
        let (status, answer) = self
            .send(reqwest::Method::POST, path, token, Some(body), &[])
            .await;
        assert!(
            (200..300).contains(&status),
            "POST {path}: {status} {answer}"
        );
        answer
    }

    async fn get(&self, path: &str, token: &str) -> Value {
        let (status, answer) = self
            .send(reqwest::Method::GET, path, Some(token), None, &[])
            .await;
        assert_eq!(status, 200, "GET {path}: {answer}");
        answer
    }

    /// An endpoint's deliveries log once it holds `n` attempts (an attempt is logged just
    /// after the receiver has answered it).
    async fn deliveries(&self, owner: &str, endpoint: &str, n: usize) -> Vec<Value> {
        let path = format!("/v1/webhook-endpoints/{endpoint}/deliveries");
        for _ in 0..300 {
            let log = self.get(&path, owner).await;
            let items = log["items"].as_array().cloned().unwrap_or_default();
            if items.len() >= n {
                return items;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the deliveries log never held {n} attempts");
    }

    /// A shop and its owner's token.
    pub(crate) async fn shop(&self) -> (String, String) {
        let shop = self
            .post(
                "/v1/tenants",
                None,
                json!({"name": "Tea", "currency": "eur", "owner": {"email": "o@example.com", "password": PASSWORD, "name": "O"}}),
            )
            .await;
        (
            shop["tenant"]["id"].as_str().unwrap().to_owned(),
            shop["tokens"]["access_token"].as_str().unwrap().to_owned(),
        )
    }

    async fn endpoint(&self, owner: &str, receiver: &Receiver, events: Value) -> (String, String) {
        let endpoint = self
            .post(
                "/v1/webhook-endpoints",
                Some(owner),
                json!({"url": receiver.url, "events": events}),
            )
            .await;
        (
            endpoint["id"].as_str().unwrap().to_owned(),
            endpoint["secret"].as_str().unwrap().to_owned(),
        )
    }

    pub(crate) async fn product(&self, owner: &str, stock: i64) -> String {
        let product = self
            .post(
                "/v1/products",
                Some(owner),
                json!({"sku": "T", "name": "Tea", "description": "", "price": {"amount": 450, "currency": "eur"}, "stock": stock}),
            )
            .await;
        product["id"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn order(&self, token: &str, product: &str, key: &str) -> String {
        let (status, placed) = self
            .send(
                reqwest::Method::POST,
                "/v1/orders",
                Some(token),
                Some(json!({"items": [{"product_id": product, "quantity": 1}]})),
                &[("idempotency-key", key)],
            )
            .await;
        assert_eq!(status, 201, "{placed}");
        placed["id"].as_str().unwrap().to_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_server_delivers_an_order_flow_to_a_receiver_on_loopback() {
    let local = LocalServer::start_with(|o| with_webhooks(o, "0,1,1")).await;
    let client = Client::new(local.server.url());
    let receiver = Receiver::start(200).await;
    let (_, owner) = client.shop().await;
    let events = json!(["order.created", "order.paid", "order.cancelled"]);
    let (endpoint, secret) = client.endpoint(&owner, &receiver, events).await;
    let product = client.product(&owner, 5).await;
    let order = client.order(&owner, &product, "flow-1").await;
    // Paid through the local provider: its confirm stands in for the card form.
    let payment = client
        .post(
            &format!("/v1/orders/{order}/payment"),
            Some(&owner),
            json!({}),
        )
        .await;
    let intent = payment["payment_intent_id"].as_str().unwrap();
    client
        .post(
            &format!("/_payments/{intent}/confirm"),
            None,
            json!({"client_secret": payment["client_secret"]}),
        )
        .await;
    for _ in 0..300 {
        let read = client.get(&format!("/v1/orders/{order}"), &owner).await;
        if read["status"] == "paid" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    client
        .post(
            &format!("/v1/orders/{order}/cancel"),
            Some(&owner),
            json!({}),
        )
        .await;

    let delivered = receiver.wait_for(3, Duration::from_secs(30)).await;
    let mut kinds: Vec<String> = delivered
        .iter()
        .map(|d| d.json()["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["order.cancelled", "order.created", "order.paid"]);
    assert!(delivered
        .iter()
        .all(|d| d.json()["data"]["object"]["id"] == order.as_str()));
    assert_eq!(
        crate::webhooks::verified_by_reference_library(&secret, &delivered),
        [true, true, true]
    );
    let log = client.deliveries(&owner, &endpoint, 3).await;
    let outcomes: Vec<&str> = log.iter().map(|d| d["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["succeeded"; 3]);
    local.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_server_retries_a_failing_receiver_on_its_schedule_until_one_success() {
    let local = LocalServer::start_with(|o| with_webhooks(o, "0,1,1,1,1")).await;
    let client = Client::new(local.server.url());
    let receiver = Receiver::start(200).await;
    receiver.then(&[500, 502, 503]);
    let (_, owner) = client.shop().await;
    let (endpoint, _) = client
        .endpoint(&owner, &receiver, json!(["product.updated"]))
        .await;
    client.product(&owner, 5).await;

    let delivered = receiver.wait_for(4, Duration::from_secs(30)).await;
    let statuses: Vec<u16> = delivered.iter().map(|d| d.status).collect();
    assert_eq!(statuses, [500, 502, 503, 200]);
    // Each retry waited its second of the schedule, less at most its 20 % jitter.
    for pair in delivered.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(800), "a retry after {gap:?}");
    }
    let log = client.deliveries(&owner, &endpoint, 4).await;
    let attempts: Vec<(u64, &str)> = log
        .iter()
        .map(|d| {
            (
                d["attempt"].as_u64().unwrap(),
                d["outcome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [
            (4, "succeeded"),
            (3, "failed"),
            (2, "failed"),
            (1, "failed")
        ]
    );
    local.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_written_before_a_crash_reaches_its_endpoint_after_the_restart() {
    let dir = helpers::temp_dir();
    let receiver = Receiver::start(200).await;
    // The write, with no relay running: what a crash right after the commit leaves.
    let product = {
        let mut embedded = AppContext::embedded(
            dir.path(),
            "http://127.0.0.1:9",
            RateLimits::default(),
            Arc::new(SystemClock),
        )
        .expect("open");
        embedded.ctx.webhooks.allow_loopback = true;
        let ctx = &embedded.ctx;
        let shop = call(
            ctx,
            http::Method::POST,
            "/v1/tenants",
            None,
            json!({"name": "Tea", "currency": "eur", "owner": {"email": "o@example.com", "password": PASSWORD, "name": "O"}}),
        )
        .await;
        let owner = shop["tokens"]["access_token"].as_str().unwrap();
        call(
            ctx,
            http::Method::POST,
            "/v1/webhook-endpoints",
            Some(owner),
            json!({"url": receiver.url, "events": ["product.updated"]}),
        )
        .await;
        let product = call(
            ctx,
            http::Method::POST,
            "/v1/products",
            Some(owner),
            json!({"sku": "T", "name": "Tea", "description": "", "price": {"amount": 450, "currency": "eur"}, "stock": 5}),
        )
        .await;
        product["id"].as_str().unwrap().to_owned()
    };
    assert!(receiver.received().is_empty());

    let mut options = Options::new("127.0.0.1:0".parse().unwrap(), dir.path().to_owned());
    with_webhooks(&mut options, "0,1,1");
    let server = Server::start(options).await.expect("the server starts");
    let delivered = receiver.wait_for(1, Duration::from_secs(30)).await;
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].json()["type"], "product.updated");
    assert_eq!(
        delivered[0].json()["data"]["object"]["id"],
        product.as_str()
    );
    server.stop().await;
}

/// A request through the edge that must succeed; its JSON answer.
async fn call(
    ctx: &AppContext,
    method: http::Method,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> Value {
    let request = helpers::api_request(method, path, token, Some(body));
    let response = storefront::edge::dispatch(ctx, storefront::routes::ROUTES, request).await;
    assert!(
        response.status().is_success(),
        "{path}: {:?}",
        response.body()
    );
    serde_json::from_slice::<Value>(response.body().as_ref()).expect("json")
}

/// The binary killed with SIGKILL right after it acknowledged orders: restarted, it
/// delivers the `order.created` of every order it acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_orders_event_is_delivered_after_kill_9_and_a_restart() {
    let dir = helpers::temp_dir();
    let receiver = Receiver::start(200).await;
    let spawn = || {
        let mut command = Command::new(crate::local_process::binary());
        command
            .args(["--addr", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("STOREFRONT_WEBHOOK_ALLOW_LOOPBACK", "true")
            .env("STOREFRONT_WEBHOOK_RETRY_SCHEDULE", "0,1,1")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        command.spawn().expect("spawn storefront-local")
    };
    let mut first = spawn();
    let url = crate::local_process::wait_ready(&mut first);
    let client = Client::new(&url);
    let (_, owner) = client.shop().await;
    client
        .endpoint(&owner, &receiver, json!(["order.created"]))
        .await;
    let product = client.product(&owner, 1000).await;
    let mut placed = Vec::new();
    for n in 0..20 {
        placed.push(client.order(&owner, &product, &format!("crash-{n}")).await);
    }
    crate::local_process::signal(&first, "KILL");
    let _ = first.wait();

    let mut second = spawn();
    crate::local_process::wait_ready(&mut second);
    let delivered = receiver
        .wait_for(placed.len(), Duration::from_secs(60))
        .await;
    let mut heard: Vec<String> = delivered
        .iter()
        .map(|d| {
            d.json()["data"]["object"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    heard.sort();
    heard.dedup();
    placed.sort();
    assert_eq!(heard, placed, "every acknowledged order's event arrived");
    crate::local_process::signal(&second, "TERM");
    let _ = second.wait();
}
