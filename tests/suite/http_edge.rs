//! The HTTP edge, over HTTP against the local server and through `dispatch` directly:
//! request ids, problem documents, 404/405/413/415, panics, and presigned blob URLs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::Method;
use serde::Deserialize;
use storefront::context::AppContext;
use storefront::domain::Role;
use storefront::edge::dispatch;
use storefront::http::router::{Access, Route};
use storefront::http::{json, parse_json, HandlerResult, Request};
use storefront::store::{Condition, Item, Key, Page, Query, StoreError, Table, TxOp, UpdateOp};

use crate::helpers::{self, LocalServer};

async fn problem(response: reqwest::Response, status: u16, slug: &str) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let request_id = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let body: serde_json::Value = response.json().await.expect("problem json");
    assert_eq!(
        body["type"],
        format!("https://storefront.dev/problems/{slug}")
    );
    assert_eq!(body["status"], status);
    assert_eq!(
        body["request_id"], request_id,
        "the problem names the response's request id"
    );
    body
}

#[tokio::test]
async fn health_is_ok_with_its_version_uptime_and_table_check() {
    let local = LocalServer::start().await;
    let response = local.client.get(local.url("/health")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(body["checks"]["table"], "ok");
    assert!(body["uptime_s"].as_i64().unwrap() >= 0);
    local.server.stop().await;
}

#[tokio::test]
async fn every_response_gets_its_own_request_id() {
    let local = LocalServer::start().await;
    let ids: std::collections::HashSet<String> = futures_ids(&local).await;
    assert_eq!(ids.len(), 5);
    local.server.stop().await;
}

async fn futures_ids(local: &LocalServer) -> std::collections::HashSet<String> {
    let mut ids = std::collections::HashSet::new();
    for _ in 0..5 {
        let response = local.client.get(local.url("/health")).send().await.unwrap();
        ids.insert(
            response.headers()["x-request-id"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    ids
}

#[tokio::test]
async fn an_unknown_path_is_a_404_problem() {
    let local = LocalServer::start().await;
    let response = local
        .client
        .get(local.url("/v1/nowhere"))
        .send()
        .await
        .unwrap();
    problem(response, 404, "not-found").await;
    local.server.stop().await;
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem_that_lists_the_allowed_ones() {
    let local = LocalServer::start().await;
    let response = local
        .client
        .delete(local.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["allow"], "GET");
    problem(response, 405, "method-not-allowed").await;
    local.server.stop().await;
}

#[tokio::test]
async fn a_body_over_256_kib_is_a_413_problem() {
    let local = LocalServer::start().await;
    let big = vec![b'x'; 256 * 1024 + 1];
    let response = local
        .client
        .post(local.url("/health"))
        .body(big)
        .send()
        .await
        .unwrap();
    problem(response, 413, "payload-too-large").await;
    let just_under = vec![b'x'; 256 * 1024];
    let response = local
        .client
        .post(local.url("/health"))
        .body(just_under)
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        405,
        "a body at the limit reaches routing"
    );
    local.server.stop().await;
}

#[tokio::test]
async fn a_presigned_upload_lands_only_with_the_signed_type_and_length() {
    let local = LocalServer::start().await;
    let blobs = &local.server.embedded().ctx.blobs;
    let ttl = std::time::Duration::from_secs(300);
    let put = blobs
        .presign_put("uploads/t1/img1", "image/png", 4, ttl)
        .await
        .unwrap();
    assert!(put.url.starts_with(local.server.url()));

    let wrong_type = local
        .client
        .put(&put.url)
        .header("content-type", "image/jpeg")
        .body("abcd")
        .send()
        .await
        .unwrap();
    problem(wrong_type, 403, "forbidden").await;
    let wrong_length = local
        .client
        .put(&put.url)
        .header("content-type", "image/png")
        .body("abcde")
        .send()
        .await
        .unwrap();
    problem(wrong_length, 403, "forbidden").await;
    let tampered = put.url.replace("X-Signature=", "X-Signature=A");
    let bad_signature = local
        .client
        .put(&tampered)
        .header("content-type", "image/png")
        .body("abcd")
        .send()
        .await
        .unwrap();
    problem(bad_signature, 403, "forbidden").await;
    assert_eq!(
        blobs.head("uploads/t1/img1").await.unwrap(),
        None,
        "nothing stored by refused uploads"
    );

    let ok = local
        .client
        .put(&put.url)
        .header("content-type", "image/png")
        .body("abcd")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let get = blobs.presign_get("uploads/t1/img1", ttl).await.unwrap();
    let download = local.client.get(&get.url).send().await.unwrap();
    assert_eq!(download.status(), 200);
    assert_eq!(download.headers()["content-type"], "image/png");
    assert_eq!(download.bytes().await.unwrap().as_ref(), b"abcd");
    let unsigned = local
        .client
        .get(local.url("/_blobs/uploads/t1/img1"))
        .send()
        .await
        .unwrap();
    problem(unsigned, 403, "forbidden").await;
    local.server.stop().await;
}

#[tokio::test]
async fn a_forged_upload_is_refused_before_its_body_is_read() {
    use tokio::io::AsyncWriteExt as _;
    let local = LocalServer::start().await;
    let blobs = &local.server.embedded().ctx.blobs;
    let ttl = std::time::Duration::from_secs(300);
    let put = blobs
        .presign_put("uploads/t1/big", "image/png", 10 * 1024 * 1024, ttl)
        .await
        .unwrap();
    let forged = put.url.replace("X-Signature=", "X-Signature=A");
    let target = forged.trim_start_matches(local.server.url());
    for (what, target, length) in [
        ("a forged signature", target, 10 * 1024 * 1024),
        (
            "a length other than the signed one",
            put.url.trim_start_matches(local.server.url()),
            5,
        ),
    ] {
        let mut stream = local.connect().await;
        // Headers only: the server must answer without waiting for the body.
        let head = format!(
            "PUT {target} HTTP/1.1\r\nhost: localhost\r\ncontent-type: image/png\r\ncontent-length: {length}\r\nconnection: close\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let answer = helpers::read_until_closed(&mut stream, Duration::from_secs(60))
            .await
            .unwrap_or_else(|| panic!("{what}: no answer without the body"));
        assert!(answer.starts_with("HTTP/1.1 403"), "{what}: {answer}");
    }
    assert_eq!(blobs.head("uploads/t1/big").await.unwrap(), None);
    local.server.stop().await;
}

#[tokio::test]
async fn a_client_that_stalls_its_headers_or_body_is_cut_off() {
    use tokio::io::AsyncWriteExt as _;
    let local = LocalServer::start_with(|options| options.read_timeout_s = 1).await;
    let mut stalled_head = local.connect().await;
    stalled_head
        .write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\n")
        .await
        .unwrap();
    let closed = helpers::read_until_closed(&mut stalled_head, Duration::from_secs(60)).await;
    assert!(closed.is_some(), "a stalled request head is cut off");
    let mut stalled_body = local.connect().await;
    stalled_body
        .write_all(b"POST /v1/auth/login HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"tenant")
        .await
        .unwrap();
    let answer = helpers::read_until_closed(&mut stalled_body, Duration::from_secs(60))
        .await
        .expect("a stalled body is cut off");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    local.server.stop().await;
}

#[tokio::test]
async fn connections_over_the_cap_wait_until_one_closes() {
    use tokio::io::AsyncWriteExt as _;
    let local = LocalServer::start_with(|options| options.max_connections = 1).await;
    // The one connection the server serves at a time, held open by a request not yet sent.
    let mut holder = local.connect().await;
    holder.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    let mut waiting = local.connect().await;
    waiting
        .write_all(b"GET /health HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let early = helpers::read_until_closed(&mut waiting, Duration::from_millis(500)).await;
    assert!(early.is_none(), "served past the cap: {early:?}");
    holder
        .write_all(b"host: localhost\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let held = helpers::read_until_closed(&mut holder, Duration::from_secs(60))
        .await
        .expect("the holder is answered");
    assert!(held.starts_with("HTTP/1.1 200"), "{held}");
    let served = helpers::read_until_closed(&mut waiting, Duration::from_secs(60))
        .await
        .expect("the waiting connection is served once the first closes");
    assert!(served.starts_with("HTTP/1.1 200"), "{served}");
    local.server.stop().await;
}

#[tokio::test]
async fn a_presigned_url_answers_a_browsers_preflight_and_a_missing_blob_is_a_404_problem() {
    let local = LocalServer::start().await;
    let blobs = &local.server.embedded().ctx.blobs;
    let ttl = std::time::Duration::from_secs(300);
    let put = blobs
        .presign_put("uploads/t1/img2", "image/png", 4, ttl)
        .await
        .unwrap();
    let preflight = local
        .client
        .request(reqwest::Method::OPTIONS, &put.url)
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "PUT")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    let headers = preflight.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(headers["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("PUT"));
    assert_eq!(headers["access-control-allow-headers"], "content-type");

    let get = blobs.presign_get("uploads/t1/img2", ttl).await.unwrap();
    let missing = local.client.get(&get.url).send().await.unwrap();
    assert_eq!(missing.headers()["access-control-allow-origin"], "*");
    problem(missing, 404, "not-found").await;
    local.server.stop().await;
}

#[tokio::test]
async fn a_delete_blob_job_sent_to_the_local_queue_is_run_by_the_worker() {
    let local = LocalServer::start().await;
    let ctx = &local.server.embedded().ctx;
    ctx.blobs
        .put(
            "uploads/t1/old",
            bytes::Bytes::from_static(b"x"),
            "image/png",
            None,
        )
        .await
        .unwrap();
    let job = storefront::jobs::worker::Job::DeleteBlob {
        key: "uploads/t1/old".into(),
    };
    ctx.queue
        .send(storefront::queue::Outgoing::new(job.to_body().unwrap()))
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ctx.blobs.head("uploads/t1/old").await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker did not run the job within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    local.server.stop().await;
}

// ---- through dispatch, with routes made for the test ----------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Greeting {
    name: String,
    times: u8,
}

async fn greet(req: Request, _ctx: &AppContext) -> HandlerResult {
    let greeting: Greeting = parse_json(&req)?;
    json(
        http::StatusCode::OK,
        &serde_json::json!({ "hello": greeting.name }),
    )
}

async fn explode(_req: Request, _ctx: &AppContext) -> HandlerResult {
    panic!("the handler hit a bug")
}

fn test_routes() -> Vec<Route> {
    vec![
        Route::anyone(Method::POST, "/greet", "test", |r, c| Box::pin(greet(r, c))),
        Route::anyone(Method::GET, "/explode", "test", |r, c| {
            Box::pin(explode(r, c))
        }),
        // A guarded route whose handler must never run for a caller the edge refuses.
        Route::caller(
            Method::GET,
            "/staff-only",
            "test",
            Access::Role(Role::Staff),
            |r, c, _caller| Box::pin(explode(r, c)),
        ),
    ]
}

fn request(method: &str, path: &str, content_type: Option<&str>, body: &str) -> Request {
    let mut builder = http::Request::builder().method(method).uri(path);
    if let Some(ct) = content_type {
        builder = builder.header("content-type", ct);
    }
    builder
        .body(lambda_http::Body::from(body.to_owned()))
        .unwrap()
}

fn body(response: &storefront::http::Response) -> serde_json::Value {
    serde_json::from_slice(response.body().as_ref()).unwrap()
}

#[tokio::test]
async fn malformed_json_unknown_fields_and_wrong_types_are_400_problems_naming_the_field() {
    let (embedded, _dir) = helpers::embedded(helpers::system_clock());
    let routes = test_routes();
    let cases = [
        (r#"{"name": "Ada", "times": 2"#, None),
        (
            r#"{"name": "Ada", "times": 2, "admin": true}"#,
            Some("admin"),
        ),
        (r#"{"name": "Ada", "times": "two"}"#, Some("times")),
        (r#"{"name": "Ada"}"#, Some("times")),
        (r#"{"name": "Ada", "times": 2} trailing"#, None),
    ];
    for (text, field) in cases {
        let response = dispatch(
            &embedded.ctx,
            &routes,
            request("POST", "/greet", Some("application/json"), text),
        )
        .await;
        assert_eq!(response.status(), 400, "{text}");
        let problem = body(&response);
        assert_eq!(
            problem["type"], "https://storefront.dev/problems/bad-request",
            "{text}"
        );
        match field {
            Some(field) => assert_eq!(problem["errors"][0]["field"], field, "{text}: {problem}"),
            None => assert!(problem.get("errors").is_none(), "{text}: {problem}"),
        }
    }
    let ok = dispatch(
        &embedded.ctx,
        &routes,
        request(
            "POST",
            "/greet",
            Some("application/json; charset=utf-8"),
            r#"{"name":"Ada","times":2}"#,
        ),
    )
    .await;
    assert_eq!(ok.status(), 200);
    assert_eq!(body(&ok)["hello"], "Ada");
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415_problem() {
    let (embedded, _dir) = helpers::embedded(helpers::system_clock());
    let response = dispatch(
        &embedded.ctx,
        &test_routes(),
        request("POST", "/greet", Some("text/plain"), "name=Ada"),
    )
    .await;
    assert_eq!(response.status(), 415);
    let missing = dispatch(
        &embedded.ctx,
        &test_routes(),
        request("POST", "/greet", None, "{}"),
    )
    .await;
    assert_eq!(missing.status(), 415);
}

#[tokio::test]
async fn a_panicking_handler_becomes_a_500_problem_and_the_process_keeps_serving() {
    let (embedded, _dir) = helpers::embedded(helpers::system_clock());
    let routes = test_routes();
    let response = dispatch(&embedded.ctx, &routes, request("GET", "/explode", None, "")).await;
    assert_eq!(response.status(), 500);
    let problem = body(&response);
    assert_eq!(problem["type"], "https://storefront.dev/problems/internal");
    assert!(
        !problem.to_string().contains("the handler hit a bug"),
        "the cause stays in the logs"
    );
    assert_eq!(
        problem["request_id"],
        response.headers()["x-request-id"].to_str().unwrap()
    );
    let after = dispatch(
        &embedded.ctx,
        &routes,
        request(
            "POST",
            "/greet",
            Some("application/json"),
            r#"{"name":"Ada","times":1}"#,
        ),
    )
    .await;
    assert_eq!(after.status(), 200);
}

#[tokio::test]
async fn a_body_over_256_kib_is_a_413_problem_inside_the_dispatcher_lambda_runs() {
    let (embedded, _dir) = helpers::embedded(helpers::system_clock());
    let limit = storefront::http::MAX_BODY_BYTES;
    let over = format!(r#"{{"name":"{}","times":1}}"#, "a".repeat(limit));
    let response = dispatch(
        &embedded.ctx,
        &test_routes(),
        request("POST", "/greet", Some("application/json"), &over),
    )
    .await;
    assert_eq!(response.status(), 413);
    assert_eq!(
        body(&response)["type"],
        "https://storefront.dev/problems/payload-too-large"
    );
    // At the limit exactly, the body reaches the handler.
    let padding = limit - r#"{"name":"","times":1}"#.len();
    let at = format!(r#"{{"name":"{}","times":1}}"#, "a".repeat(padding));
    assert_eq!(at.len(), limit);
    let response = dispatch(
        &embedded.ctx,
        &test_routes(),
        request("POST", "/greet", Some("application/json"), &at),
    )
    .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_guarded_route_refuses_a_caller_before_its_handler_runs() {
    let (embedded, _dir) = helpers::embedded(helpers::system_clock());
    let ctx = &embedded.ctx;
    // The guarded handler panics if it runs: a refusal must be 401/403, never that 500.
    let anonymous = dispatch(ctx, &test_routes(), request("GET", "/staff-only", None, "")).await;
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    let shop = dispatch(
        ctx,
        storefront::routes::ROUTES,
        request(
            "POST",
            "/v1/tenants",
            Some("application/json"),
            r#"{"name":"Guarded","owner":{"email":"ada@example.com","password":"correct horse battery","name":"Ada"}}"#,
        ),
    )
    .await;
    assert_eq!(shop.status(), 201);
    let shop = body(&shop);
    let signup = format!(
        r#"{{"tenant_id":{},"email":"cy@example.com","password":"correct horse battery","name":"Cy"}}"#,
        shop["tenant"]["id"]
    );
    let customer = dispatch(
        ctx,
        storefront::routes::ROUTES,
        request("POST", "/v1/auth/signup", Some("application/json"), &signup),
    )
    .await;
    assert_eq!(customer.status(), 201);
    let token = body(&customer)["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut as_customer = request("GET", "/staff-only", None, "");
    as_customer
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let refused = dispatch(ctx, &test_routes(), as_customer).await;
    assert_eq!(refused.status(), 403);
    // The owner passes the check, so the handler runs (and panics, as it was written to).
    let owner = shop["tokens"]["access_token"].as_str().unwrap();
    let mut as_owner = request("GET", "/staff-only", None, "");
    as_owner
        .headers_mut()
        .insert("authorization", format!("Bearer {owner}").parse().unwrap());
    assert_eq!(dispatch(ctx, &test_routes(), as_owner).await.status(), 500);
}

fn from_ip(mut req: Request, ip: &str) -> Request {
    req.extensions_mut()
        .insert(storefront::http::ClientIp(ip.to_owned()));
    req
}

#[tokio::test]
async fn a_client_over_its_per_ip_limit_gets_429_before_any_handler_runs() {
    // Five seconds into a whole minute, on a clock that stands still: one window for all.
    let minute = chrono::Utc::now().timestamp().div_euclid(60) * 60;
    let start = chrono::DateTime::from_timestamp(minute + 5, 0).unwrap();
    let clock = Arc::new(storefront::clock::ManualClock::new(start));
    let (embedded, _dir) = helpers::embedded(clock);
    let mut ctx = embedded.ctx.clone();
    ctx.limits.per_ip = 3;
    let greet = |ip: &str| {
        from_ip(
            request(
                "POST",
                "/greet",
                Some("application/json"),
                r#"{"name":"Ada","times":1}"#,
            ),
            ip,
        )
    };
    for n in 1..=3 {
        let ok = dispatch(&ctx, &test_routes(), greet("203.0.113.7")).await;
        assert_eq!(ok.status(), 200, "request {n}");
        assert_eq!(ok.headers()["ratelimit-policy"], "\"ip\";q=3;w=60");
        let state = ok.headers()["ratelimit"].to_str().unwrap();
        assert!(
            state.starts_with(&format!("\"ip\";r={};t=", 3 - n)),
            "{state}"
        );
    }
    // The fourth would panic in its handler: over the limit, it never gets there.
    let refused = dispatch(
        &ctx,
        &test_routes(),
        from_ip(request("GET", "/explode", None, ""), "203.0.113.7"),
    )
    .await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "55");
    assert_eq!(refused.headers()["ratelimit-policy"], "\"ip\";q=3;w=60");
    assert!(refused.headers()["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"ip\";r=0;"));
    assert_eq!(
        body(&refused)["type"],
        "https://storefront.dev/problems/rate-limited"
    );
    // A shop creation (a password hash) over the limit makes no shop.
    let shop = dispatch(
        &ctx,
        storefront::routes::ROUTES,
        from_ip(
            request(
                "POST",
                "/v1/tenants",
                Some("application/json"),
                r#"{"name":"Flood","owner":{"email":"ada@example.com","password":"correct horse battery","name":"Ada"}}"#,
            ),
            "203.0.113.7",
        ),
    )
    .await;
    assert_eq!(shop.status(), 429);
    // Another client, and the same client's neighbour in its IPv6 /64 counted apart from it.
    let other = dispatch(&ctx, &test_routes(), greet("198.51.100.1")).await;
    assert_eq!(other.status(), 200);
    for n in 1..=3 {
        let v6 = dispatch(&ctx, &test_routes(), greet(&format!("2001:db8::{n}"))).await;
        assert_eq!(v6.status(), 200, "IPv6 request {n}");
    }
    let same_64 = dispatch(&ctx, &test_routes(), greet("2001:db8::ffff")).await;
    assert_eq!(same_64.status(), 429, "one /64 is one client");
}

#[test]
fn every_route_of_the_table_declares_who_may_call_it() {
    use storefront::http::router::Access;
    let public: Vec<_> = storefront::routes::ROUTES
        .iter()
        .filter(|r| r.access() == Access::Anyone)
        .map(|r| r.path)
        .collect();
    assert_eq!(
        public,
        [
            "/health",
            "/.well-known/jwks.json",
            "/v1/tenants",
            "/v1/auth/signup",
            "/v1/auth/login",
            "/v1/auth/refresh",
            // The payment provider, which proves itself with its signature instead.
            "/v1/payments/webhook"
        ]
    );
}

/// A table whose every call fails, as an unreachable DynamoDB would.
struct Unreachable;

#[async_trait]
impl Table for Unreachable {
    async fn get(&self, _: &Key) -> Result<Option<Item>, StoreError> {
        Err(StoreError::Backend(anyhow::anyhow!("connection refused")))
    }
    async fn get_many(
        &self,
        _: &[Key],
        _: storefront::store::Consistency,
    ) -> Result<Vec<Option<Item>>, StoreError> {
        Err(StoreError::Backend(anyhow::anyhow!("connection refused")))
    }
    async fn put(&self, _: Item, _: Option<Condition>) -> Result<(), StoreError> {
        Err(StoreError::Backend(anyhow::anyhow!("connection refused")))
    }
    async fn update(
        &self,
        _: &Key,
        _: Vec<UpdateOp>,
        _: Option<Condition>,
    ) -> Result<Item, StoreError> {
        Err(StoreError::Backend(anyhow::anyhow!("connection refused")))
    }
    async fn delete(&self, _: &Key, _: Option<Condition>) -> Result<Option<Item>, StoreError> {
        Err(StoreError::Backend(anyhow::anyhow!("connection refused")))
    }
    async fn query(&self, _: Query) -> Result<Page, StoreError> {
        Err(StoreError::Backend(anyhow::anyhow!("connection refused")))
    }
    async fn transact(&self, _: Vec<TxOp>) -> Result<(), StoreError> {
        Err(StoreError::Backend(anyhow::anyhow!("connection refused")))
    }
}

#[tokio::test]
async fn health_is_503_degraded_when_the_table_cannot_be_read() {
    let (embedded, _dir) = helpers::embedded(helpers::system_clock());
    let mut ctx = embedded.ctx.clone();
    ctx.table = Arc::new(Unreachable);
    let response = dispatch(
        &ctx,
        storefront::routes::ROUTES,
        request("GET", "/health", None, ""),
    )
    .await;
    assert_eq!(response.status(), 503);
    let health = body(&response);
    assert_eq!(health["status"], "degraded");
    assert_eq!(health["checks"]["table"], "error");
}

/// The log test's requests, run in a child copy of this test binary (see below) so that its
/// subscriber is the process's only one: tracing caches which call sites are enabled
/// process-wide, and a subscriber scoped to one test thread races the other tests for it.
#[tokio::test]
#[ignore = "run by a_signed_in_request_logs_json_lines_naming_its_request_function_and_tenant in a child process"]
async fn log_writer() {
    tracing::subscriber::set_global_default(storefront::telemetry::subscriber(std::io::stdout))
        .expect("the only subscriber");
    let (embedded, _dir) = helpers::embedded(helpers::system_clock());
    let ctx = &embedded.ctx;
    let shop = dispatch(
        ctx,
        storefront::routes::ROUTES,
        request(
            "POST",
            "/v1/tenants",
            Some("application/json"),
            r#"{"name":"Logged","owner":{"email":"ada@example.com","password":"correct horse battery","name":"Ada"}}"#,
        ),
    )
    .await;
    assert_eq!(shop.status(), 201);
    let shop = body(&shop);
    let mut me = request("GET", "/v1/me", None, "");
    let token = shop["tokens"]["access_token"].as_str().unwrap();
    me.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let response = dispatch(ctx, storefront::routes::ROUTES, me).await;
    assert_eq!(response.status(), 200);
    // A sign-in names the shop it signs in to, before anyone is authenticated.
    let login = format!(
        r#"{{"tenant_id":{},"email":"ada@example.com","password":"wrong password"}}"#,
        shop["tenant"]["id"]
    );
    let refused = dispatch(
        ctx,
        storefront::routes::ROUTES,
        request("POST", "/v1/auth/login", Some("application/json"), &login),
    )
    .await;
    assert_eq!(refused.status(), 401);
    let expected = serde_json::json!({"expected": {
        "tenant_id": shop["tenant"]["id"],
        "me_request_id": response.headers()["x-request-id"].to_str().unwrap(),
    }});
    println!("{expected}");
}

#[test]
fn a_signed_in_request_logs_json_lines_naming_its_request_function_and_tenant() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "http_edge::log_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran the writer: {stdout}"
    );
    // libtest may print its own words before the first line: read from each line's `{`.
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .filter_map(|line| serde_json::from_str(&line[line.find('{')?..]).ok())
        .collect();
    let expected = lines
        .iter()
        .find_map(|line| line.get("expected"))
        .unwrap_or_else(|| panic!("the child printed what to expect: {stdout}"));
    let served: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| line["fields"]["message"] == "request served")
        .collect();
    assert_eq!(served.len(), 3, "one line per request: {stdout}");

    let me = &served[1];
    assert_eq!(me["fields"]["status"], 200);
    let request_span = &me["spans"][0];
    assert_eq!(request_span["name"], "request");
    assert_eq!(request_span["request_id"], expected["me_request_id"]);
    assert_eq!(request_span["function"], "me");
    assert_eq!(request_span["tenant_id"], expected["tenant_id"]);

    let login = &served[2];
    assert_eq!(login["fields"]["status"], 401);
    assert_eq!(login["spans"][0]["function"], "auth-login");
    assert_eq!(login["spans"][0]["tenant_id"], expected["tenant_id"]);
}
