//! The `Payments` port: the payment provider that takes a customer's money for an order
//! and gives it back. Storefront never sees card data: it creates a payment for the order's
//! total, hands the client its secret, and hears the outcome through the provider's signed
//! webhook (`crate::handlers::payments`).
//!
//! Adapters: [`stripe::StripePayments`] (Stripe's API, or a fake of it such as localstripe
//! at `STOREFRONT_STRIPE_API_BASE`) and [`local::LocalPayments`] (the local server's own,
//! when no secret key is configured, so an order can be paid with no account anywhere).

pub mod local;
pub mod stripe;

use async_trait::async_trait;

/// A payment to create: an order's total, in the shop's currency.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentRequest {
    pub tenant_id: String,
    pub order_id: String,
    /// Minor units.
    pub amount: i64,
    /// ISO 4217, lower case.
    pub currency: String,
}

/// The provider's payment of an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    /// `pi_…`.
    pub id: String,
    /// What the customer's browser confirms the payment with.
    pub client_secret: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// The provider refused the request itself (a 4xx): a bug or a configuration error,
    /// never the customer's doing.
    #[error("the payment provider refused the request: {0}")]
    Refused(String),
    /// The provider could not be reached or failed (a timeout, a 5xx): worth a retry.
    #[error("the payment provider is unavailable: {0:#}")]
    Unavailable(anyhow::Error),
}

#[async_trait]
pub trait Payments: Send + Sync {
    /// The provider's name, as `POST /v1/orders/{id}/payment` answers it.
    fn name(&self) -> &'static str;

    /// Creates the payment of an order, once: asked again for the same order, the provider
    /// answers the same payment (the order id is its idempotency key).
    async fn create(&self, request: &PaymentRequest) -> Result<Intent, PaymentError>;

    /// Gives `amount` of a payment back, once per `key`: asked again with the same key, the
    /// provider makes no second refund. The outcome comes as a `charge.refunded` event.
    async fn refund(&self, payment_id: &str, amount: i64, key: &str) -> Result<(), PaymentError>;
}

/// The provider of a function that has none configured: every call fails, which the API
/// answers with a 503 naming nothing secret.
pub struct Unconfigured;

#[async_trait]
impl Payments for Unconfigured {
    fn name(&self) -> &'static str {
        "unconfigured"
    }

    async fn create(&self, _: &PaymentRequest) -> Result<Intent, PaymentError> {
        Err(PaymentError::Unavailable(anyhow::anyhow!(
            "no payment provider is configured for this function"
        )))
    }

    async fn refund(&self, _: &str, _: i64, _: &str) -> Result<(), PaymentError> {
        Err(PaymentError::Unavailable(anyhow::anyhow!(
            "no payment provider is configured for this function"
        )))
    }
}
