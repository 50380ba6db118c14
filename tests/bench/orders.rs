//! `cargo run --release -p storefront-tests --bin bench-orders -- [--orders 50] [--hot 400]`:
//! what placing an order costs, on the embedded store, through `dispatch` (the path Lambda
//! and the local server share, edge included).
//!
//! 1. By line count (1, 10 and the most an order holds): the median and p99 latency of
//!    `POST /v1/orders`, the table requests each makes, the operations of its transaction,
//!    and the write capacity DynamoDB would bill for it (2 units per started KB of each item
//!    a transaction writes, items sized as their JSON, which is close to DynamoDB's count).
//! 2. Contention: orders of one unit of one hot product, from 1, 4 and 16 concurrent
//!    clients, as orders per second.
//!
//! The tables go to stdout, progress to stderr.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use async_trait::async_trait;
use http::Method;
use serde_json::{json, Value};
use storefront::clock::SystemClock;
use storefront::config::RateLimits;
use storefront::context::AppContext;
use storefront::edge::dispatch;
use storefront::http::ClientIp;
use storefront::orders::MAX_LINES;
use storefront::routes::ROUTES;
use storefront::store::{
    Condition, Consistency, Item, Key, Page, Query, StoreError, Table, TxOp, UpdateOp,
};

/// Counts the requests that reach the store, and sizes what transactions write.
struct Metered {
    inner: Arc<dyn Table>,
    requests: AtomicUsize,
    transaction_ops: AtomicUsize,
    write_units: AtomicUsize,
}

impl Metered {
    fn take(&self) -> (usize, usize, usize) {
        (
            self.requests.swap(0, Ordering::SeqCst),
            self.transaction_ops.swap(0, Ordering::SeqCst),
            self.write_units.swap(0, Ordering::SeqCst),
        )
    }

    fn count(&self) {
        self.requests.fetch_add(1, Ordering::SeqCst);
    }
}

/// DynamoDB's transactional write units for an item of `bytes`: 2 per started KB.
fn units(bytes: usize) -> usize {
    2 * bytes.div_ceil(1024).max(1)
}

#[async_trait]
impl Table for Metered {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.count();
        self.inner.get(key).await
    }
    async fn get_many(
        &self,
        keys: &[Key],
        consistency: Consistency,
    ) -> Result<Vec<Option<Item>>, StoreError> {
        self.count();
        self.inner.get_many(keys, consistency).await
    }
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        self.count();
        self.inner.put(item, condition).await
    }
    async fn update(
        &self,
        key: &Key,
        ops: Vec<UpdateOp>,
        condition: Option<Condition>,
    ) -> Result<Item, StoreError> {
        self.count();
        self.inner.update(key, ops, condition).await
    }
    async fn delete(
        &self,
        key: &Key,
        condition: Option<Condition>,
    ) -> Result<Option<Item>, StoreError> {
        self.count();
        self.inner.delete(key, condition).await
    }
    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        self.count();
        self.inner.query(query).await
    }
    async fn transact(&self, ops: Vec<TxOp>) -> Result<(), StoreError> {
        self.count();
        self.transaction_ops.fetch_add(ops.len(), Ordering::SeqCst);
        let keys: Vec<(Key, Option<usize>)> = ops
            .iter()
            .map(|op| match op {
                TxOp::Put { item, .. } => Ok((
                    item.key()?,
                    Some(serde_json::to_vec(item).map(|b| b.len()).unwrap_or(0)),
                )),
                other => Ok((other.key()?, None)),
            })
            .collect::<Result<_, StoreError>>()?;
        self.inner.transact(ops).await?;
        // An update is billed on the item as it is after: read it back (not counted).
        let mut written = 0;
        for (key, size) in keys {
            let bytes = match size {
                Some(bytes) => bytes,
                None => match self.inner.get(&key).await? {
                    Some(item) => serde_json::to_vec(&item).map(|b| b.len()).unwrap_or(0),
                    None => 0,
                },
            };
            written += units(bytes);
        }
        self.write_units.fetch_add(written, Ordering::SeqCst);
        Ok(())
    }
}

struct Bench {
    ctx: AppContext,
    metered: Arc<Metered>,
    customer: String,
}

