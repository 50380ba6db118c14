//! Payment end to end over HTTP against the local server: with its own local provider (no
//! account anywhere), and with Stripe's API played by localstripe, a stateful fake of it
//! that sends Stripe-signed webhooks. And Storefront's `Stripe-Signature` checked by an
//! independent implementation, the `stripe` Python package.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::LocalServer;

const PASSWORD: &str = "a long passphrase";
const WEBHOOK_SECRET: &str = "whsec_payments_suite";

/// The tools venv's bin directory (.ci/setup), where localstripe and Python live.
pub(crate) fn tools_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("STOREFRONT_LOCALSTRIPE") {
        if let Some(dir) = PathBuf::from(path).parent() {
            return dir.to_owned();
        }
    }
    std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/storefront/venv/bin"))
        .expect("HOME")
}

/// localstripe on a free loopback port, stopped when dropped (and by a watcher when this
/// process ends, so none outlives the tests).
struct LocalStripe {
    base: String,
    process: Child,
}

impl Drop for LocalStripe {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl LocalStripe {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let command = tools_bin().join("storefront-localstripe");
        let script = format!(
            "\"$0\" --port {port} --from-scratch >/dev/null 2>&1 & m=$!; trap 'kill $m 2>/dev/null' EXIT TERM; \
             while kill -0 {parent} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done",
            parent = std::process::id()
        );
        let process = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&command)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e}; run .ci/test, which installs it",
                    command.display()
                )
            });
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "localstripe did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            base: format!("http://127.0.0.1:{port}"),
            process,
        }
    }

    /// A form POST to localstripe's API as the account `sk_test_storefront`.
    async fn post(&self, client: &reqwest::Client, path: &str, form: &[(&str, &str)]) -> Value {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let response = client
            .post(format!("{}{path}", self.base))
            .bearer_auth("sk_test_storefront")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("localstripe answers");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {body}");
        body
    }
}

