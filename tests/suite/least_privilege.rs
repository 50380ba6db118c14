//! Each function's IAM policy in template.yaml grants every request the function makes, and
//! nothing it does not. The functions run their real flows over ports that record each
//! request as the action IAM authorises: the table's as DynamoDB actions (a transaction is
//! authorised item by item) with the resource (table or index) and partition they touch,
//! the queue's and the bucket's as SQS and S3 actions. Each must be allowed by a statement
//! of that function's policy, `dynamodb:LeadingKeys` conditions included; each action a
//! statement grants must be used by a flow (or by Lambda on the function's behalf: its
//! event source, its failure destination, its logs and traces); no table write is granted
//! without a `LeadingKeys` condition; and the SSM signing keys are read by exactly the
//! functions that issue tokens.

use std::collections::BTreeSet;
use std::sync::Arc;

use http::Method;
use serde_json::{json, Value};
use serde_norway::Value as Yaml;
use storefront::context::AppContext;
use storefront::http::router::Access;
use storefront::jobs::outbox;
use storefront::jobs::worker::Job;
use storefront::jobs::JobMessage;
use storefront::queue::Queue as _;
use storefront::routes;
use storefront::store::{Item, Key};
use storefront_tests::recording::{Other, Recording, RecordingBlobs, RecordingQueue, Touch};

use crate::helpers;

/// One table request's item as IAM sees it, and the function that asked.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Request {
    function: String,
    touch: Touch,
}

/// Runs requests as one function at a time, over the recording store.
struct Harness {
    ctx: AppContext,
    recording: Arc<Recording>,
    /// The functions whose answers carried an access token they signed.
    issuers: std::sync::Mutex<BTreeSet<String>>,
}

impl Harness {
    fn as_function(&self, function: &str) {
        self.recording.label(function);
    }

    /// Sends a request to `function` (only its own routes, as on Lambda) and checks the status.
    async fn call(
        &self,
        function: &str,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        status: u16,
    ) -> Value {
        self.as_function(function);
        let response = storefront::edge::dispatch(
            &self.ctx,
            &routes::of_function(function),
            helpers::api_request(method, path, token, body),
        )
        .await;
        assert_eq!(
            response.status().as_u16(),
            status,
            "{function} {path}: {:?}",
            response.body()
        );
        let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null);
        if body["access_token"].is_string() || body["tokens"]["access_token"].is_string() {
            self.issuers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(function.to_owned());
        }
        body
    }

    /// Places an order through `orders-create` with an `Idempotency-Key`.
    async fn place(&self, token: &str, key: &str, items: Value, status: u16) -> Value {
        self.as_function("orders-create");
        let mut req = helpers::api_request(
            Method::POST,
            "/v1/orders",
            Some(token),
            Some(json!({ "items": items })),
        );
        req.headers_mut()
            .insert("idempotency-key", key.parse().expect("header"));
        let response =
            storefront::edge::dispatch(&self.ctx, &routes::of_function("orders-create"), req).await;
        assert_eq!(
            response.status().as_u16(),
            status,
            "orders-create: {:?}",
            response.body()
        );
        serde_json::from_slice(response.body().as_ref()).unwrap_or(Value::Null)
    }

    /// Sends a provider event to `payments-webhook`, signed as the provider signs it.
    async fn webhook(&self, event: Value) {
        self.as_function("payments-webhook");
        let body = event.to_string();
        let secret = self.ctx.payment_webhook_secret.as_ref().expect("a secret");
        let signature = storefront::credentials::stripe_signature::sign(
            body.as_bytes(),
            secret,
            chrono::Utc::now().timestamp(),
        );
        let mut req = helpers::api_request(Method::POST, "/v1/payments/webhook", None, None);
        *req.body_mut() = lambda_http::Body::Text(body);
        req.headers_mut()
            .insert("content-type", "application/json".parse().expect("header"));
        req.headers_mut()
            .insert("stripe-signature", signature.parse().expect("header"));
        let response =
            storefront::edge::dispatch(&self.ctx, &routes::of_function("payments-webhook"), req)
                .await;
        assert_eq!(response.status(), 200, "{:?}", response.body());
        let answer: Value = serde_json::from_slice(response.body().as_ref()).expect("json");
        assert_eq!(answer["outcome"], "applied", "{answer}");
    }

    /// Sends a request to `function` whatever it answers: for the requests its edge makes.
    async fn reach(&self, function: &str, method: Method, path: &str, token: &str) {
        self.as_function(function);
        let body = matches!(method, Method::POST | Method::PATCH).then(|| json!({}));
        storefront::edge::dispatch(
            &self.ctx,
            &routes::of_function(function),
            helpers::api_request(method, path, Some(token), body),
        )
        .await;
    }
}

/// What every function's flows did: success and refusal paths alike.
struct Flows {
    table: Vec<Request>,
    others: Vec<Other>,
    /// The functions that signed an access token.
    issuers: BTreeSet<String>,
}

