//! The local server's own payment provider, used when no Stripe secret key is configured:
//! an order can be paid on a laptop with no account anywhere, through the same webhook path
//! Stripe's events take.
//!
//! It keeps each payment in the table (`LOCAL_PAYMENT#<pi>` / `INTENT`) and speaks Stripe's
//! shapes: [`LocalPayments::confirm`] (the local server's `POST /_payments/{id}/confirm`,
//! standing in for the card form) marks a payment succeeded and announces
//! `payment_intent.succeeded`; a refund announces `charge.refunded`. Announced events go to
//! the channel given to [`LocalPayments::announcing`], from which the local server signs
//! them with its webhook secret and delivers them to `POST /v1/payments/webhook`.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc::UnboundedSender;

use super::{Intent, PaymentError, PaymentRequest, Payments};
use crate::ids::{IdGenerator, IdKind};
use crate::store::{Condition, Item, Key, StoreError, Table, UpdateOp};

const PREFIX: &str = "pi_local_";

#[derive(Clone)]
pub struct LocalPayments {
    table: Arc<dyn Table>,
    ids: Arc<dyn IdGenerator>,
    events: Option<UnboundedSender<String>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Stored {
    tenant_id: String,
    order_id: String,
    amount: i64,
    currency: String,
    client_secret: String,
    status: String,
}

/// Why a confirmation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfirmError {
    #[error("no such payment")]
    NoSuchPayment,
    #[error("the client secret is not this payment's, or it is already confirmed")]
    Refused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn key(payment_id: &str) -> Key {
    Key::new(format!("LOCAL_PAYMENT#{payment_id}"), "INTENT")
}

fn unavailable(e: StoreError) -> PaymentError {
    PaymentError::Unavailable(anyhow::Error::new(e).context("the local payment store"))
}

impl LocalPayments {
    pub fn new(table: Arc<dyn Table>, ids: Arc<dyn IdGenerator>) -> Self {
        Self {
            table,
            ids,
            events: None,
        }
    }

    /// Announces its events (Stripe-shaped JSON bodies) on `events`.
    pub fn announcing(mut self, events: UnboundedSender<String>) -> Self {
        self.events = Some(events);
        self
    }

    async fn stored(&self, payment_id: &str) -> Result<Option<Stored>, StoreError> {
        self.table
            .get(&key(payment_id))
            .await?
            .map(|item| item.record())
            .transpose()
    }

    fn announce(&self, kind: &str, object: serde_json::Value) {
        let event = json!({
            "id": self.ids.next(IdKind::Event).replacen("evt_", "evt_local_", 1),
            "object": "event",
            "type": kind,
            "data": {"object": object},
        });
        match &self.events {
            Some(events) => {
                if events.send(event.to_string()).is_err() {
                    tracing::warn!(kind, "local payment event not delivered: no one listens");
                }
            }
            None => tracing::warn!(kind, "local payment event not delivered: no listener"),
        }
    }

    /// The customer pays: `client_secret` must be the payment's (as Stripe.js confirms with
    /// it). Announces `payment_intent.succeeded`.
    pub async fn confirm(&self, payment_id: &str, client_secret: &str) -> Result<(), ConfirmError> {
        let stored = self
            .stored(payment_id)
            .await?
            .ok_or(ConfirmError::NoSuchPayment)?;
        let confirmed = self
            .table
            .update(
                &key(payment_id),
                vec![UpdateOp::set("status", "succeeded")],
                Some(Condition::And(vec![
                    Condition::eq("status", "requires_confirmation"),
                    Condition::eq("client_secret", client_secret),
                ])),
            )
            .await;
        match confirmed {
            Ok(_) => {}
            Err(e) if e.is_condition_failed() => return Err(ConfirmError::Refused),
            Err(e) => return Err(e.into()),
        }
        self.announce(
            "payment_intent.succeeded",
            json!({
                "id": payment_id,
                "object": "payment_intent",
                "amount": stored.amount,
                "currency": stored.currency,
                "status": "succeeded",
                "metadata": {"order_id": stored.order_id, "tenant_id": stored.tenant_id},
            }),
        );
        Ok(())
    }
}

#[async_trait]
impl Payments for LocalPayments {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn create(&self, request: &PaymentRequest) -> Result<Intent, PaymentError> {
        let id = format!(
            "{PREFIX}{}",
            request.order_id.trim_start_matches("ord_").to_lowercase()
        );
        let secret = crate::crypto::random_token(24).map_err(PaymentError::Unavailable)?;
        let stored = Stored {
            tenant_id: request.tenant_id.clone(),
            order_id: request.order_id.clone(),
            amount: request.amount,
            currency: request.currency.clone(),
            client_secret: format!("{id}_secret_{secret}"),
            status: "requires_confirmation".into(),
        };
        let item = Item::new(&key(&id))
            .with_record(&stored)
            .map_err(unavailable)?;
        match self.table.put(item, Some(Condition::NotExists)).await {
            Ok(()) => Ok(Intent {
                id,
                client_secret: stored.client_secret,
            }),
            // Asked again for the same order: the same payment, as Stripe's idempotency
            // key makes it.
            Err(e) if e.is_condition_failed() => {
                let existing = self
                    .stored(&id)
                    .await
                    .map_err(unavailable)?
                    .ok_or_else(|| PaymentError::Unavailable(anyhow::anyhow!("{id} vanished")))?;
                Ok(Intent {
                    id,
                    client_secret: existing.client_secret,
                })
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn refund(&self, payment_id: &str, amount: i64, _key: &str) -> Result<(), PaymentError> {
        let stored = self
            .stored(payment_id)
            .await
            .map_err(unavailable)?
            .ok_or_else(|| PaymentError::Refused(format!("no payment {payment_id}")))?;
        let refunded = self
            .table
            .update(
                &key(payment_id),
                vec![
                    UpdateOp::set("status", "refunded"),
                    UpdateOp::set("refunded_amount", amount),
                ],
                Some(Condition::eq("status", "succeeded")),
            )
            .await;
        match refunded {
            Ok(_) => {}
            // Refunded before: no second refund, and no second event.
            Err(e) if e.is_condition_failed() && stored.status == "refunded" => return Ok(()),
            Err(e) if e.is_condition_failed() => {
                return Err(PaymentError::Refused(format!(
                    "{payment_id} is {}, not paid",
                    stored.status
                )))
            }
            Err(e) => return Err(unavailable(e)),
        }
        self.announce(
            "charge.refunded",
            json!({
                "id": payment_id.replacen("pi_", "ch_", 1),
                "object": "charge",
                "amount": stored.amount,
                "amount_refunded": amount,
                "currency": stored.currency,
                "payment_intent": payment_id,
                "refunded": true,
                "metadata": {"order_id": stored.order_id, "tenant_id": stored.tenant_id},
            }),
        );
        Ok(())
    }
}
