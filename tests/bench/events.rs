//! `cargo run --release -p storefront-tests --bin bench-events -- [--events 300] [--paid 50]`:
//! events to the outside world through the local server as it runs (its relay, worker loop
//! and queue), to webhook receivers on 127.0.0.1.
//!
//! 1. Throughput: `--events` product changes written as fast as 8 clients can, each
//!    `product.updated` delivered to one endpoint: events per second from the first write to
//!    the last delivery.
//! 2. Latency from an order paid (the local provider's confirm answered) to its
//!    `order.paid` delivered, over `--paid` orders one at a time: p50 and p99.
//! 3. One slow endpoint (every answer after 10 s) beside a fast one, both subscribed to the
//!    same events: the fast endpoint's delivery latency, and the slow one's, for 20 events.
//!
//! The tables go to stdout, progress to stderr.

use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};
use storefront_local::{Options, Server};
use storefront_tests::receiver::Receiver;

struct Args {
    events: usize,
    paid: usize,
}

fn args() -> Result<Args> {
    let mut parsed = Args {
        events: 300,
        paid: 50,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--events" => parsed.events = value.parse()?,
            "--paid" => parsed.paid = value.parse()?,
            other => bail!("unknown flag {other}; try --events N --paid N"),
        }
    }
    Ok(parsed)
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Value,
        key: Option<&str>,
    ) -> Result<Value> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("{path}: {status} {answer}");
        }
        Ok(answer)
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Result<Value> {
        self.call(reqwest::Method::POST, path, token, body, None)
            .await
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// A local server on a fresh data directory that delivers to loopback.
async fn server(dir: &std::path::Path) -> Result<(Server, Client)> {
    let mut options = Options::new("127.0.0.1:0".parse()?, dir.to_owned());
    options.webhook_allow_loopback = true;
    let server = Server::start(options).await?;
    let client = Client {
        http: reqwest::Client::new(),
        base: server.url().to_owned(),
    };
    Ok((server, client))
}

/// A shop, its owner's token, and a product.
async fn shop(client: &Client) -> Result<(String, String)> {
    let shop = client
        .post(
            "/v1/tenants",
            None,
            json!({"name": "Bench", "currency": "eur", "owner": {"email": "o@example.com", "password": "a long passphrase", "name": "O"}}),
        )
        .await?;
    let owner = shop["tokens"]["access_token"]
        .as_str()
        .context("a token")?
        .to_owned();
    let product = client
        .post(
            "/v1/products",
            Some(&owner),
            json!({"sku": "B", "name": "Bench tea", "description": "", "price": {"amount": 450, "currency": "eur"}, "stock": 1_000_000}),
        )
        .await?;
    Ok((owner, product["id"].as_str().context("an id")?.to_owned()))
}

async fn endpoint(client: &Client, owner: &str, receiver: &Receiver, events: Value) -> Result<()> {
    client
        .post(
            "/v1/webhook-endpoints",
            Some(owner),
            json!({"url": receiver.url, "events": events}),
        )
        .await?;
    Ok(())
}

async fn throughput(events: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, client) = server(dir.path()).await?;
    let (owner, _) = shop(&client).await?;
    let receiver = Receiver::start(200).await;
    endpoint(&client, &owner, &receiver, json!(["product.updated"])).await?;
    // One product per writer: changes to one product are serialised by its version.
    let mut products = Vec::new();
    for w in 0..8 {
        let product = client
            .post(
                "/v1/products",
                Some(&owner),
                json!({"sku": format!("W{w}"), "name": "Bench tea", "description": "", "price": {"amount": 450, "currency": "eur"}, "stock": 1_000_000}),
            )
            .await?;
        products.push(product["id"].as_str().context("an id")?.to_owned());
    }
    // The products' own creation events first, so only the changes are timed.
    receiver.wait_for(8, Duration::from_secs(60)).await;
    let before = receiver.received().len();
    let client = std::sync::Arc::new(client);
    let started = Instant::now();
    let mut writers = Vec::new();
    for (w, product) in products.iter().enumerate() {
        let (client, owner, product) = (client.clone(), owner.clone(), product.clone());
        writers.push(tokio::spawn(async move {
            for n in (w..events).step_by(8) {
                client
                    .call(
                        reqwest::Method::PATCH,
                        &format!("/v1/products/{product}"),
                        Some(&owner),
                        json!({"stock": 1_000_000 - n}),
                        None,
                    )
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for writer in writers {
        writer.await??;
    }
    let written = started.elapsed();
    let delivered = receiver
        .wait_for(before + events, Duration::from_secs(600))
        .await
        .len()
        - before;
    let elapsed = started.elapsed();
    if delivered < events {
        bail!("only {delivered} of {events} events were delivered");
    }
    println!("| events | written in | delivered in | events per second |");
    println!("|---|---|---|---|");
    println!(
        "| {events} | {:.2} s | {:.2} s | {:.0} |",
        written.as_secs_f64(),
        elapsed.as_secs_f64(),
        events as f64 / elapsed.as_secs_f64()
    );
    server.stop().await;
    Ok(())
}

async fn paid_to_delivered(orders: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (server, client) = server(dir.path()).await?;
    let (owner, product) = shop(&client).await?;
    let receiver = Receiver::start(200).await;
    endpoint(&client, &owner, &receiver, json!(["order.paid"])).await?;
    let mut latencies = Vec::with_capacity(orders);
    for n in 0..orders {
        let order = client
            .call(
                reqwest::Method::POST,
                "/v1/orders",
                Some(&owner),
                json!({"items": [{"product_id": product, "quantity": 1}]}),
                Some(&format!("bench-{n}")),
            )
            .await?;
        let id = order["id"].as_str().context("an order id")?;
        let payment = client
            .post(&format!("/v1/orders/{id}/payment"), Some(&owner), json!({}))
            .await?;
        let intent = payment["payment_intent_id"].as_str().context("an intent")?;
        client
            .post(
                &format!("/_payments/{intent}/confirm"),
                None,
                json!({"client_secret": payment["client_secret"]}),
            )
            .await?;
        let confirmed = Instant::now();
        let delivered = receiver.wait_for(n + 1, Duration::from_secs(60)).await;
        let Some(last) = delivered.get(n) else {
            bail!("order {n}'s order.paid never arrived");
        };
        latencies.push(last.at.saturating_duration_since(confirmed));
    }
    latencies.sort();
    println!("| orders | p50 | p99 | max |");
    println!("|---|---|---|---|");
    println!(
        "| {orders} | {} | {} | {} |",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(*latencies.last().unwrap_or(&Duration::ZERO))
    );
    server.stop().await;
    Ok(())
}

async fn slow_neighbour(events: usize) -> Result<()> {
    println!("| endpoints | fast endpoint p50 | fast endpoint p99 | slow endpoint p50 (arrival; answered 10 s later) |");
    println!("|---|---|---|---|");
    for with_slow in [false, true] {
        let dir = tempfile::tempdir()?;
        let (server, client) = server(dir.path()).await?;
        let (owner, product) = shop(&client).await?;
        let fast = Receiver::start(200).await;
        let slow = Receiver::start(200).await;
        slow.slow(Duration::from_secs(10));
        endpoint(&client, &owner, &fast, json!(["product.updated"])).await?;
        if with_slow {
            endpoint(&client, &owner, &slow, json!(["product.updated"])).await?;
        }
        let mut written = Vec::with_capacity(events);
        for n in 0..events {
            client
                .call(
                    reqwest::Method::PATCH,
                    &format!("/v1/products/{product}"),
                    Some(&owner),
                    json!({"stock": 500_000 - n}),
                    None,
                )
                .await?;
            written.push(Instant::now());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let latency = |receiver: &Receiver| {
            let mut all: Vec<Duration> = receiver
                .received()
                .iter()
                .map(|d| {
                    let stock = d.json()["data"]["object"]["stock"].as_u64().unwrap_or(0);
                    let n = 500_000_usize.saturating_sub(stock as usize);
                    written
                        .get(n)
                        .map_or(Duration::ZERO, |at| d.at.saturating_duration_since(*at))
                })
                .collect();
            all.sort();
            all
        };
        let fast_all = {
            fast.wait_for(events, Duration::from_secs(120)).await;
            latency(&fast)
        };
        let slow_all = if with_slow {
            slow.wait_for(events, Duration::from_secs(120)).await;
            latency(&slow)
        } else {
            Vec::new()
        };
        println!(
            "| {} | {} | {} | {} |",
            if with_slow {
                "fast + slow (10 s answers)"
            } else {
                "fast alone"
            },
            ms(percentile(&fast_all, 50.0)),
            ms(percentile(&fast_all, 99.0)),
            if with_slow {
                ms(percentile(&slow_all, 50.0))
            } else {
                "-".into()
            }
        );
        server.stop().await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = args()?;
    eprintln!("throughput: {} product changes, 8 writers…", args.events);
    throughput(args.events).await?;
    println!();
    eprintln!("paid to delivered: {} orders…", args.paid);
    paid_to_delivered(args.paid).await?;
    println!();
    eprintln!("a slow endpoint beside a fast one: 20 events each run…");
    slow_neighbour(20).await?;
    Ok(())
}
