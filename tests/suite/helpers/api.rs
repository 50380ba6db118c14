//! The API as a test client sees it, over either adapter: [`embedded`] or [`dynamo`] (moto)
//! give an [`Api`] whose clock the test moves; its calls go through `dispatch` (the path
//! Lambda and the local server share) and come back as a [`Reply`]; [`Api::create_shop`],
//! [`Api::signup`], [`Api::login`] and [`Api::add_member`] make the people a test needs,
//! so a feature's tests read as sentences.

use std::sync::Arc;

use http::{HeaderMap, Method};
use serde_json::{json, Value};
use storefront::clock::{Clock, ManualClock};
use storefront::config::{AwsConfig, RateLimits};
use storefront::context::AppContext;
use storefront::credentials::tokens::KeyRing;
use storefront::edge::dispatch;
use storefront::http::ClientIp;
use storefront::routes::ROUTES;

use crate::helpers;

/// The API over one adapter, a clock the test moves, and whatever keeps the store alive.
pub struct Api {
    pub ctx: AppContext,
    pub clock: Arc<ManualClock>,
    /// The embedded adapters, for the embedded API (the local server's blob checks).
    pub embedded: Option<storefront::context::Embedded>,
    /// Where the harness's emails are written (`.eml` files), and how many were sent.
    pub mail: Arc<CountingMailer>,
    _guard: Option<tempfile::TempDir>,
}

/// The local server's file mailer over a temporary directory, counting its sends.
pub struct CountingMailer {
    files: storefront::mail::files::FileMailer,
    dir: tempfile::TempDir,
    sent: std::sync::atomic::AtomicUsize,
}