/// A shop, a product, a signed-in customer and their order, over HTTP: the customer's
/// token and the order.
async fn an_order(local: &LocalServer) -> (String, String, Value) {
    let client = &local.client;
    let shop: Value = client
        .post(local.url("/v1/tenants"))
        .json(&json!({"name": "Tea", "currency": "eur", "owner": {"email": "o@example.com", "password": PASSWORD, "name": "O"}}))
        .send().await.unwrap().json().await.unwrap();
    let owner = shop["tokens"]["access_token"].as_str().unwrap().to_owned();
    let tenant = shop["tenant"]["id"].as_str().unwrap();
    let product: Value = client
        .post(local.url("/v1/products"))
        .bearer_auth(&owner)
        .json(&json!({"sku": "T", "name": "Tea", "description": "", "price": {"amount": 1250, "currency": "eur"}, "stock": 3}))
        .send().await.unwrap().json().await.unwrap();
    let customer: Value = client
        .post(local.url("/v1/auth/signup"))
        .json(&json!({"tenant_id": tenant, "email": "g@example.com", "password": PASSWORD, "name": "G"}))
        .send().await.unwrap().json().await.unwrap();
    let token = customer["tokens"]["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let order = client
        .post(local.url("/v1/orders"))
        .bearer_auth(&token)
        .header("idempotency-key", "payments-1")
        .json(&json!({"items": [{"product_id": product["id"], "quantity": 2}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(order.status(), 201);
    (owner, token, order.json().await.unwrap())
}

/// The order as its customer reads it once `done` holds, or when the bound (which only
/// ends a test that would otherwise hang) passes.
async fn order_when(
    local: &LocalServer,
    token: &str,
    id: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let mut order = Value::Null;
    for _ in 0..300 {
        order = local
            .client
            .get(local.url(&format!("/v1/orders/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if done(&order) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    order
}

async fn start_payment(local: &LocalServer, token: &str, id: &str) -> Value {
    let response = local
        .client
        .post(local.url(&format!("/v1/orders/{id}/payment")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn cancel(local: &LocalServer, token: &str, id: &str) -> Value {
    let response = local
        .client
        .post(local.url(&format!("/v1/orders/{id}/cancel")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_server_takes_an_order_from_cart_to_paid_and_back_with_no_account_anywhere() {
    let local = LocalServer::start().await;
    let (_, token, order) = an_order(&local).await;
    let id = order["id"].as_str().unwrap();
    let payment = start_payment(&local, &token, id).await;
    assert_eq!(payment["provider"], "local");
    let intent = payment["payment_intent_id"].as_str().unwrap();
    let wrong = local
        .client
        .post(local.url(&format!("/_payments/{intent}/confirm")))
        .json(&json!({"client_secret": "not it"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 409);
    let confirmed = local
        .client
        .post(local.url(&format!("/_payments/{intent}/confirm")))
        .json(&json!({"client_secret": payment["client_secret"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(confirmed.status(), 200);
    let paid = order_when(&local, &token, id, |o| o["status"] == "paid").await;
    assert_eq!(paid["status"], "paid");
    cancel(&local, &token, id).await;
    let refunded = order_when(&local, &token, id, |o| o["refund"]["status"] == "succeeded").await;
    assert_eq!(refunded["status"], "cancelled");
    assert_eq!(
        refunded["refund"],
        json!({"status": "succeeded", "amount": {"amount": 2500, "currency": "eur"}})
    );
    local.server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_payment_at_localstripe_pays_the_order_and_a_cancel_refunds_it_through_its_webhooks()
{
    let stripe = LocalStripe::start();
    let local = LocalServer::start_with(|options| {
        options.stripe_secret_key = Some(secrecy::SecretString::from("sk_test_storefront"));
        options.stripe_api_base = stripe.base.clone();
        options.payment_webhook_secret = Some(secrecy::SecretString::from(WEBHOOK_SECRET));
    })
    .await;
    let client = reqwest::Client::new();
    stripe
        .post(
            &client,
            "/_config/webhooks/storefront",
            &[
                ("url", &local.url("/v1/payments/webhook")),
                ("secret", WEBHOOK_SECRET),
            ],
        )
        .await;
    let (_, token, order) = an_order(&local).await;
    let id = order["id"].as_str().unwrap();
    let payment = start_payment(&local, &token, id).await;
    assert_eq!(payment["provider"], "stripe");
    let intent = payment["payment_intent_id"].as_str().unwrap().to_owned();
    assert_eq!(
        start_payment(&local, &token, id).await,
        payment,
        "one PaymentIntent per order"
    );
    // The customer's card, as Stripe.js would send it: a test card attached, then confirmed
    // (localstripe refuses a confirm that carries the payment method itself).
    let method = stripe
        .post(
            &client,
            "/v1/payment_methods",
            &[
                ("type", "card"),
                ("card[number]", "4242424242424242"),
                ("card[exp_month]", "12"),
                ("card[exp_year]", "2034"),
                ("card[cvc]", "123"),
            ],
        )
        .await;
    stripe
        .post(
            &client,
            &format!("/v1/payment_intents/{intent}"),
            &[("payment_method", method["id"].as_str().unwrap())],
        )
        .await;
    let confirmed = stripe
        .post(
            &client,
            &format!("/v1/payment_intents/{intent}/confirm"),
            &[],
        )
        .await;
    assert_eq!(confirmed["status"], "succeeded", "{confirmed}");
    assert_eq!(confirmed["amount"], 2500);
    assert_eq!(confirmed["metadata"]["order_id"], id);
    let paid = order_when(&local, &token, id, |o| o["status"] == "paid").await;
    assert_eq!(
        paid["status"], "paid",
        "localstripe's signed payment_intent.succeeded"
    );
    let cancelled = cancel(&local, &token, id).await;
    assert_eq!(cancelled["refund"]["status"], "pending");
    let refunded = order_when(&local, &token, id, |o| o["refund"]["status"] == "succeeded").await;
    assert_eq!(
        refunded["refund"]["status"], "succeeded",
        "localstripe's charge.refunded: {refunded}"
    );
    // Exactly one refund at Stripe, whatever ran twice.
    let refunds: Value = client
        .get(format!(
            "{}/v1/refunds?payment_intent={intent}",
            stripe.base
        ))
        .bearer_auth("sk_test_storefront")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        refunds["data"].as_array().map(Vec::len),
        Some(1),
        "{refunds}"
    );
    local.server.stop().await;
}

#[test]
fn the_stripe_python_package_accepts_storefronts_signatures() {
    let body =
        r#"{"id":"evt_1","type":"payment_intent.succeeded","data":{"object":{"id":"pi_1"}}}"#;
    let now = chrono::Utc::now().timestamp();
    let header = storefront::credentials::stripe_signature::sign(
        body.as_bytes(),
        &secrecy::SecretString::from(WEBHOOK_SECRET),
        now,
    );
    let check = |header: &str| {
        Command::new(tools_bin().join("python"))
            .arg("-c")
            .arg("import sys, stripe; stripe.WebhookSignature.verify_header(sys.argv[1], sys.argv[2], sys.argv[3], 300)")
            .args([body, header, WEBHOOK_SECRET])
            .output()
            .expect("python runs")
    };
    let accepted = check(&header);
    assert!(
        accepted.status.success(),
        "{}",
        String::from_utf8_lossy(&accepted.stderr)
    );
    let tampered = header.replace("v1=", "v1=0");
    assert!(
        !check(&tampered).status.success(),
        "a wrong signature is refused there too"
    );
    // And the other way: a header made with Python's own hmac verifies here.
    let made = Command::new(tools_bin().join("python"))
        .arg("-c")
        .arg("import sys, time, hmac, hashlib; t=int(time.time()); s=hmac.new(sys.argv[2].encode(), f'{t}.{sys.argv[1]}'.encode(), hashlib.sha256).hexdigest(); print(f't={t},v1={s}')")
        .args([body, WEBHOOK_SECRET])
        .output()
        .expect("python runs");
    let made = String::from_utf8(made.stdout).unwrap();
    storefront::credentials::stripe_signature::verify(
        Some(made.trim()),
        body.as_bytes(),
        &secrecy::SecretString::from(WEBHOOK_SECRET),
        chrono::Utc::now().timestamp(),
    )
    .expect("verified");
}
