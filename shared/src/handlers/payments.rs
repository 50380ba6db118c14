//! `POST /v1/payments/webhook`: the payment provider's events (Stripe's format).
//!
//! The body is checked against `Stripe-Signature` exactly as received, before it is even
//! parsed: a bad or stale signature is 400 and changes nothing. A genuine event about an
//! order is applied once (`crate::orders::payments`); an event of a type Storefront does
//! not use, or about an order it does not know, is 200 and ignored, so the provider stops
//! sending it. <https://docs.stripe.com/webhooks>

use http::StatusCode;
use serde::Deserialize;

use crate::context::AppContext;
use crate::credentials::stripe_signature;
use crate::domain::{OrderId, TenantId, TypedId as _};
use crate::http::{json, ApiError, HandlerResult, Request};
use crate::orders::payments::{self, Outcome, PaymentEvent, PaymentEventKind};

/// The header Stripe signs its webhooks with.
pub const STRIPE_SIGNATURE: &str = "stripe-signature";

/// The part of a Stripe event Storefront reads.
#[derive(Deserialize)]
struct StripeEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: StripeData,
}

#[derive(Deserialize)]
struct StripeData {
    object: StripeObject,
}

/// A PaymentIntent (`payment_intent.*`) or a Charge (`charge.refunded`).
#[derive(Deserialize)]
struct StripeObject {
    id: String,
    #[serde(default)]
    amount: i64,
    #[serde(default)]
    amount_refunded: Option<i64>,
    #[serde(default)]
    currency: String,
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
    /// On a Charge: the PaymentIntent it belongs to.
    #[serde(default)]
    payment_intent: Option<String>,
    #[serde(default)]
    last_payment_error: Option<StripeError>,
}

#[derive(Deserialize)]
struct StripeError {
    #[serde(default)]
    message: Option<String>,
}

/// What a webhook answer says: whether the event changed anything.
#[derive(serde::Serialize)]
struct Received<'a> {
    received: bool,
    outcome: &'a str,
}

fn answer(outcome: &str) -> HandlerResult {
    json(
        StatusCode::OK,
        &Received {
            received: true,
            outcome,
        },
    )
}

/// Verifies, parses and applies one provider event.
#[tracing::instrument(skip_all)]
pub async fn webhook(req: Request, ctx: &AppContext) -> HandlerResult {
    let secret = ctx.payment_webhook_secret.as_ref().ok_or_else(|| {
        ApiError::Unavailable(anyhow::anyhow!(
            "no payment webhook secret is configured for this function"
        ))
    })?;
    let header = req
        .headers()
        .get(STRIPE_SIGNATURE)
        .and_then(|v| v.to_str().ok());
    let body: &[u8] = req.body().as_ref();
    stripe_signature::verify(header, body, secret, ctx.clock.now().timestamp()).map_err(|e| {
        tracing::warn!(error = %e, "payment webhook refused");
        ApiError::bad_request(format!(
            "The payment webhook's signature does not hold: {e}."
        ))
    })?;
    let event: StripeEvent = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("The event is not a Stripe event: {e}.")))?;
    let object = event.data.object;
    let kind = match event.kind.as_str() {
        "payment_intent.succeeded" => PaymentEventKind::Succeeded,
        "payment_intent.payment_failed" => PaymentEventKind::Failed {
            message: object
                .last_payment_error
                .as_ref()
                .and_then(|e| e.message.clone())
                .unwrap_or_else(|| "the payment failed".into()),
        },
        "charge.refunded" => PaymentEventKind::Refunded,
        other => {
            tracing::info!(event_id = %event.id, event_type = other, "payment event ignored: a type Storefront does not use");
            return answer("ignored");
        }
    };
    let order = object
        .metadata
        .get("tenant_id")
        .and_then(|t| TenantId::parse(t).ok())
        .zip(
            object
                .metadata
                .get("order_id")
                .and_then(|o| OrderId::parse(o).ok()),
        );
    // A charge may not carry its PaymentIntent's metadata: its payment names the order.
    let order = match (order, &object.payment_intent) {
        (Some(found), _) => Some(found),
        (None, Some(payment_intent)) => {
            crate::repo::orders::order_of_payment(ctx.table.as_ref(), payment_intent)
                .await?
                .map(|entry| (entry.tenant_id, entry.order_id))
        }
        (None, None) => None,
    };
    let Some((tenant_id, order_id)) = order else {
        tracing::info!(event_id = %event.id, "payment event ignored: it names no order");
        return answer("ignored");
    };
    let (payment_id, amount) = match kind {
        PaymentEventKind::Refunded => (
            object.payment_intent.clone().unwrap_or(object.id.clone()),
            object.amount_refunded.unwrap_or(object.amount),
        ),
        _ => (object.id.clone(), object.amount),
    };
    let event = PaymentEvent {
        id: event.id,
        tenant_id,
        order_id,
        payment_id,
        amount,
        currency: object.currency.to_lowercase(),
        kind,
    };
    crate::http::record_tenant(&req, event.tenant_id.as_str());
    let outcome = payments::apply(ctx, &event).await?;
    tracing::info!(event_id = %event.id, order_id = %event.order_id, ?outcome, "payment event");
    answer(match outcome {
        Outcome::Applied => "applied",
        Outcome::Duplicate => "duplicate",
        Outcome::UnknownOrder => "ignored",
    })
}