/// Runs every function's flows over the recording ports.
async fn requests_of_every_flow() -> Flows {
    let (embedded, _dir) = helpers::embedded(helpers::system_clock());
    let recording = Arc::new(Recording::new(embedded.ctx.table.clone()));
    let mut ctx = embedded.ctx.clone();
    ctx.table = recording.clone();
    ctx.payment_webhook_secret = Some(secrecy::SecretString::from("whsec_least_privilege"));
    ctx.queue = Arc::new(RecordingQueue {
        recording: recording.clone(),
        inner: embedded.ctx.queue.clone(),
        queue: "JobsQueue.Arn",
    });
    ctx.dead_letters = Arc::new(RecordingQueue {
        recording: recording.clone(),
        inner: embedded.ctx.dead_letters.clone(),
        queue: "JobsDeadLetterQueue.Arn",
    });
    ctx.emails = Arc::new(RecordingQueue {
        recording: recording.clone(),
        inner: embedded.ctx.emails.clone(),
        queue: "EmailsQueue.Arn",
    });
    ctx.mailer = Arc::new(storefront_tests::recording::RecordingMailer {
        recording: recording.clone(),
    });
    // Deliveries go to a receiver on this machine.
    ctx.webhooks.allow_loopback = true;
    ctx.webhooks.schedule = storefront::domain::RetrySchedule::parse("0").unwrap();
    ctx.blobs = Arc::new(RecordingBlobs {
        recording: recording.clone(),
        inner: embedded.ctx.blobs.clone(),
    });
    let h = Harness {
        ctx,
        recording: recording.clone(),
        issuers: std::sync::Mutex::new(BTreeSet::new()),
    };
    let password = "correct horse battery staple";

    h.call("health", Method::GET, "/health", None, None, 200)
        .await;
    h.call("not-found", Method::GET, "/nowhere", None, None, 404)
        .await;
    h.call(
        "jwks",
        Method::GET,
        "/.well-known/jwks.json",
        None,
        None,
        200,
    )
    .await;
    let shop = h
        .call(
            "tenants-create",
            Method::POST,
            "/v1/tenants",
            None,
            Some(json!({"name": "Least", "owner": {"email": "ada@example.com", "password": password, "name": "Ada"}})),
            201,
        )
        .await;
    let tenant = shop["tenant"]["id"].as_str().unwrap().to_owned();
    let owner = shop["tokens"]["access_token"].as_str().unwrap().to_owned();
    let owner = owner.as_str();
    // A webhook endpoint on a receiver of this machine, which hears of every event the
    // flows above wrote once the worker fans them out below; its first answer is a 500.
    let receiver = storefront_tests::receiver::Receiver::start(200).await;
    receiver.then(&[500]);
    h.call(
        "webhook-endpoints-create",
        Method::POST,
        "/v1/webhook-endpoints",
        Some(owner),
        Some(json!({"url": receiver.url, "events": ["order.created"]})),
        201,
    )
    .await;
    let endpoints = h
        .call(
            "webhook-endpoints-list",
            Method::GET,
            "/v1/webhook-endpoints",
            Some(owner),
            None,
            200,
        )
        .await;
    let endpoint = endpoints["items"][0]["id"].as_str().unwrap().to_owned();
    let every_event = json!({"events": storefront::domain::EVENT_TYPES});
    h.call(
        "webhook-endpoints-update",
        Method::PATCH,
        &format!("/v1/webhook-endpoints/{endpoint}"),
        Some(owner),
        Some(every_event),
        200,
    )
    .await;

    let signup =
        json!({"tenant_id": tenant, "email": "bo@example.com", "password": password, "name": "Bo"});
    // A new account, then the same email again (refused by the email lock).
    for status in [201, 409] {
        let body = Some(signup.clone());
        h.call(
            "auth-signup",
            Method::POST,
            "/v1/auth/signup",
            None,
            body,
            status,
        )
        .await;
    }
    let login = |password: &'static str, status| {
        let (h, tenant) = (&h, &tenant);
        async move {
            let body =
                json!({"tenant_id": tenant, "email": "ada@example.com", "password": password});
            h.call(
                "auth-login",
                Method::POST,
                "/v1/auth/login",
                None,
                Some(body),
                status,
            )
            .await
        }
    };
    login("wrong password!", 401).await;
    let phone = login(password, 200).await;
    let refresh = |token: Value, status| {
        let h = &h;
        async move {
            let body = json!({ "refresh_token": token });
            h.call(
                "auth-refresh",
                Method::POST,
                "/v1/auth/refresh",
                None,
                Some(body),
                status,
            )
            .await
        }
    };
    let spent = phone["refresh_token"].clone();
    let renewed = refresh(spent.clone(), 200).await;
    // The spent token again: the whole session is revoked.
    refresh(spent, 401).await;
    refresh(renewed["refresh_token"].clone(), 401).await;

    let member = h
        .call(
            "members-create",
            Method::POST,
            "/v1/members",
            Some(owner),
            Some(json!({"email": "cy@example.com", "name": "Cy", "password": password, "role": "staff"})),
            201,
        )
        .await;
    h.call(
        "members-list",
        Method::GET,
        "/v1/members",
        Some(owner),
        None,
        200,
    )
    .await;
    // Promoted to admin, then to owner, then demoted: demoting an owner also checks that
    // the caller still is one, in the same transaction.
    for role in ["admin", "owner", "admin"] {
        h.call(
            "members-update",
            Method::PATCH,
            &format!("/v1/members/{}", member["id"].as_str().unwrap()),
            Some(owner),
            Some(json!({ "role": role })),
            200,
        )
        .await;
    }
    let key = h
        .call(
            "api-keys-create",
            Method::POST,
            "/v1/api-keys",
            Some(owner),
            Some(json!({"name": "Sync"})),
            201,
        )
        .await;
    h.call(
        "api-keys-list",
        Method::GET,
        "/v1/api-keys",
        Some(owner),
        None,
        200,
    )
    .await;
    for path in [
        "/v1/audit-log",
        "/v1/audit-log?resource=key_01JD0000000000000000000000",
    ] {
        h.call("audit-log-list", Method::GET, path, Some(owner), None, 200)
            .await;
    }
    // The catalogue: a product, a second one refused for its sku, reads anonymous and
    // signed in, a search, an update that renames it and changes its sku, and its deletion.
    let mug = json!({"sku": "MUG-1", "name": "Blue Mug", "description": "", "price": {"amount": 1250, "currency": "usd"}, "stock": 5});
    let product = h
        .call(
            "products-create",
            Method::POST,
            "/v1/products",
            Some(owner),
            Some(mug.clone()),
            201,
        )
        .await;
    h.call(
        "products-create",
        Method::POST,
        "/v1/products",
        Some(owner),
        Some(mug),
        409,
    )
    .await;
    let product_path = format!("/v1/products/{}", product["id"].as_str().unwrap());
    for (path, token, status) in [
        (format!("/v1/products?tenant_id={tenant}"), None, 200),
        (
            format!("/v1/products?tenant_id={tenant}&q=blue%20mu"),
            None,
            200,
        ),
        ("/v1/products?q=mug".to_owned(), Some(owner), 200),
        (
            "/v1/products?tenant_id=ten_01JD0000000000000000000000".to_owned(),
            None,
            404,
        ),
    ] {
        h.call("products-list", Method::GET, &path, token, None, status)
            .await;
    }
    h.call(
        "products-get",
        Method::GET,
        &format!("{product_path}?tenant_id={tenant}"),
        None,
        None,
        200,
    )
    .await;
    h.call(
        "products-update",
        Method::PATCH,
        &product_path,
        Some(owner),
        Some(json!({"sku": "MUG-2", "name": "Green Mug", "price": {"amount": 990, "currency": "usd"}})),
        200,
    )
    .await;
    // Images: one added, uploaded and checked by the image worker; one uploaded and then
    // deleted with its product while the worker checks it (it deletes what it made); one
    // removed, and then the product with its images (their objects' deletion jobs).
    let image_flow = |content_length: usize| {
        let (h, product_path) = (&h, &product_path);
        async move {
            h.call(
                "product-images-create",
                Method::POST,
                &format!("{product_path}/images"),
                Some(owner),
                Some(json!({"content_type": "image/png", "content_length": content_length})),
                201,
            )
            .await
        }
    };
    let bytes = crate::catalog::png(32, 32);
    let added = image_flow(bytes.len()).await;
    let uploaded = |image: Value| {
        let upload = url::Url::parse(image["upload"]["url"].as_str().unwrap()).unwrap();
        upload.path().trim_start_matches("/_blobs/").to_owned()
    };
    let upload = uploaded(added.clone());
    // The client's upload, straight to the bucket (no function's role).
    embedded
        .ctx
        .blobs
        .put(
            &upload,
            bytes::Bytes::from(bytes.clone()),
            "image/png",
            None,
        )
        .await
        .unwrap();
    h.as_function("images-worker");
    let worker = storefront::jobs::images::ImageUploads::default();
    let outcome =
        storefront::jobs::process_batch(&h.ctx, &worker, &[crate::catalog::notification(&upload)])
            .await;
    assert!(outcome.failed.is_empty());
    let raced = uploaded(image_flow(bytes.len()).await);
    embedded
        .ctx
        .blobs
        .put(&raced, bytes::Bytes::from(bytes), "image/png", None)
        .await
        .unwrap();
    let mut racing = h.ctx.clone();
    racing.table = Arc::new(crate::catalog::deletes_before_first_transaction(
        h.ctx.table.clone(),
        embedded.ctx.table.clone(),
        Key::new(
            format!(
                "TENANT#{tenant}#PRODUCT#{}",
                product["id"].as_str().unwrap()
            ),
            "PRODUCT",
        ),
    ));
    h.as_function("images-worker");
    let outcome =
        storefront::jobs::process_batch(&racing, &worker, &[crate::catalog::notification(&raced)])
            .await;
    assert!(outcome.failed.is_empty());
    // The racing deletion took the product: a new one for the rest of the flows.
    let product = h
        .call(
            "products-create",
            Method::POST,
            "/v1/products",
            Some(owner),
            Some(json!({"sku": "MUG-3", "name": "Red Mug", "description": "", "price": {"amount": 100, "currency": "usd"}, "stock": 1})),
            201,
        )
        .await;
    let product_path = format!("/v1/products/{}", product["id"].as_str().unwrap());
    let removed = h
        .call(
            "product-images-create",
            Method::POST,
            &format!("{product_path}/images"),
            Some(owner),
            Some(json!({"content_type": "image/jpeg", "content_length": 10})),
            201,
        )
        .await;
    h.call(
        "product-images-delete",
        Method::DELETE,
        &format!(
            "{product_path}/images/{}",
            removed["image_id"].as_str().unwrap()
        ),
        Some(owner),
        None,
        204,
    )
    .await;
    // A ready image, whose original and thumbnail go with its product.
    let png = crate::catalog::png(16, 16);
    let kept = h
        .call(
            "product-images-create",
            Method::POST,
            &format!("{product_path}/images"),
            Some(owner),
            Some(json!({"content_type": "image/png", "content_length": png.len()})),
            201,
        )
        .await;
    let kept = uploaded(kept);
    embedded
        .ctx
        .blobs
        .put(&kept, bytes::Bytes::from(png), "image/png", None)
        .await
        .unwrap();
    h.as_function("images-worker");
    let outcome =
        storefront::jobs::process_batch(&h.ctx, &worker, &[crate::catalog::notification(&kept)])
            .await;
    assert!(outcome.failed.is_empty());
    h.call(
        "products-delete",
        Method::DELETE,
        &product_path,
        Some(owner),
        None,
        204,
    )
    .await;
    // Orders: one placed (each line's stock taken in its transaction) and replayed (the
    // idempotency record read back); one refused for stock (its key given up); the lists
    // and a read; a cancel (stock returned, the due entry dropped); a fulfil of a paid
    // order; and the expiry sweep of an order whose window has passed.
    let tea = h
        .call(
            "products-create",
            Method::POST,
            "/v1/products",
            Some(owner),
            Some(json!({"sku": "TEA-1", "name": "Tea", "description": "", "price": {"amount": 300, "currency": "usd"}, "stock": 9})),
            201,
        )
        .await;
    let line = |quantity: u32| json!([{"product_id": tea["id"], "quantity": quantity}]);
    let placed = h.place(owner, "order-1", line(1), 201).await;
    h.place(owner, "order-1", line(1), 201).await;
    h.place(owner, "order-2", line(100), 409).await;
    let order_path = format!("/v1/orders/{}", placed["id"].as_str().unwrap());
    for path in [
        "/v1/orders".to_owned(),
        "/v1/orders?status=pending_payment".to_owned(),
        format!(
            "/v1/orders?customer={}",
            placed["customer_id"].as_str().unwrap()
        ),
    ] {
        h.call("orders-list", Method::GET, &path, Some(owner), None, 200)
            .await;
    }
    h.call(
        "orders-get",
        Method::GET,
        &order_path,
        Some(owner),
        None,
        200,
    )
    .await;
    h.call(
        "orders-cancel",
        Method::POST,
        &format!("{order_path}/cancel"),
        Some(owner),
        None,
        200,
    )
    .await;
    // Paid through the provider: the payment made (twice: the same answer), confirmed at
    // the provider, and its signed event applied by the webhook.
    let paid = h.place(owner, "order-3", line(1), 201).await;
    let paid_id = paid["id"].as_str().unwrap().to_owned();
    let mut payment = Value::Null;
    for _ in 0..2 {
        payment = h
            .call(
                "orders-payment",
                Method::POST,
                &format!("/v1/orders/{paid_id}/payment"),
                Some(owner),
                None,
                200,
            )
            .await;
    }
    let intent = payment["payment_intent_id"].as_str().unwrap().to_owned();
    embedded
        .local_payments
        .confirm(&intent, payment["client_secret"].as_str().unwrap())
        .await
        .unwrap();
    let succeeded = json!({"id": "evt_lp_1", "type": "payment_intent.succeeded", "data": {"object": {
        "id": intent, "amount": 300, "currency": "usd",
        "metadata": {"order_id": paid_id, "tenant_id": tenant}}}});
    h.webhook(succeeded).await;
    h.call(
        "orders-fulfil",
        Method::POST,
        &format!("/v1/orders/{paid_id}/fulfil"),
        Some(owner),
        None,
        200,
    )
    .await;
    // A paid order cancelled: its refund asked of the provider by the worker, and the
    // provider's charge.refunded (which names only its payment) applied by the webhook.
    let refunded = h.place(owner, "order-5", line(1), 201).await;
    let refunded_id = refunded["id"].as_str().unwrap().to_owned();
    let payment = h
        .call(
            "orders-payment",
            Method::POST,
            &format!("/v1/orders/{refunded_id}/payment"),
            Some(owner),
            None,
            200,
        )
        .await;
    let intent = payment["payment_intent_id"].as_str().unwrap().to_owned();
    embedded
        .local_payments
        .confirm(&intent, payment["client_secret"].as_str().unwrap())
        .await
        .unwrap();
    h.webhook(
        json!({"id": "evt_lp_2", "type": "payment_intent.succeeded", "data": {"object": {
        "id": intent, "amount": 300, "currency": "usd",
        "metadata": {"order_id": refunded_id, "tenant_id": tenant}}}}),
    )
    .await;
    h.call(
        "orders-cancel",
        Method::POST,
        &format!("/v1/orders/{refunded_id}/cancel"),
        Some(owner),
        None,
        200,
    )
    .await;
    h.as_function("worker");
    let refund = Job::Refund {
        tenant_id: tenant.clone(),
        order_id: refunded_id.clone(),
    };
    let outcome = storefront::jobs::process_batch(
        &h.ctx,
        &storefront::jobs::worker::Dispatcher,
        &[JobMessage {
            id: "refund-1".into(),
            body: refund.to_body().unwrap(),
            receive_count: 1,
        }],
    )
    .await;
    assert!(outcome.failed.is_empty());
    h.webhook(
        json!({"id": "evt_lp_3", "type": "charge.refunded", "data": {"object": {
        "id": "ch_1", "amount": 300, "amount_refunded": 300, "currency": "usd",
        "payment_intent": intent}}}),
    )
    .await;
    h.place(owner, "order-4", line(2), 201).await;
    let mut later = h.ctx.clone();
    later.clock = Arc::new(storefront::clock::ManualClock::new(
        chrono::Utc::now() + chrono::Duration::hours(1),
    ));
    h.as_function("orders-expire");
    let sweep = storefront::lambda::handle_order_expiry(&later)
        .await
        .unwrap();
    assert_eq!(sweep.expired, 1);
    // Every route for callers, called with an API key of its own (a key's first use is
    // recorded): what its edge reads and writes to authenticate a key.
    for route in routes::ROUTES
        .iter()
        .filter(|r| r.access() != Access::Anyone)
    {
        let key = h
            .call(
                "api-keys-create",
                Method::POST,
                "/v1/api-keys",
                Some(owner),
                Some(json!({"name": format!("Reach {}", route.function)})),
                201,
            )
            .await;
        let path = route.path.replace("{id}", "xyz_01JD0000000000000000000000");
        h.reach(
            route.function,
            route.method.clone(),
            &path,
            key["key"].as_str().unwrap(),
        )
        .await;
    }
    h.call("me", Method::GET, "/v1/me", Some(owner), None, 200)
        .await;
    h.call("me", Method::GET, "/v1/me", key["key"].as_str(), None, 200)
        .await;
    h.call(
        "api-keys-revoke",
        Method::DELETE,
        &format!("/v1/api-keys/{}", key["id"].as_str().unwrap()),
        Some(owner),
        None,
        204,
    )
    .await;
    let second = login(password, 200).await;
    let sessions = h
        .call(
            "sessions-list",
            Method::GET,
            "/v1/sessions",
            Some(owner),
            None,
            200,
        )
        .await;
    let other = sessions["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["current"] == false)
        .and_then(|s| s["id"].as_str())
        .expect("a second live session")
        .to_owned();
    h.call(
        "sessions-revoke",
        Method::DELETE,
        &format!("/v1/sessions/{other}"),
        Some(owner),
        None,
        204,
    )
    .await;
    h.call(
        "auth-logout",
        Method::POST,
        "/v1/auth/logout",
        second["access_token"].as_str(),
        None,
        204,
    )
    .await;
    h.call(
        "auth-logout",
        Method::POST,
        "/v1/auth/logout",
        Some(owner),
        None,
        204,
    )
    .await;

    // The relay sends a job and parks one that can never be sent.
    let shard = outbox::shard_of(&tenant);
    let job = Job::DeleteBlob {
        key: "uploads/x".into(),
    };
    embedded
        .ctx
        .table
        .write(
            outbox::enqueue(
                &job,
                "msg_01JD0000000000000000000001",
                &tenant,
                h.ctx.clock.now(),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    embedded
        .ctx
        .table
        .put(
            Item::new(&Key::new(
                format!("OUTBOX#{shard}"),
                "msg_01JD0000000000000000000000",
            )),
            None,
        )
        .await
        .unwrap();
    let mut waiting = 0;
    for shard in 0..outbox::SHARDS {
        let page = embedded
            .ctx
            .table
            .query(
                storefront::store::Query::partition(
                    storefront::store::Index::Primary,
                    format!("OUTBOX#{shard}"),
                )
                .limit(1000),
            )
            .await
            .unwrap();
        waiting += page
            .items
            .iter()
            .filter(|i| i.get("body").is_some())
            .count();
    }
    h.as_function("outbox-relay");
    let sent = outbox::relay_all(h.ctx.table.as_ref(), &h.ctx)
        .await
        .unwrap();
    // This job, and the catalogue flows' events and deletion jobs; not the unsendable one.
    assert_eq!(sent, waiting);
    assert!(sent > 1);

    // The worker runs every job the relay sent (the objects of deleted images among them).
    h.as_function("worker");
    let received = embedded.jobs.receive(10).await.unwrap();
    let mut messages = Vec::new();
    while messages.len() < sent {
        let batch = if messages.is_empty() {
            received.clone()
        } else {
            embedded.jobs.receive(10).await.unwrap()
        };
        assert!(!batch.is_empty(), "every sent job arrives");
        messages.extend(batch.into_iter().map(|m| JobMessage {
            id: m.id,
            body: m.body,
            receive_count: m.receive_count,
        }));
    }
    assert!(messages.iter().any(|m| m.body == job.to_body().unwrap()));
    let outcome =
        storefront::jobs::process_batch(&h.ctx, &storefront::jobs::worker::Dispatcher, &messages)
            .await;
    assert!(outcome.failed.is_empty());

    // The events' fan-out queued a delivery job each: relayed and run until nothing is
    // left. The first attempt fails, and with one attempt scheduled its job is relayed to
    // the dead-letter queue.
    loop {
        h.as_function("outbox-relay");
        if outbox::relay_all(h.ctx.table.as_ref(), &h.ctx)
            .await
            .unwrap()
            == 0
        {
            break;
        }
        h.as_function("worker");
        let mut messages = Vec::new();
        loop {
            let batch = embedded.jobs.receive(10).await.unwrap();
            if batch.is_empty() {
                break;
            }
            messages.extend(batch.into_iter().map(|m| JobMessage {
                id: m.id,
                body: m.body,
                receive_count: m.receive_count,
            }));
        }
        let outcome = storefront::jobs::process_batch(
            &h.ctx,
            &storefront::jobs::worker::Dispatcher,
            &messages,
        )
        .await;
        assert!(outcome.failed.is_empty());
    }
    assert!(
        receiver.received().len() > 1,
        "the endpoint heard of the events"
    );
    // The emails the order events called for, each sent once: run twice, the second run
    // finds them sent.
    h.as_function("emails");
    let mut emails = Vec::new();
    loop {
        let batch = embedded.emails.receive(10).await.unwrap();
        if batch.is_empty() {
            break;
        }
        emails.extend(batch.into_iter().map(|m| JobMessage {
            id: m.id,
            body: m.body,
            receive_count: m.receive_count,
        }));
    }
    assert!(!emails.is_empty(), "the order flows called for emails");
    for _ in 0..2 {
        let outcome =
            storefront::jobs::process_batch(&h.ctx, &storefront::jobs::worker::Dispatcher, &emails)
                .await;
        assert!(outcome.failed.is_empty());
    }
    assert_eq!(embedded.dead_letters.len().await.unwrap(), 1);
    // A delivery not yet due goes back to the queue with a delay.
    h.as_function("worker");
    let later = Job::Deliver {
        tenant_id: tenant.clone(),
        endpoint_id: endpoint.clone(),
        event_id: "evt_01JD0000000000000000000000".into(),
        attempt: 1,
        not_before: Some(storefront::clock::rfc3339(
            h.ctx.clock.now() + chrono::Duration::hours(1),
        )),
        manual: false,
    };
    let outcome = storefront::jobs::process_batch(
        &h.ctx,
        &storefront::jobs::worker::Dispatcher,
        &[JobMessage {
            id: "later".into(),
            body: later.to_body().unwrap(),
            receive_count: 1,
        }],
    )
    .await;
    assert!(outcome.failed.is_empty());
    // The owner signed out above: signed in again for the shop's view of its deliveries.
    let again = login(password, 200).await;
    let owner = again["access_token"].as_str().unwrap();
    let deliveries = h
        .call(
            "webhook-deliveries-list",
            Method::GET,
            &format!("/v1/webhook-endpoints/{endpoint}/deliveries?limit=100"),
            Some(owner),
            None,
            200,
        )
        .await;
    let dead = deliveries["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["outcome"] == "dead")
        .and_then(|d| d["id"].as_str())
        .expect("the dead delivery")
        .to_owned();
    h.call(
        "webhook-deliveries-retry",
        Method::POST,
        &format!("/v1/webhook-endpoints/{endpoint}/deliveries/{dead}/retry"),
        Some(owner),
        None,
        202,
    )
    .await;
    h.call(
        "webhook-endpoints-delete",
        Method::DELETE,
        &format!("/v1/webhook-endpoints/{endpoint}"),
        Some(owner),
        None,
        204,
    )
    .await;
    let issuers = h
        .issuers
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();

    let table = recording
        .take()
        .into_iter()
        .flat_map(|request| {
            let function = request.label;
            request.items.into_iter().map(move |touch| Request {
                function: function.clone(),
                touch,
            })
        })
        .collect();
    Flows {
        table,
        others: recording.take_others(),
        issuers,
    }
}

/// The text of a resource as the template writes it (`!GetAtt Table.Arn`,
/// `!Sub "${Table.Arn}/index/gsi1"`), as the recorder names it.
fn resource_name(value: &Yaml) -> Option<String> {
    let text = match value {
        Yaml::Tagged(tagged) => tagged.value.as_str()?.to_owned(),
        Yaml::String(text) => text.clone(),
        _ => return None,
    };
    Some(match text.as_str() {
        "Table.Arn" => "table".to_owned(),
        other => other.replace("${Table.Arn}", "table"),
    })
}

fn strings(value: &Yaml) -> Vec<String> {
    match value {
        Yaml::Sequence(all) => all
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Yaml::String(one) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// Whether an IAM `StringLike` pattern (`*` as its only wildcard, at the end here) matches.
fn like(pattern: &str, value: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => value.starts_with(prefix),
        None => pattern == value,
    }
}

/// The Allow statements of a function: its inline policies, or its own role's.
fn statements_of(template: &Yaml, function: &str) -> Vec<Yaml> {
    let resources = template["Resources"].as_mapping().unwrap();
    let (_, resource) = resources
        .iter()
        .find(|(_, r)| {
            r["Type"] == "AWS::Serverless::Function"
                && r["Properties"]["CodeUri"].as_str() == Some(&format!("functions/{function}"))
        })
        .unwrap_or_else(|| panic!("template.yaml has no function for {function}"));
    let properties = &resource["Properties"];
    let mut statements = Vec::new();
    if let Some(policies) = properties["Policies"].as_sequence() {
        for policy in policies {
            statements.extend(
                policy["Statement"]
                    .as_sequence()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
    }
    if let Yaml::Tagged(role) = &properties["Role"] {
        let role = role.value.as_str().unwrap().trim_end_matches(".Arn");
        for policy in template["Resources"][role]["Properties"]["Policies"]
            .as_sequence()
            .unwrap()
        {
            statements.extend(
                policy["PolicyDocument"]["Statement"]
                    .as_sequence()
                    .cloned()
                    .unwrap_or_default(),
            );
        }
    }
    statements
        .into_iter()
        .filter(|s| s["Effect"] == "Allow")
        .collect()
}

/// The resources a statement names, as [`resource_name`] writes them.
fn resources_of(statement: &Yaml) -> Vec<String> {
    match &statement["Resource"] {
        Yaml::Sequence(all) => all.iter().filter_map(resource_name).collect(),
        one => resource_name(one).into_iter().collect(),
    }
}

fn allows(statement: &Yaml, touch: &Touch) -> bool {
    let action = format!("dynamodb:{}", touch.action);
    let resources = resources_of(statement);
    let leading_keys =
        strings(&statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]);
    strings(&statement["Action"]).contains(&action)
        && resources.iter().any(|r| r == touch.resource)
        && (leading_keys.is_empty() || leading_keys.iter().any(|p| like(p, &touch.partition)))
}

fn template() -> Yaml {
    serde_norway::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../template.yaml")).unwrap(),
    )
    .unwrap()
}

/// The DynamoDB actions on items (the ones a flow's requests are recorded as).
const ITEM_ACTIONS: [&str; 7] = [
    "GetItem",
    "PutItem",
    "UpdateItem",
    "DeleteItem",
    "ConditionCheckItem",
    "Query",
    "BatchGetItem",
];

/// Reading the signing keys: their SSM parameter, decrypted with their KMS key. Exactly the
/// functions that sign tokens may.
const SIGNING_KEYS: [&str; 2] = ["ssm:GetParameter", "kms:Decrypt"];

/// The functions that call Stripe's API (a payment made, a refund asked for), and so may
/// read its secret key.
const STRIPE_CALLERS: [&str; 2] = ["orders-payment", "worker"];

/// The table writes, which must each be scoped to the key families a function writes.
const WRITES: [&str; 4] = ["PutItem", "UpdateItem", "DeleteItem", "ConditionCheckItem"];

/// What Lambda itself does with a function's role, from its events in the template: poll
/// its queue, read its stream, send a failed batch's record to its destination; and what
/// every function does, write its logs and traces. (action, resource as the template
/// names it.)
fn used_by_lambda(template: &Yaml, function: &str) -> BTreeSet<(String, String)> {
    let mut used = BTreeSet::new();
    let (_, resource) = template["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .find(|(_, r)| {
            r["Properties"]["CodeUri"].as_str() == Some(&format!("functions/{function}"))
        })
        .unwrap();
    for (_, event) in resource["Properties"]["Events"]
        .as_mapping()
        .into_iter()
        .flatten()
    {
        let p = &event["Properties"];
        match event["Type"].as_str() {
            Some("SQS") => {
                let queue = resource_name(&p["Queue"]).unwrap();
                for action in [
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes",
                ] {
                    used.insert((action.to_owned(), queue.clone()));
                }
            }
            Some("DynamoDB") => {
                let stream = resource_name(&p["Stream"]).unwrap();
                for action in [
                    "dynamodb:DescribeStream",
                    "dynamodb:GetRecords",
                    "dynamodb:GetShardIterator",
                ] {
                    used.insert((action.to_owned(), stream.clone()));
                }
                used.insert(("dynamodb:ListStreams".to_owned(), "*".to_owned()));
                if let Some(destination) =
                    resource_name(&p["DestinationConfig"]["OnFailure"]["Destination"])
                {
                    used.insert(("sqs:SendMessage".to_owned(), destination));
                }
            }
            _ => {}
        }
    }
    used
}

#[tokio::test]
async fn every_request_a_function_makes_is_granted_by_its_own_policy_and_nothing_more() {
    let template = template();
    let flows = requests_of_every_flow().await;
    let mut requests = flows.table;
    requests.sort();
    requests.dedup();
    let functions: BTreeSet<&str> = requests.iter().map(|r| r.function.as_str()).collect();
    // The flows reach every function that uses the table: each HTTP one counts its client.
    for function in routes::ROUTES
        .iter()
        .map(|r| r.function)
        .chain(["outbox-relay", routes::UNMATCHED])
    {
        assert!(
            functions.contains(function),
            "no table request seen from {function}"
        );
    }
    let mut refused: Vec<String> = requests
        .iter()
        .filter(|request| {
            !statements_of(&template, &request.function)
                .iter()
                .any(|s| allows(s, &request.touch))
        })
        .map(|r| {
            format!(
                "{} needs {} on {} ({})",
                r.function, r.touch.action, r.touch.resource, r.touch.partition
            )
        })
        .collect();
    for other in &flows.others {
        let granted = statements_of(&template, &other.label).iter().any(|s| {
            strings(&s["Action"]).iter().any(|a| a == other.action)
                && resources_of(s).iter().any(|r| r == other.resource)
        });
        if !granted {
            refused.push(format!(
                "{} needs {} on {}",
                other.label, other.action, other.resource
            ));
        }
    }
    assert!(
        refused.is_empty(),
        "template.yaml refuses:\n{}",
        refused.join("\n")
    );

    let mut excess = Vec::new();
    let all_functions: Vec<String> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../functions"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
    for function in &all_functions {
        let lambda = used_by_lambda(&template, function);
        for statement in statements_of(&template, function) {
            let resources = resources_of(&statement);
            let leading_keys =
                strings(&statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]);
            for action in strings(&statement["Action"]) {
                if action.starts_with("logs:") || action.starts_with("xray:") {
                    continue;
                }
                if let Some(item_action) = action
                    .strip_prefix("dynamodb:")
                    .filter(|a| ITEM_ACTIONS.contains(a))
                {
                    if WRITES.contains(&item_action) && leading_keys.is_empty() {
                        excess.push(format!("{function} may {action} anywhere in the table: scope it with dynamodb:LeadingKeys"));
                    }
                    let patterns = if leading_keys.is_empty() {
                        vec!["*".to_owned()]
                    } else {
                        leading_keys.clone()
                    };
                    for resource in &resources {
                        for pattern in &patterns {
                            let used = requests.iter().any(|r| {
                                r.function == *function
                                    && r.touch.action == item_action
                                    && r.touch.resource == resource
                                    && like(pattern, &r.touch.partition)
                            });
                            if !used {
                                excess.push(format!("{function} is granted {action} on {resource} ({pattern}) that no flow uses"));
                            }
                        }
                    }
                    continue;
                }
                // Stripe's secret key: read by the functions that call Stripe, and no other.
                if action == "ssm:GetParameter"
                    && format!("{:?}", statement["Resource"])
                        .contains("StripeSecretKeyParameterName")
                {
                    if !STRIPE_CALLERS.contains(&function.as_str()) {
                        excess.push(format!(
                            "{function} may read Stripe's secret key but never calls Stripe"
                        ));
                    }
                    continue;
                }
                if SIGNING_KEYS.contains(&action.as_str()) {
                    if !flows.issuers.contains(function) {
                        excess.push(format!(
                            "{function} may {action} (the signing keys) but signs no token"
                        ));
                    }
                    continue;
                }
                for resource in &resources {
                    let used = lambda.contains(&(action.clone(), resource.clone()))
                        || flows.others.iter().any(|o| {
                            o.label == *function && o.action == action && o.resource == resource
                        });
                    if !used {
                        excess.push(format!(
                            "{function} is granted {action} on {resource} that nothing uses"
                        ));
                    }
                }
            }
        }
    }
    for issuer in &flows.issuers {
        for needed in SIGNING_KEYS {
            let granted = statements_of(&template, issuer)
                .iter()
                .any(|s| strings(&s["Action"]).iter().any(|a| a == needed));
            if !granted {
                excess.push(format!(
                    "{issuer} signs tokens but may not {needed} (the signing keys)"
                ));
            }
        }
    }
    assert!(
        excess.is_empty(),
        "template.yaml grants more than is used:\n{}",
        excess.join("\n")
    );
}

#[test]
fn a_leading_keys_condition_refuses_a_partition_it_does_not_name() {
    let statement: Yaml = serde_norway::from_str(
        r#"
Effect: Allow
Action: [dynamodb:Query, dynamodb:DeleteItem]
Resource: !GetAtt Table.Arn
Condition:
  ForAllValues:StringLike:
    dynamodb:LeadingKeys: ["OUTBOX#*"]
"#,
    )
    .unwrap();
    let request = |action, partition: &str| Touch {
        action,
        resource: "table",
        partition: partition.into(),
    };
    assert!(allows(&statement, &request("Query", "OUTBOX#3")));
    assert!(!allows(&statement, &request("Query", "OUTBOX_DEAD#3")));
    assert!(!allows(&statement, &request("PutItem", "OUTBOX#3")));
    assert!(!allows(
        &statement,
        &Touch {
            resource: "table/index/gsi1",
            ..request("Query", "OUTBOX#3")
        }
    ));
}
