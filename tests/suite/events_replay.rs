//! Every sample event in events/ (the files `sam local invoke -e` and
//! `cargo lambda invoke --data-file` take) replayed through its function's handler.
//!
//! A file is named `<function>.json` or `<function>.<case>.json`; its expected answer is
//! listed below, and a file without one fails the test, so no event goes unchecked.

use std::path::PathBuf;

use aws_lambda_events::sqs::SqsEvent;
use storefront::jobs::outbox;
use storefront::jobs::worker::{Dispatcher, Job};
use storefront::lambda::RelayEvent;
use storefront::queue::Queue as _;
use storefront::routes;

use crate::helpers;

pub enum Expect {
    /// An HTTP function's status code.
    Status(u16),
    /// A worker's failed message ids, in order.
    Failures(&'static [&'static str]),
    /// The outbox relay sends the job waiting in the outbox of this tenant's shard (the one
    /// a stream event's INSERT names; a sweep drains every shard) to the jobs queue, and
    /// reports no failure.
    Relayed { tenant_id: &'static str },
    /// The order expiry sweep runs over every shard of the due index and fails nowhere.
    Swept,
}

pub fn expected(file: &str) -> Option<Expect> {
    Some(match file {
        "health.json" | "jwks.json" => Expect::Status(200),
        "not-found.json" => Expect::Status(404),
        "not-found.wrong-method.json" => Expect::Status(405),
        "not-found.preflight.json" => Expect::Status(204),
        "tenants-create.json" => Expect::Status(201),
        "auth-signup.json" => Expect::Status(404),
        "auth-login.json"
        | "auth-refresh.json"
        | "auth-logout.json"
        | "me.json"
        | "sessions-list.json"
        | "sessions-revoke.json"
        | "members-create.json"
        | "members-list.json"
        | "audit-log-list.json"
        | "members-update.json"
        | "api-keys-create.json"
        | "api-keys-list.json"
        | "api-keys-revoke.json"
        | "products-create.json"
        | "products-update.json"
        | "products-delete.json"
        | "product-images-create.json"
        | "product-images-delete.json"
        | "orders-create.json"
        | "orders-list.json"
        | "orders-get.json"
        | "orders-cancel.json"
        | "orders-fulfil.json"
        | "orders-payment.json"
        | "webhook-endpoints-create.json"
        | "webhook-endpoints-list.json"
        | "webhook-endpoints-update.json"
        | "webhook-endpoints-delete.json"
        | "webhook-deliveries-list.json"
        | "webhook-deliveries-retry.json" => Expect::Status(401),
        // Anonymous reads of a shop that does not exist.
        "products-list.json" | "products-get.json" => Expect::Status(404),
        "worker.json" => Expect::Failures(&["2e1424d4-f796-459a-8184-9c92662be6da"]),
        // An email whose record is gone (nothing is sent), and a body that is no job.
        "emails.json" => Expect::Failures(&["8c1d72f3-8e4b-4a6f-0b2c-3d4e5f6a7b8c"]),
        // An upload of a product that does not exist (its object deleted), S3's test
        // notification (ignored), and a body that is no S3 event (retried).
        "images-worker.json" => Expect::Failures(&["b6a1f0e2-3c4d-4e5f-8a9b-0c1d2e3f4a5b"]),
        "outbox-relay.json" | "outbox-relay.sweep.json" => Expect::Relayed {
            tenant_id: "ten_01JD0000000000000000000000",
        },
        "orders-expire.json" => Expect::Swept,
        // Signed with the sample secret of env-vars.json long ago: outside the tolerance.
        "payments-webhook.json" => Expect::Status(400),
        _ => return None,
    })
}

/// The env-vars file `sam local invoke --env-vars` takes (see the README), beside the events.
pub const ENV_VARS_FILE: &str = "env-vars.json";

/// The payment webhook secret env-vars.json gives `sam local invoke`.
fn sample_webhook_secret() -> secrecy::SecretString {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events");
    let vars: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(ENV_VARS_FILE)).expect("read"))
            .expect("json");
    let secret = vars["PaymentsWebhookFunction"]["STOREFRONT_PAYMENT_WEBHOOK_SECRET"]
        .as_str()
        .expect("a sample secret");
    secrecy::SecretString::from(secret.to_owned())
}

/// Every sample event: its file name, its function, and its text.
pub fn sample_events() -> Vec<(String, String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("events/")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "events/ is empty");
    files
        .into_iter()
        .map(|path| {
            let file = path
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            let function = file.split('.').next().expect("function").to_owned();
            let text = std::fs::read_to_string(&path).expect("read event");
            (file, function, text)
        })
        .filter(|(file, _, _)| file != ENV_VARS_FILE)
        .collect()
}

