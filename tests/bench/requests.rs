//! `cargo run --release -p storefront-tests --bin bench-requests`: how many table requests
//! each API operation makes (each one a DynamoDB request on AWS: GetItem, PutItem,
//! UpdateItem, DeleteItem, Query or TransactWriteItems), counted by wrapping the store.

use std::sync::Arc;

use http::Method;
use serde_json::{json, Value};
use storefront::clock::SystemClock;
use storefront::config::RateLimits;
use storefront::context::AppContext;
use storefront::domain::{TenantId, TypedId as _};
use storefront::edge::dispatch;
use storefront::http::ClientIp;
use storefront::jobs::outbox;
use storefront::jobs::worker::Job;
use storefront::repo::idempotency::{begin, Begin, IdempotencyKey, Scope, StoredResponse};
use storefront::routes::ROUTES;
use storefront_tests::recording::Recording;

/// The API calls recorded since the last row, as the table's "of which" column.
fn counted(recording: &Recording) -> String {
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let requests = recording.take();
    for request in &requests {
        *counts.entry(request.api).or_default() += 1;
    }
    let parts: Vec<String> = NAMES
        .iter()
        .filter_map(|name| counts.get(name).map(|n| format!("{n} {name}")))
        .collect();
    format!("{} | {}", requests.len(), parts.join(", "))
}

/// The order the calls are listed in.
const NAMES: [&str; 7] = [
    "GetItem",
    "BatchGetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "Query",
    "TransactWriteItems",
];

async fn call(
    ctx: &AppContext,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    call_with(ctx, method, path, token, body, &[]).await
}

