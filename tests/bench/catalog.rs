//! `cargo run --release -p storefront-tests --bin bench-catalog -- [--sizes 1000,10000,100000]`:
//! what reading the catalogue costs as it grows. For each catalogue size it loads that many
//! products into a fresh embedded store (names drawn from 20 colours x 20 materials x 50
//! kinds, so a kind word such as "mug" is in 2 % of names and a colour in 5 %), then calls
//! the list, search and get handlers directly (no edge, so no per-IP count in the figures)
//! and reports per call: the table requests (Query, BatchGetItem, GetItem), the index
//! entries the queries read, the products answered, and the median and p99 latency.
//! The table goes to stdout, progress to stderr.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use async_trait::async_trait;
use lambda_http::RequestExt as _;
use serde_json::Value;
use storefront::clock::SystemClock;
use storefront::config::RateLimits;
use storefront::context::AppContext;
use storefront::domain::search::index_words;
use storefront::domain::{Currency, Money, ProductId, TenantId, TypedId as _};
use storefront::handlers::products;
use storefront::ids::IdKind;
use storefront::repo::products::{self as repo, Product};
use storefront::repo::tenants::{self, Tenant};
use storefront::store::{
    Condition, Item, Key, Page, Query, StoreError, Table, TxOp, UpdateOp, MAX_TRANSACTION_OPS,
};

const COLOURS: [&str; 20] = [
    "Blue", "Red", "Green", "Black", "White", "Grey", "Yellow", "Orange", "Purple", "Pink",
    "Brown", "Teal", "Navy", "Olive", "Cream", "Gold", "Silver", "Coral", "Mint", "Rust",
];
const MATERIALS: [&str; 20] = [
    "Ceramic", "Glass", "Steel", "Oak", "Linen", "Cotton", "Wool", "Leather", "Stone", "Bamboo",
    "Copper", "Brass", "Walnut", "Marble", "Clay", "Silk", "Cork", "Felt", "Jute", "Slate",
];
const KINDS: [&str; 50] = [
    "Mug", "Bowl", "Plate", "Vase", "Lamp", "Chair", "Table", "Stool", "Shelf", "Rug", "Cushion",
    "Blanket", "Basket", "Tray", "Jug", "Teapot", "Kettle", "Pan", "Pot", "Spoon", "Fork", "Knife",
    "Board", "Clock", "Mirror", "Frame", "Candle", "Holder", "Hook", "Rack", "Box", "Jar", "Tin",
    "Bottle", "Cup", "Saucer", "Napkin", "Apron", "Towel", "Mat", "Bench", "Desk", "Bed", "Sofa",
    "Pillow", "Curtain", "Planter", "Bin", "Bag", "Wallet",
];

/// Counts what passes through to the store.
struct Counting {
    inner: Arc<dyn Table>,
    queries: AtomicUsize,
    entries: AtomicUsize,
    batch_gets: AtomicUsize,
    gets: AtomicUsize,
}

impl Counting {
    fn take(&self) -> [usize; 4] {
        [
            self.queries.swap(0, Ordering::SeqCst),
            self.entries.swap(0, Ordering::SeqCst),
            self.batch_gets.swap(0, Ordering::SeqCst),
            self.gets.swap(0, Ordering::SeqCst),
        ]
    }
}

#[async_trait]
impl Table for Counting {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(key).await
    }
    async fn get_many(
        &self,
        keys: &[Key],
        consistency: storefront::store::Consistency,
    ) -> Result<Vec<Option<Item>>, StoreError> {
        self.batch_gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get_many(keys, consistency).await
    }
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        self.inner.put(item, condition).await
    }
    async fn update(
        &self,
        key: &Key,
        ops: Vec<UpdateOp>,
        condition: Option<Condition>,
    ) -> Result<Item, StoreError> {
        self.inner.update(key, ops, condition).await
    }
    async fn delete(
        &self,
        key: &Key,
        condition: Option<Condition>,
    ) -> Result<Option<Item>, StoreError> {
        self.inner.delete(key, condition).await
    }
    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        self.queries.fetch_add(1, Ordering::SeqCst);
        let page = self.inner.query(query).await?;
        self.entries.fetch_add(page.items.len(), Ordering::SeqCst);
        Ok(page)
    }
    async fn transact(&self, ops: Vec<TxOp>) -> Result<(), StoreError> {
        self.inner.transact(ops).await
    }
}