impl Bench {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        key: Option<&str>,
    ) -> Result<(u16, Value)> {
        let mut builder = http::Request::builder().method(method).uri(path);
        if let Some(token) = token {
            builder = builder.header("authorization", format!("Bearer {token}"));
        }
        if let Some(key) = key {
            builder = builder.header("idempotency-key", key);
        }
        let body = match body {
            Some(b) => {
                builder = builder.header("content-type", "application/json");
                lambda_http::Body::from(b.to_string())
            }
            None => lambda_http::Body::Empty,
        };
        let mut req = builder.body(body)?;
        req.extensions_mut().insert(ClientIp("203.0.113.9".into()));
        let response = dispatch(&self.ctx, ROUTES, req).await;
        let bytes: &[u8] = response.body().as_ref();
        Ok((
            response.status().as_u16(),
            serde_json::from_slice(bytes).unwrap_or(Value::Null),
        ))
    }

    async fn order(&self, items: &Value, key: &str) -> Result<Duration> {
        let started = Instant::now();
        let (status, body) = self
            .call(
                Method::POST,
                "/v1/orders",
                Some(&self.customer),
                Some(json!({ "items": items })),
                Some(key),
            )
            .await?;
        if status != 201 {
            bail!("order refused: {status} {body}");
        }
        Ok(started.elapsed())
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn flag(name: &str, default: usize) -> Result<usize> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => args
            .get(i + 1)
            .context("a value after the flag")?
            .parse()
            .with_context(|| format!("{name} takes a whole number")),
        None => Ok(default),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let orders = flag("--orders", 50)?;
    let hot_orders = flag("--hot", 400)?;
    let dir = tempfile::tempdir()?;
    // No per-IP limit in the way of a benchmark's thousands of requests.
    let limits = RateLimits {
        per_ip: u32::MAX,
        ..RateLimits::default()
    };
    let embedded = AppContext::embedded(
        dir.path(),
        "http://127.0.0.1:9",
        limits,
        Arc::new(SystemClock),
    )?;
    let metered = Arc::new(Metered {
        inner: embedded.ctx.table.clone(),
        requests: AtomicUsize::new(0),
        transaction_ops: AtomicUsize::new(0),
        write_units: AtomicUsize::new(0),
    });
    let mut ctx = embedded.ctx.clone();
    ctx.table = metered.clone();
    let mut bench = Bench {
        ctx,
        metered,
        customer: String::new(),
    };
    let (_, shop) = bench.call(Method::POST, "/v1/tenants", None, Some(json!({"name": "Bench", "currency": "eur", "owner": {"email": "o@example.com", "password": "correct horse battery", "name": "O"}})), None).await?;
    let owner = shop["tokens"]["access_token"]
        .as_str()
        .context("owner token")?
        .to_owned();
    let tenant = shop["tenant"]["id"].as_str().context("tenant")?.to_owned();
    let (_, customer) = bench.call(Method::POST, "/v1/auth/signup", None, Some(json!({"tenant_id": tenant, "email": "c@example.com", "password": "customer password", "name": "C"})), None).await?;
    bench.customer = customer["tokens"]["access_token"]
        .as_str()
        .context("customer token")?
        .to_owned();
    eprintln!("making {MAX_LINES} products");
    let mut products = Vec::new();
    for n in 0..MAX_LINES {
        let (status, product) = bench.call(Method::POST, "/v1/products", Some(&owner), Some(json!({"sku": format!("SKU-{n}"), "name": format!("Product number {n}"), "description": "A product of the benchmark, with a description of ordinary length.", "price": {"amount": 1250 + n, "currency": "eur"}, "stock": 1_000_000})), None).await?;
        if status != 201 {
            bail!("product refused: {status} {product}");
        }
        products.push(product["id"].as_str().context("id")?.to_owned());
    }

    println!("| lines | p50 | p99 | table requests | transaction operations | write units (transactional) |");
    println!("|---|---|---|---|---|---|");
    for lines in [1, 10, MAX_LINES] {
        eprintln!("{orders} orders of {lines} lines");
        let items: Value = products[..lines]
            .iter()
            .map(|id| json!({"product_id": id, "quantity": 1}))
            .collect();
        // One order alone first, for the per-order counts.
        bench.metered.take();
        bench.order(&items, &format!("count-{lines}")).await?;
        let (requests, ops, units) = bench.metered.take();
        let mut latencies = Vec::with_capacity(orders);
        for n in 0..orders {
            latencies.push(bench.order(&items, &format!("o-{lines}-{n}")).await?);
        }
        latencies.sort();
        println!(
            "| {lines} | {} | {} | {requests} | {ops} | {units} |",
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
        );
    }

    println!();
    println!("| concurrent clients | orders of one hot product | orders per second | p50 | p99 |");
    println!("|---|---|---|---|---|");
    let hot = &products[0];
    let bench = Arc::new(bench);
    for clients in [1usize, 4, 16] {
        eprintln!("{hot_orders} orders of one product from {clients} clients");
        let started = Instant::now();
        let per_client = hot_orders / clients;
        let mut tasks = Vec::new();
        for c in 0..clients {
            let bench = bench.clone();
            let items = json!([{"product_id": hot, "quantity": 1}]);
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                for n in 0..per_client {
                    latencies.push(
                        bench
                            .order(&items, &format!("hot-{clients}-{c}-{n}"))
                            .await?,
                    );
                }
                anyhow::Ok(latencies)
            }));
        }
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await??);
        }
        let elapsed = started.elapsed();
        latencies.sort();
        println!(
            "| {clients} | {} | {:.0} | {} | {} |",
            latencies.len(),
            latencies.len() as f64 / elapsed.as_secs_f64(),
            ms(percentile(&latencies, 0.5)),
            ms(percentile(&latencies, 0.99)),
        );
    }
    Ok(())
}