/// A call with extra request headers (`Idempotency-Key`, `Stripe-Signature`).
async fn call_with(
    ctx: &AppContext,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let mut builder = http::Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let body = match body {
        Some(b) => {
            builder = builder.header("content-type", "application/json");
            lambda_http::Body::from(b.to_string())
        }
        None => lambda_http::Body::Empty,
    };
    let mut req = builder.body(body).expect("request");
    req.extensions_mut().insert(ClientIp("203.0.113.9".into()));
    let response = dispatch(ctx, ROUTES, req).await;
    let bytes: &[u8] = response.body().as_ref();
    (
        response.status().as_u16(),
        serde_json::from_slice(bytes).unwrap_or(Value::Null),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let embedded = AppContext::embedded(
        dir.path(),
        "http://127.0.0.1:9",
        RateLimits::default(),
        Arc::new(SystemClock),
    )?;
    let recording = Arc::new(Recording::new(embedded.ctx.table.clone()));
    let mut ctx = embedded.ctx.clone();
    ctx.table = recording.clone();
    let webhook_secret = secrecy::SecretString::from("whsec_bench");
    ctx.payment_webhook_secret = Some(webhook_secret.clone());
    let mut rows = Vec::new();
    let mut row = |name: &str, status: &dyn std::fmt::Display| {
        rows.push(format!("| {name} | {status} | {} |", counted(&recording)))
    };

    let (s, shop) = call(&ctx, Method::POST, "/v1/tenants", None, Some(json!({"name": "Shop", "owner": {"email": "o@example.com", "password": "correct horse battery", "name": "O"}}))).await;
    row("POST /v1/tenants", &s);
    let tenant = shop["tenant"]["id"].as_str().unwrap_or_default().to_owned();
    let owner = shop["tokens"]["access_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let refresh = shop["tokens"]["refresh_token"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (s, _) = call(&ctx, Method::POST, "/v1/auth/signup", None, Some(json!({"tenant_id": tenant, "email": "c@example.com", "password": "customer password", "name": "C"}))).await;
    row("POST /v1/auth/signup", &s);
    let (s, _) = call(
        &ctx,
        Method::POST,
        "/v1/auth/login",
        None,
        Some(
            json!({"tenant_id": tenant, "email": "c@example.com", "password": "customer password"}),
        ),
    )
    .await;
    row("POST /v1/auth/login", &s);
    let (s, _) = call(&ctx, Method::POST, "/v1/auth/login", None, Some(json!({"tenant_id": tenant, "email": "nobody@example.com", "password": "customer password"}))).await;
    row("POST /v1/auth/login (unknown email, 401)", &s);
    let (s, _) = call(
        &ctx,
        Method::POST,
        "/v1/auth/refresh",
        None,
        Some(json!({"refresh_token": refresh})),
    )
    .await;
    row("POST /v1/auth/refresh", &s);
    let (s, _) = call(&ctx, Method::GET, "/v1/me", Some(&owner), None).await;
    row("GET /v1/me (access token)", &s);
    let (s, _) = call(&ctx, Method::GET, "/v1/sessions", Some(&owner), None).await;
    row("GET /v1/sessions", &s);
    let (s, member) = call(&ctx, Method::POST, "/v1/members", Some(&owner), Some(json!({"email": "s@example.com", "name": "S", "password": "staff password", "role": "staff"}))).await;
    row("POST /v1/members", &s);
    let (s, _) = call(&ctx, Method::GET, "/v1/members", Some(&owner), None).await;
    row("GET /v1/members", &s);
    let member_id = member["id"].as_str().unwrap_or_default().to_owned();
    let (s, _) = call(
        &ctx,
        Method::PATCH,
        &format!("/v1/members/{member_id}"),
        Some(&owner),
        Some(json!({"role": "admin"})),
    )
    .await;
    row("PATCH /v1/members/{id}", &s);
    let (s, key) = call(
        &ctx,
        Method::POST,
        "/v1/api-keys",
        Some(&owner),
        Some(json!({"name": "K"})),
    )
    .await;
    row("POST /v1/api-keys", &s);
    let secret = key["key"].as_str().unwrap_or_default().to_owned();
    let (s, _) = call(&ctx, Method::GET, "/v1/me", Some(&secret), None).await;
    row("GET /v1/me (API key, first use)", &s);
    let (s, _) = call(&ctx, Method::GET, "/v1/me", Some(&secret), None).await;
    row("GET /v1/me (API key, again within a minute)", &s);
    let (s, _) = call(&ctx, Method::GET, "/v1/api-keys", Some(&owner), None).await;
    row("GET /v1/api-keys", &s);

    // The catalogue.
    let product = |sku: &str, name: &str| json!({"sku": sku, "name": name, "description": "Stoneware", "price": {"amount": 1250, "currency": "usd"}, "stock": 5});
    let (s, mug) = call(
        &ctx,
        Method::POST,
        "/v1/products",
        Some(&owner),
        Some(product("MUG-1", "Blue Stoneware Mug")),
    )
    .await;
    row("POST /v1/products (a name of 3 words)", &s);
    call(
        &ctx,
        Method::POST,
        "/v1/products",
        Some(&owner),
        Some(product("MUG-2", "Green Mug")),
    )
    .await;
    recording.take();
    let (s, _) = call(
        &ctx,
        Method::POST,
        "/v1/products",
        Some(&owner),
        Some(product("mug-1", "Copy")),
    )
    .await;
    row("POST /v1/products (sku taken, 409)", &s);
    let mug_id = mug["id"].as_str().unwrap_or_default().to_owned();
    let (s, _) = call(
        &ctx,
        Method::GET,
        &format!("/v1/products?tenant_id={tenant}"),
        None,
        None,
    )
    .await;
    row("GET /v1/products (anonymous, a page)", &s);
    let (s, _) = call(&ctx, Method::GET, "/v1/products", Some(&owner), None).await;
    row(
        "GET /v1/products (signed in: the token is checked without a read)",
        &s,
    );
    let (s, _) = call(
        &ctx,
        Method::GET,
        &format!("/v1/products?tenant_id={tenant}&q=mug"),
        None,
        None,
    )
    .await;
    row("GET /v1/products?q=mug (2 found)", &s);
    let (s, _) = call(
        &ctx,
        Method::GET,
        &format!("/v1/products?tenant_id={tenant}&q=blue%20mug"),
        None,
        None,
    )
    .await;
    row("GET /v1/products?q=blue%20mug (1 found)", &s);
    let (s, _) = call(
        &ctx,
        Method::GET,
        &format!("/v1/products?tenant_id={tenant}&q=zebra"),
        None,
        None,
    )
    .await;
    row(
        "GET /v1/products?q=zebra (none: + the shop's existence)",
        &s,
    );
    let (s, _) = call(
        &ctx,
        Method::GET,
        &format!("/v1/products/{mug_id}?tenant_id={tenant}"),
        None,
        None,
    )
    .await;
    row("GET /v1/products/{id} (anonymous)", &s);
    let (s, _) = call(
        &ctx,
        Method::PATCH,
        &format!("/v1/products/{mug_id}"),
        Some(&owner),
        Some(json!({"stock": 9})),
    )
    .await;
    row("PATCH /v1/products/{id} (stock)", &s);
    let (s, _) = call(&ctx, Method::PATCH, &format!("/v1/products/{mug_id}"), Some(&owner), Some(json!({"name": "Red Stoneware Cup", "sku": "CUP-1", "price": {"amount": 990, "currency": "usd"}}))).await;
    row("PATCH /v1/products/{id} (name, sku and price)", &s);
    let (s, image) = call(
        &ctx,
        Method::POST,
        &format!("/v1/products/{mug_id}/images"),
        Some(&owner),
        Some(json!({"content_type": "image/png", "content_length": 1000})),
    )
    .await;
    row("POST /v1/products/{id}/images", &s);
    let image_id = image["image_id"].as_str().unwrap_or_default().to_owned();
    let png = {
        use image::ImageEncoder as _;
        let pixels = image::ImageBuffer::from_pixel(64, 48, image::Rgb([200u8, 30, 30]));
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new(&mut out).write_image(
            pixels.as_raw(),
            64,
            48,
            image::ExtendedColorType::Rgb8,
        )?;
        out
    };
    let upload = format!("uploads/{tenant}/{mug_id}/{image_id}");
    embedded
        .ctx
        .blobs
        .put(&upload, bytes::Bytes::from(png), "image/png", None)
        .await?;
    let notification = storefront::jobs::JobMessage {
        id: "bench".into(),
        body: serde_json::json!({"Records": [{"eventName": "ObjectCreated:Put", "s3": {"object": {"key": upload}}}]}).to_string(),
        receive_count: 1,
    };
    let outcome = storefront::jobs::process_batch(
        &ctx,
        &storefront::jobs::images::ImageUploads::default(),
        &[notification],
    )
    .await;
    row(
        "image worker: one upload checked and recorded (plus S3: 1 GET, 2 PUT, 1 DELETE)",
        &if outcome.failed.is_empty() {
            "ok"
        } else {
            "failed"
        },
    );
    let (s, _) = call(
        &ctx,
        Method::DELETE,
        &format!("/v1/products/{mug_id}/images/{image_id}"),
        Some(&owner),
        None,
    )
    .await;
    row("DELETE /v1/products/{id}/images/{image_id}", &s);
    // Orders (the owner buys, so one token does for every route).
    let line = json!({"items": [{"product_id": mug_id, "quantity": 1}]});
    let (s, order) = call_with(
        &ctx,
        Method::POST,
        "/v1/orders",
        Some(&owner),
        Some(line.clone()),
        &[("idempotency-key", "bench-1")],
    )
    .await;
    row("POST /v1/orders (1 line)", &s);
    let order_id = order["id"].as_str().unwrap_or_default().to_owned();
    let (s, _) = call_with(
        &ctx,
        Method::POST,
        "/v1/orders",
        Some(&owner),
        Some(line),
        &[("idempotency-key", "bench-1")],
    )
    .await;
    row("POST /v1/orders (the same key again: replayed)", &s);
    let (s, _) = call_with(
        &ctx,
        Method::POST,
        "/v1/orders",
        Some(&owner),
        Some(json!({"items": [{"product_id": mug_id, "quantity": 1000}]})),
        &[("idempotency-key", "bench-2")],
    )
    .await;
    row(
        "POST /v1/orders (out of stock, 409: + the product read again, the key given up)",
        &s,
    );
    let (s, _) = call(&ctx, Method::GET, "/v1/orders", Some(&owner), None).await;
    row("GET /v1/orders (staff: the shop's, a page)", &s);
    let (s, _) = call(
        &ctx,
        Method::GET,
        "/v1/orders?status=pending_payment",
        Some(&owner),
        None,
    )
    .await;
    row("GET /v1/orders?status=pending_payment", &s);
    let (s, _) = call(
        &ctx,
        Method::GET,
        &format!("/v1/orders/{order_id}"),
        Some(&owner),
        None,
    )
    .await;
    row("GET /v1/orders/{id}", &s);
    let (s, payment) = call(
        &ctx,
        Method::POST,
        &format!("/v1/orders/{order_id}/payment"),
        Some(&owner),
        None,
    )
    .await;
    row(
        "POST /v1/orders/{id}/payment (+ one call to the provider, not a table request)",
        &s,
    );
    let (s, _) = call(
        &ctx,
        Method::POST,
        &format!("/v1/orders/{order_id}/payment"),
        Some(&owner),
        None,
    )
    .await;
    row("POST /v1/orders/{id}/payment (again: the same payment)", &s);
    let event =
        json!({"id": "evt_bench_1", "type": "payment_intent.succeeded", "data": {"object": {
        "id": payment["payment_intent_id"], "amount": order["total"]["amount"], "currency": "usd",
        "metadata": {"order_id": order_id, "tenant_id": tenant}}}})
        .to_string();
    let signature = storefront::credentials::stripe_signature::sign(
        event.as_bytes(),
        &webhook_secret,
        ctx.clock.now().timestamp(),
    );
    let webhook = |body: String, signature: String| {
        let ctx = &ctx;
        async move {
            let mut req = http::Request::builder()
                .method(Method::POST)
                .uri("/v1/payments/webhook")
                .header("content-type", "application/json")
                .header("stripe-signature", signature)
                .body(lambda_http::Body::from(body))
                .expect("request");
            req.extensions_mut().insert(ClientIp("203.0.113.9".into()));
            dispatch(ctx, ROUTES, req).await.status().as_u16()
        }
    };
    let s = webhook(event.clone(), signature.clone()).await;
    row(
        "POST /v1/payments/webhook (payment_intent.succeeded: paid)",
        &s,
    );
    let s = webhook(event, signature).await;
    row("POST /v1/payments/webhook (the same event again)", &s);
    let (s, _) = call(
        &ctx,
        Method::POST,
        &format!("/v1/orders/{order_id}/fulfil"),
        Some(&owner),
        None,
    )
    .await;
    row("POST /v1/orders/{id}/fulfil", &s);
    let (_, second) = call_with(
        &ctx,
        Method::POST,
        "/v1/orders",
        Some(&owner),
        Some(json!({"items": [{"product_id": mug_id, "quantity": 1}]})),
        &[("idempotency-key", "bench-3")],
    )
    .await;
    recording.take();
    let second = second["id"].as_str().unwrap_or_default().to_owned();
    let (s, _) = call(
        &ctx,
        Method::POST,
        &format!("/v1/orders/{second}/cancel"),
        Some(&owner),
        None,
    )
    .await;
    row("POST /v1/orders/{id}/cancel (unpaid, 1 line restocked)", &s);
    let sweep = storefront::orders::expire_overdue(&ctx).await?;
    row(
        "orders-expire tick (nothing due: one Query per shard)",
        &sweep.expired,
    );
    let (s, _) = call(
        &ctx,
        Method::DELETE,
        &format!("/v1/products/{mug_id}"),
        Some(&owner),
        None,
    )
    .await;
    row("DELETE /v1/products/{id}", &s);
    let (s, _) = call(&ctx, Method::GET, "/v1/audit-log", Some(&owner), None).await;
    row("GET /v1/audit-log", &s);
    let (s, _) = call(
        &ctx,
        Method::GET,
        &format!("/v1/audit-log?resource={member_id}"),
        Some(&owner),
        None,
    )
    .await;
    row("GET /v1/audit-log?resource=<id>", &s);
    let key_id = key["id"].as_str().unwrap_or_default().to_owned();
    let (s, _) = call(
        &ctx,
        Method::DELETE,
        &format!("/v1/api-keys/{key_id}"),
        Some(&owner),
        None,
    )
    .await;
    row("DELETE /v1/api-keys/{id}", &s);
    let (s, _) = call(&ctx, Method::POST, "/v1/auth/logout", Some(&owner), None).await;
    row("POST /v1/auth/logout", &s);
    let (s, _) = call(&ctx, Method::GET, "/health", None, None).await;
    row("GET /health", &s);
    let (s, _) = call(&ctx, Method::GET, "/.well-known/jwks.json", None, None).await;
    row("GET /.well-known/jwks.json", &s);

    // The building blocks the next routes stand on, called directly.
    let now = ctx.clock.now();
    let scope = Scope {
        tenant_id: TenantId::parse(&tenant).map_err(|e| anyhow::anyhow!("tenant id {e}"))?,
        principal: "usr_01JD0000000000000000000000".into(),
        key: IdempotencyKey::parse("order-1").map_err(anyhow::Error::msg)?,
    };
    let table = ctx.table.as_ref();
    let claimed = begin(table, &scope, "fingerprint", "req_1", now).await;
    row("idempotency: claim a new key", &"—");
    if let Ok(Begin::Started(lease)) = claimed {
        let answer = StoredResponse {
            status: 201,
            headers: Vec::new(),
            body: "{}".into(),
        };
        lease.finish(table, &answer).await?;
        row("idempotency: store the answer on its own (in a change's transaction: no extra request)", &"—");
    }
    let _ = begin(table, &scope, "fingerprint", "req_2", now).await;
    row("idempotency: a retry, replayed", &"—");
    let job = Job::DeleteBlob {
        key: "uploads/bench".into(),
    };
    table
        .write(outbox::enqueue(
            &job,
            "msg_01JD0000000000000000000000",
            &tenant,
            now,
        )?)
        .await?;
    row("outbox: write a job on its own (in a change's transaction: one more item, no extra request)", &"—");
    outbox::relay_all(table, ctx.queue.as_ref()).await?;
    row(
        "outbox: relay one job (local loop or sweep; plus 1 SQS SendMessageBatch)",
        &"—",
    );
    outbox::relay_all(table, ctx.queue.as_ref()).await?;
    row("outbox: sweep with nothing waiting", &"—");

    println!("| operation | status | table requests | of which |");
    println!("|---|--:|--:|---|");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}