#[tokio::test]
async fn every_sample_event_gets_its_expected_answer_from_its_handler() {
    for (file, function, text) in sample_events() {
        let (mut embedded, _guard) = helpers::embedded(helpers::system_clock());
        embedded.ctx.payment_webhook_secret = Some(sample_webhook_secret());
        let ctx = &embedded.ctx;
        match expected(&file)
            .unwrap_or_else(|| panic!("events/{file} has no expected answer in events_replay.rs"))
        {
            Expect::Status(status) => {
                let req = lambda_http::request::from_str(&text)
                    .unwrap_or_else(|e| panic!("events/{file}: {e}"));
                let response = if function == routes::UNMATCHED {
                    storefront::edge::dispatch(ctx, &routes::unmatched(), req).await
                } else {
                    let routes = routes::of_function(&function);
                    assert!(
                        !routes.is_empty(),
                        "events/{file}: no route is served by `{function}`"
                    );
                    storefront::edge::dispatch(ctx, &routes, req).await
                };
                assert_eq!(
                    response.status().as_u16(),
                    status,
                    "events/{file}: {:?}",
                    response.body()
                );
                let request_id = response.headers()["x-request-id"].to_str().expect("ascii");
                let event: serde_json::Value = serde_json::from_str(&text).expect("json");
                assert_eq!(
                    request_id, event["requestContext"]["requestId"],
                    "events/{file}: API Gateway's request id is kept"
                );
            }
            Expect::Failures(ids) => {
                let event: SqsEvent =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("events/{file}: {e}"));
                let response = if function == "images-worker" {
                    let worker = storefront::jobs::images::ImageUploads::default();
                    storefront::lambda::handle_sqs(ctx, &worker, event).await
                } else {
                    storefront::lambda::handle_sqs(ctx, &Dispatcher, event).await
                };
                let failed: Vec<&str> = response
                    .batch_item_failures
                    .iter()
                    .map(|f| f.item_identifier.as_str())
                    .collect();
                assert_eq!(failed, ids, "events/{file}");
            }
            Expect::Relayed { tenant_id } => {
                let job = Job::DeleteBlob {
                    key: "uploads/waiting".into(),
                };
                let enqueue = outbox::enqueue(
                    &job,
                    "msg_01JD0000000000000000000000",
                    tenant_id,
                    ctx.clock.now(),
                )
                .expect("outbox item");
                ctx.table.write(enqueue).await.expect("written");
                let event: RelayEvent =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("events/{file}: {e}"));
                let response = storefront::lambda::handle_relay(ctx, event)
                    .await
                    .unwrap_or_else(|e| panic!("events/{file}: {e}"));
                assert!(response.batch_item_failures.is_empty(), "events/{file}");
                let sent = embedded.jobs.receive(10).await.expect("receive");
                let bodies: Vec<&str> = sent.iter().map(|m| m.body.as_str()).collect();
                assert_eq!(bodies, [job.to_body().expect("body")], "events/{file}");
            }
            Expect::Swept => {
                let _: serde_json::Value =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("events/{file}: {e}"));
                let sweep = storefront::lambda::handle_order_expiry(ctx)
                    .await
                    .unwrap_or_else(|e| panic!("events/{file}: {e}"));
                assert_eq!(sweep.failed, 0, "events/{file}");
            }
        }
    }
}

/// Sends one request through the full route table, as the caller with `token`.
async fn call(
    ctx: &storefront::context::AppContext,
    method: http::Method,
    path: &str,
    token: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let response = storefront::edge::dispatch(
        ctx,
        routes::ROUTES,
        helpers::api_request(method, path, Some(token), body),
    )
    .await;
    assert!(
        response.status().is_success(),
        "{path}: {:?}",
        response.body()
    );
    serde_json::from_slice(response.body().as_ref()).unwrap_or(serde_json::Value::Null)
}