impl CountingMailer {
    pub fn new() -> Self {
        let dir = helpers::temp_dir();
        Self {
            files: storefront::mail::files::FileMailer::new(dir.path()),
            dir,
            sent: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    pub fn sent(&self) -> usize {
        self.sent.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl storefront::mail::Mailer for CountingMailer {
    async fn send(&self, email: &storefront::mail::Outgoing) -> anyhow::Result<String> {
        self.sent.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.files.send(email).await
    }
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn token(&self) -> String {
        self.body["tokens"]["access_token"]
            .as_str()
            .or(self.body["access_token"].as_str())
            .expect("an access token")
            .to_owned()
    }
    pub fn refresh(&self) -> String {
        self.body["tokens"]["refresh_token"]
            .as_str()
            .or(self.body["refresh_token"].as_str())
            .expect("a refresh token")
            .to_owned()
    }
    pub fn slug(&self) -> &str {
        self.body["type"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("https://storefront.dev/problems/")
    }
}

pub fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(chrono::Utc::now()))
}

pub async fn embedded() -> Api {
    let dir = helpers::temp_dir();
    let clock = manual_clock();
    let embedded = AppContext::embedded(
        dir.path(),
        "http://127.0.0.1:9",
        RateLimits::default(),
        clock.clone() as Arc<dyn Clock>,
    )
    .expect("open");
    let mail = Arc::new(CountingMailer::new());
    let mut ctx = embedded.ctx.clone();
    ctx.mailer = mail.clone();
    Api {
        ctx,
        clock,
        embedded: Some(embedded),
        mail,
        _guard: Some(dir),
    }
}

pub async fn dynamo() -> Api {
    let sdk = helpers::moto_sdk().await;
    let table = helpers::unique("identity");
    storefront::store::dynamo::create_table(&aws_sdk_dynamodb::Client::new(&sdk), &table)
        .await
        .expect("table");
    let bucket = helpers::unique("uploads");
    storefront::blobs::s3::create_bucket(&helpers::moto_s3().await, &bucket)
        .await
        .expect("bucket");
    let clock = manual_clock();
    let config = AwsConfig {
        table,
        queue_url: None,
        bucket: Some(bucket),
        limits: RateLimits::default(),
        session_lifetime: chrono::Duration::seconds(storefront::config::DEFAULT_SESSION_LIFETIME_S),
        audit_retention: chrono::Duration::days(storefront::config::DEFAULT_AUDIT_RETENTION_DAYS),
        s3_path_style: true,
        images_url: Some("https://images.example.test".to_owned()),
        payment_window: chrono::Duration::seconds(storefront::config::DEFAULT_PAYMENT_WINDOW_S),
        dead_letter_queue_url: None,
        email_queue_url: None,
        email_sender: Some("orders@shop.example".to_owned()),
        webhooks: Default::default(),
    };
    let mut ctx = AppContext::aws(&sdk, &config, clock.clone() as Arc<dyn Clock>);
    // The local payment provider, over DynamoDB here (Stripe's adapter has its own test).
    ctx.payments = Arc::new(storefront::payments::local::LocalPayments::new(
        ctx.table.clone(),
        ctx.ids.clone(),
    ));
    let key = ("k1".to_owned(), KeyRing::generate_key().expect("key"));
    ctx.keys = Arc::new(KeyRing::from_private_keys(&[key]).expect("ring"));
    let mail = Arc::new(CountingMailer::new());
    ctx.mailer = mail.clone();
    Api {
        ctx,
        clock,
        embedded: None,
        mail,
        _guard: None,
    }
}

/// A shop with its owner signed in.
pub struct Shop {
    pub tenant_id: String,
    pub owner_id: String,
    pub owner: String,
    pub owner_refresh: String,
}

impl Api {
    /// The harness's mailer, for a context of a test's own.
    pub fn mailer(&self) -> Arc<dyn storefront::mail::Mailer> {
        self.mail.clone()
    }

    pub async fn call_from(
        &self,
        ip: &str,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.call_with_headers(ip, method, path, token, body, &[])
            .await
    }

    /// A call with extra request headers (`If-Match`, `If-None-Match`, …).
    pub async fn call_with_headers(
        &self,
        ip: &str,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut req = helpers::api_request(method, path, token, body);
        for (name, value) in headers {
            req.headers_mut().insert(
                http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                value.parse().expect("header value"),
            );
        }
        req.extensions_mut().insert(ClientIp(ip.to_owned()));
        let response = dispatch(&self.ctx, ROUTES, req).await;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes: &[u8] = response.body().as_ref();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(bytes).expect("a JSON body")
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        self.call_from("203.0.113.1", method, path, token, body)
            .await
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.call(Method::DELETE, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn patch(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.call(Method::PATCH, path, token, Some(body)).await
    }

    pub async fn create_shop(&self, email: &str) -> Shop {
        let body = json!({"name": "Tea Shop", "currency": "eur", "owner": {"email": email, "password": "correct horse battery", "name": "Ada"}});
        let reply = self.post("/v1/tenants", None, body).await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        Shop {
            tenant_id: reply.body["tenant"]["id"].as_str().expect("id").to_owned(),
            owner_id: reply.body["user"]["id"].as_str().expect("id").to_owned(),
            owner: reply.token(),
            owner_refresh: reply.refresh(),
        }
    }

    pub async fn refresh(&self, token: &str) -> Reply {
        self.post("/v1/auth/refresh", None, json!({"refresh_token": token}))
            .await
    }

    pub async fn signup(&self, tenant_id: &str, email: &str) -> Reply {
        let body = json!({"tenant_id": tenant_id, "email": email, "password": "a long passphrase", "name": "Grace"});
        self.post("/v1/auth/signup", None, body).await
    }

    pub async fn login(&self, tenant_id: &str, email: &str, password: &str) -> Reply {
        self.login_from("198.51.100.7", tenant_id, email, password)
            .await
    }

    pub async fn login_from(
        &self,
        ip: &str,
        tenant_id: &str,
        email: &str,
        password: &str,
    ) -> Reply {
        let body = json!({"tenant_id": tenant_id, "email": email, "password": password});
        self.call_from(ip, Method::POST, "/v1/auth/login", None, Some(body))
            .await
    }

    /// The bodies of the jobs waiting in the outbox (not yet relayed), shard by shard.
    pub async fn outbox_jobs(&self) -> Vec<String> {
        let mut bodies = Vec::new();
        for shard in 0..storefront::jobs::outbox::SHARDS {
            let query = storefront::store::Query::partition(
                storefront::store::Index::Primary,
                format!("OUTBOX#{shard}"),
            )
            .limit(1000);
            let page = self.ctx.table.query(query).await.expect("the outbox");
            bodies.extend(
                page.items
                    .iter()
                    .map(|item| item.get_str("body").expect("a job body").to_owned()),
            );
        }
        bodies
    }

    /// The actions of one resource's audit history, newest first.
    pub async fn audit_history(&self, token: &str, resource: &str) -> Vec<String> {
        let reply = self
            .get(&format!("/v1/audit-log?resource={resource}"), Some(token))
            .await;
        assert_eq!(reply.status, 200, "{:?}", reply.body);
        reply.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|e| e["action"].as_str().expect("action").to_owned())
            .collect()
    }

    pub async fn add_member(&self, token: &str, email: &str, role: &str) -> Reply {
        let body =
            json!({"email": email, "name": "Member", "password": "member password", "role": role});
        self.post("/v1/members", Some(token), body).await
    }
}