/// Loads `count` products into the shop, as the catalogue writes them (product, sku lock
/// and word entries), several products to a transaction.
async fn load(ctx: &AppContext, tenant_id: &TenantId, count: usize) -> Result<Vec<ProductId>> {
    let now = storefront::clock::rfc3339(ctx.clock.now());
    let eur = Currency::parse("eur").map_err(anyhow::Error::msg)?;
    let mut ids = Vec::with_capacity(count);
    let mut ops: Vec<TxOp> = Vec::new();
    let started = Instant::now();
    for n in 0..count {
        let name = format!(
            "{} {} {} {n}",
            COLOURS[n % COLOURS.len()],
            MATERIALS[(n / COLOURS.len()) % MATERIALS.len()],
            KINDS[(n / 7) % KINDS.len()]
        );
        let id = ProductId::generate(ctx.ids.as_ref());
        let product = Product {
            id: id.clone(),
            tenant_id: tenant_id.clone(),
            sku: format!("SKU-{n}"),
            words: index_words(&name),
            name,
            description: "A product for the benchmark.".into(),
            price: Money::new(1000 + (n as i64 % 9000), eur.clone()).map_err(anyhow::Error::msg)?,
            stock: 10,
            images: Vec::new(),
            version: 1,
            created_at: now.clone(),
            updated_at: now.clone(),
        };
        let mut writes = vec![
            repo::insert(&product)?,
            repo::claim_sku(tenant_id, &product.sku, &id)?,
        ];
        for word in &product.words {
            writes.push(repo::index_word(&product, word)?);
        }
        if ops.len() + writes.len() > MAX_TRANSACTION_OPS {
            ctx.table.transact(std::mem::take(&mut ops)).await?;
        }
        ops.extend(writes);
        ids.push(id);
        if (n + 1) % 10_000 == 0 {
            eprintln!(
                "bench-catalog: loaded {} products in {:.0} s",
                n + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    if !ops.is_empty() {
        ctx.table.transact(ops).await?;
    }
    Ok(ids)
}

fn request(uri: &str, id: Option<&str>) -> lambda_http::Request {
    let req = http::Request::builder()
        .uri(uri)
        .body(lambda_http::Body::Empty)
        .expect("request");
    match id {
        Some(id) => req.with_path_parameters(std::collections::HashMap::from([(
            "id".to_owned(),
            id.to_owned(),
        )])),
        None => req,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut sizes = vec![1_000, 10_000, 100_000];
    let mut calls = 50usize;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--sizes" => {
                sizes = args
                    .get(i + 1)
                    .context("--sizes N,N")?
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<_, _>>()?;
                i += 1;
            }
            "--calls" => {
                calls = args.get(i + 1).context("--calls N")?.parse()?;
                i += 1;
            }
            other => bail!(
                "unknown argument {other}; usage: bench-catalog [--sizes 1000,10000] [--calls 50]"
            ),
        }
        i += 1;
    }
    println!("| catalogue | call | Query | index entries read | BatchGetItem | GetItem | products | p50 | p99 |");
    println!("|--:|---|--:|--:|--:|--:|--:|--:|--:|");
    for size in sizes {
        let dir = tempfile::tempdir()?;
        let embedded = AppContext::embedded(
            dir.path(),
            "http://127.0.0.1:9",
            RateLimits::default(),
            Arc::new(SystemClock),
        )?;
        let mut ctx = embedded.ctx.clone();
        let tenant_id =
            TenantId::parse(&ctx.ids.next(IdKind::Tenant)).map_err(anyhow::Error::msg)?;
        ctx.table
            .transact(vec![tenants::create(&Tenant {
                id: tenant_id.clone(),
                name: "Bench".into(),
                currency: "eur".into(),
                created_at: storefront::clock::rfc3339(ctx.clock.now()),
            })?])
            .await?;
        eprintln!("bench-catalog: loading {size} products");
        let ids = load(&ctx, &tenant_id, size).await?;
        let counting = Arc::new(Counting {
            inner: ctx.table.clone(),
            queries: AtomicUsize::new(0),
            entries: AtomicUsize::new(0),
            batch_gets: AtomicUsize::new(0),
            gets: AtomicUsize::new(0),
        });
        ctx.table = counting.clone();
        let shop = format!("tenant_id={tenant_id}");
        let middle = ids[ids.len() / 2].to_string();
        let cases: Vec<(&str, String, Option<&str>)> = vec![
            (
                "list, first page of 20",
                format!("/v1/products?{shop}"),
                None,
            ),
            (
                "search `mug` (2 % of names)",
                format!("/v1/products?{shop}&q=mug"),
                None,
            ),
            (
                "search `cer` (5 %, a prefix)",
                format!("/v1/products?{shop}&q=cer"),
                None,
            ),
            (
                "search `blue mug` (0.1 %)",
                format!("/v1/products?{shop}&q=blue%20mug"),
                None,
            ),
            (
                "search `zebra` (no match)",
                format!("/v1/products?{shop}&q=zebra"),
                None,
            ),
            (
                "get one product",
                format!("/v1/products/{middle}?{shop}"),
                Some(middle.as_str()),
            ),
        ];
        for (name, uri, id) in cases {
            let mut times = Vec::with_capacity(calls);
            let mut counts = [0; 4];
            let mut answered = 0;
            for call in 0..calls {
                let started = Instant::now();
                let response = match id {
                    Some(id) => products::get(request(&uri, Some(id)), &ctx, None).await,
                    None => products::list(request(&uri, None), &ctx, None).await,
                }
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
                times.push(started.elapsed());
                let taken = counting.take();
                if call == 0 {
                    counts = taken;
                    let body: Value = serde_json::from_slice(response.body().as_ref())?;
                    answered = body["items"]
                        .as_array()
                        .map_or(usize::from(body["id"].is_string()), Vec::len);
                }
            }
            times.sort();
            println!(
                "| {size} | {name} | {} | {} | {} | {} | {answered} | {:.2} ms | {:.2} ms |",
                counts[0],
                counts[1],
                counts[2],
                counts[3],
                percentile(&times, 0.5).as_secs_f64() * 1000.0,
                percentile(&times, 0.99).as_secs_f64() * 1000.0,
            );
        }
    }
    Ok(())
}