/// The sample events of signed-in routes carry no live token (a file cannot hold one), so
/// the test above sees their 401. Here each is replayed as its shop's owner, with the
/// sample ids it names swapped for live ones, and must get its success answer.
#[tokio::test]
async fn every_signed_in_sample_event_succeeds_with_a_live_token_and_live_ids() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events");
    let (embedded, _guard) = helpers::embedded(helpers::system_clock());
    let ctx = &embedded.ctx;
    let shop_event = std::fs::read_to_string(dir.join("tenants-create.json")).expect("event");
    let shop = storefront::edge::dispatch(
        ctx,
        &routes::of_function("tenants-create"),
        lambda_http::request::from_str(&shop_event).expect("event parses"),
    )
    .await;
    assert_eq!(shop.status(), 201);
    let shop: serde_json::Value = serde_json::from_slice(shop.body().as_ref()).expect("json");
    let owner = shop["tokens"]["access_token"]
        .as_str()
        .expect("token")
        .to_owned();
    let tenant_id = shop["tenant"]["id"].as_str().expect("tenant").to_owned();
    let member = call(ctx, http::Method::POST, "/v1/members", &owner, Some(serde_json::json!({"email": "grace@example.com", "name": "Grace", "password": "correct horse battery staple", "role": "staff"}))).await;
    let key = call(
        ctx,
        http::Method::POST,
        "/v1/api-keys",
        &owner,
        Some(serde_json::json!({"name": "Sample"})),
    )
    .await;
    // A second device of the owner's, for the revocation event to end.
    let phone = storefront::edge::dispatch(
        ctx,
        routes::ROUTES,
        http::Request::builder()
            .method("POST")
            .uri("/v1/auth/login")
            .header("content-type", "application/json")
            .body(lambda_http::Body::from(
                serde_json::json!({"tenant_id": tenant_id, "email": "ada@example.com", "password": "correct horse battery staple"}).to_string(),
            ))
            .expect("request"),
    )
    .await;
    assert_eq!(phone.status(), 200);
    let sessions = call(ctx, http::Method::GET, "/v1/sessions", &owner, None).await;
    let phone_session = sessions["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|s| s["current"] == false)
        .and_then(|s| s["id"].as_str())
        .expect("a second session")
        .to_owned();
    // The product the sample get, update and delete events name (the create event makes
    // another, with the sample's own sku).
    let product = call(
        ctx,
        http::Method::POST,
        "/v1/products",
        &owner,
        Some(serde_json::json!({"sku": "SAMPLE-1", "name": "Sample Mug", "description": "", "price": {"amount": 1000, "currency": "eur"}, "stock": 3})),
    )
    .await;
    let product_id = product["id"].as_str().expect("product id").to_owned();
    let mut live: Vec<(&str, String)> = vec![
        ("prod_01JD0000000000000000000000", product_id.clone()),
        (
            "usr_01JD0000000000000000000000",
            member["id"].as_str().expect("member id").to_owned(),
        ),
        (
            "key_01JD0000000000000000000000",
            key["id"].as_str().expect("key id").to_owned(),
        ),
        ("ses_01JD0000000000000000000000", phone_session.clone()),
        ("ten_01JD0000000000000000000000", tenant_id.clone()),
    ];
    // In this order: the logout, which ends the owner's session, comes last.
    for (file, status) in [
        ("me.json", 200),
        ("sessions-list.json", 200),
        ("members-list.json", 200),
        ("audit-log-list.json", 200),
        ("api-keys-list.json", 200),
        ("webhook-endpoints-create.json", 201),
        ("webhook-endpoints-list.json", 200),
        ("webhook-endpoints-update.json", 200),
        ("webhook-deliveries-list.json", 200),
        // Nothing was delivered to the new endpoint: the sample delivery names none.
        ("webhook-deliveries-retry.json", 404),
        ("webhook-endpoints-delete.json", 204),
        ("products-create.json", 201),
        ("products-list.json", 200),
        ("products-get.json", 200),
        ("products-update.json", 200),
        ("orders-create.json", 201),
        ("orders-list.json", 200),
        ("orders-get.json", 200),
        // The owner placed the sample order, so the owner may pay it (the local provider).
        ("orders-payment.json", 200),
        // The sample order awaits payment: fulfilling it is refused, cancelling it is not.
        ("orders-fulfil.json", 409),
        ("orders-cancel.json", 200),
        ("product-images-create.json", 201),
        ("product-images-delete.json", 204),
        ("products-delete.json", 204),
        ("members-create.json", 201),
        ("api-keys-create.json", 201),
        ("members-update.json", 200),
        ("api-keys-revoke.json", 204),
        ("sessions-revoke.json", 204),
        ("auth-logout.json", 204),
    ] {
        if file == "product-images-delete.json" {
            // The image the sample deletion names: one added after the sample update, whose
            // If-Match names the product's first version.
            let image = call(
                ctx,
                http::Method::POST,
                &format!("/v1/products/{product_id}/images"),
                &owner,
                Some(serde_json::json!({"content_type": "image/png", "content_length": 10})),
            )
            .await;
            let image_id = image["image_id"].as_str().expect("image id").to_owned();
            live.push(("img_01JD0000000000000000000000", image_id));
        }
        if file == "webhook-endpoints-update.json" {
            // The endpoint the sample create registered, which the later events name.
            let endpoints = call(
                ctx,
                http::Method::GET,
                "/v1/webhook-endpoints",
                &owner,
                None,
            )
            .await;
            let endpoint_id = endpoints["items"][0]["id"]
                .as_str()
                .expect("endpoint id")
                .to_owned();
            live.push(("whe_01JD0000000000000000000000", endpoint_id));
        }
        if file == "orders-list.json" {
            // The order the sample create placed, which the get and moves name.
            let orders = call(ctx, http::Method::GET, "/v1/orders", &owner, None).await;
            let order_id = orders["items"][0]["id"]
                .as_str()
                .expect("order id")
                .to_owned();
            live.push(("ord_01JD0000000000000000000000", order_id));
        }
        let mut text = std::fs::read_to_string(dir.join(file)).expect("event");
        for (sample, id) in &live {
            text = text.replace(sample, id);
        }
        let mut req =
            lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("events/{file}: {e}"));
        req.headers_mut().insert(
            "authorization",
            format!("Bearer {owner}").parse().expect("header"),
        );
        let function = file.trim_end_matches(".json");
        let response = storefront::edge::dispatch(ctx, &routes::of_function(function), req).await;
        assert_eq!(
            response.status().as_u16(),
            status,
            "events/{file}: {:?}",
            response.body()
        );
    }
}
