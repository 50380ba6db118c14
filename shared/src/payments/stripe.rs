//! Stripe's API: a PaymentIntent per order, created with the order id as Stripe's own
//! `Idempotency-Key` (so however often it is asked, one order has one payment), and a
//! refund of a PaymentIntent, keyed likewise so it is never made twice.
//! <https://docs.stripe.com/api/payment_intents/create>,
//! <https://docs.stripe.com/api/refunds/create>, <https://docs.stripe.com/api/idempotent_requests>
//!
//! Only what every Stripe API version and localstripe accept is sent: no
//! `automatic_payment_methods` (localstripe answers 400), `payment_method_types[]=card`.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use super::{Intent, PaymentError, PaymentRequest, Payments};

/// Stripe's API, unless `STOREFRONT_STRIPE_API_BASE` names another (a fake, in tests).
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com";
/// How long one call may take before it counts as the provider being unavailable.
const TIMEOUT: Duration = Duration::from_secs(10);

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

pub struct StripePayments {
    client: Client<Https, Full<Bytes>>,
    base: String,
    secret_key: SecretString,
}

#[derive(Deserialize)]
struct CreatedIntent {
    id: String,
    client_secret: String,
}

#[derive(Deserialize)]
struct StripeErrorBody {
    error: StripeErrorDetail,
}

#[derive(Deserialize)]
struct StripeErrorDetail {
    #[serde(default)]
    message: Option<String>,
}

impl StripePayments {
    /// A client of the API at `base` (https, or http for a fake on loopback) with the
    /// account's secret key.
    pub fn new(base: &str, secret_key: SecretString) -> anyhow::Result<Self> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Self {
            client: Client::builder(TokioExecutor::new()).build(connector),
            base: base.trim_end_matches('/').to_owned(),
            secret_key,
        })
    }

    /// POSTs a form to `path` with an idempotency key; answers the body of a 2xx.
    async fn post(
        &self,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: &str,
    ) -> Result<Bytes, PaymentError> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
            .finish();
        let request = http::Request::post(format!("{}{path}", self.base))
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.secret_key.expose_secret()),
            )
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header("idempotency-key", idempotency_key)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| PaymentError::Refused(format!("the request does not build: {e}")))?;
        let unavailable = |e: anyhow::Error| PaymentError::Unavailable(e);
        let response = tokio::time::timeout(TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| unavailable(anyhow::anyhow!("no answer from {path} within {TIMEOUT:?}")))?
            .map_err(|e| unavailable(anyhow::Error::new(e).context(format!("POST {path}"))))?;
        let status = response.status();
        let bytes = tokio::time::timeout(TIMEOUT, response.into_body().collect())
            .await
            .map_err(|_| unavailable(anyhow::anyhow!("the answer of {path} stalled")))?
            .map_err(|e| unavailable(anyhow::Error::new(e).context(format!("reading {path}"))))?
            .to_bytes();
        if status.is_success() {
            return Ok(bytes);
        }
        let message = serde_json::from_slice::<StripeErrorBody>(&bytes)
            .ok()
            .and_then(|b| b.error.message)
            .unwrap_or_else(|| format!("HTTP {status}"));
        // 409 is Stripe's "a request with this key is in progress"; 429 and 5xx pass.
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 409 {
            Err(unavailable(anyhow::anyhow!("{path}: {status}: {message}")))
        } else {
            Err(PaymentError::Refused(format!(
                "{path}: {status}: {message}"
            )))
        }
    }
}

#[async_trait]
impl Payments for StripePayments {
    fn name(&self) -> &'static str {
        "stripe"
    }

    #[tracing::instrument(skip_all, fields(order_id = %request.order_id))]
    async fn create(&self, request: &PaymentRequest) -> Result<Intent, PaymentError> {
        let form = [
            ("amount", request.amount.to_string()),
            ("currency", request.currency.clone()),
            ("payment_method_types[]", "card".to_owned()),
            ("metadata[order_id]", request.order_id.clone()),
            ("metadata[tenant_id]", request.tenant_id.clone()),
        ];
        let body = self
            .post("/v1/payment_intents", &form, &request.order_id)
            .await?;
        let created: CreatedIntent = serde_json::from_slice(&body).map_err(|e| {
            PaymentError::Unavailable(anyhow::anyhow!("a PaymentIntent that does not parse: {e}"))
        })?;
        Ok(Intent {
            id: created.id,
            client_secret: created.client_secret,
        })
    }

    #[tracing::instrument(skip(self, key))]
    async fn refund(&self, payment_id: &str, amount: i64, key: &str) -> Result<(), PaymentError> {
        let form = [
            ("payment_intent", payment_id.to_owned()),
            ("amount", amount.to_string()),
        ];
        self.post("/v1/refunds", &form, key).await.map(drop)
    }
}
