//! What the payment provider's events do to an order (`POST /v1/payments/webhook`, once
//! its signature holds).
//!
//! Each event is applied once: the record of its id is written in the same transaction as
//! the change it makes, under `NotExists`, so a replay changes nothing. Events may come in
//! any order: a refund recorded before the payment it refunds leaves the order refunded
//! when the payment comes, never paid.

use crate::audit::{self, Change};
use crate::context::AppContext;
use crate::domain::{Move, OrderId, OrderStatus, TenantId};
use crate::repo::orders::{
    self, Order, Payment, Refund, RefundStatus, THE_ORDER, THE_PAYMENT_EVENT,
};
use crate::store::{StoreError, Transaction, TransactionError};

use super::{back_off, event as announce, refund_job, OrderError, Part, ATTEMPTS};

/// A provider event about an order, as the webhook parsed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentEvent {
    /// The provider's event id (`evt_…`), applied once.
    pub id: String,
    pub tenant_id: TenantId,
    pub order_id: OrderId,
    /// The provider's payment (a PaymentIntent's `pi_…`).
    pub payment_id: String,
    /// What the event says moved, in minor units, and its currency (lower case).
    pub amount: i64,
    pub currency: String,
    pub kind: PaymentEventKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentEventKind {
    /// The money came (`payment_intent.succeeded`).
    Succeeded,
    /// An attempt to pay failed (`payment_intent.payment_failed`), with the provider's
    /// message.
    Failed { message: String },
    /// The money went back (`charge.refunded`).
    Refunded,
}

/// What applying an event did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The order changed (or, for a mismatch, an audit entry says why it did not).
    Applied,
    /// The event was applied before.
    Duplicate,
    /// The event names no order of that shop: nothing changes.
    UnknownOrder,
}

/// Applies a provider event to its order, once.
#[tracing::instrument(skip_all, fields(event_id = %event.id, order_id = %event.order_id))]
pub async fn apply(ctx: &AppContext, event: &PaymentEvent) -> Result<Outcome, OrderError> {
    let table = ctx.table.as_ref();
    for attempt in 0..ATTEMPTS {
        let Some(read) = orders::get(table, &event.tenant_id, &event.order_id).await? else {
            return Ok(Outcome::UnknownOrder);
        };
        let tx = planned(ctx, event, &read)?;
        match tx.commit(table).await {
            Ok(()) => return Ok(Outcome::Applied),
            Err(TransactionError::Refused(Part::Named(THE_PAYMENT_EVENT))) => {
                return Ok(Outcome::Duplicate)
            }
            Err(TransactionError::Refused(Part::Named(THE_ORDER))) => {}
            Err(TransactionError::Store(StoreError::Conflict)) => back_off(attempt).await,
            Err(e) => return Err(OrderError::Store(e.into_store())),
        }
    }
    Err(OrderError::Contended)
}

/// The transaction applying `event` to the order as `read`: the event's record, the
/// audit entry, and the order's change with its event where there is one.
fn planned(
    ctx: &AppContext,
    event: &PaymentEvent,
    read: &Order,
) -> Result<Transaction<Part>, OrderError> {
    let now = ctx.clock.now();
    let mut order = read.clone();
    let mut refund = None;
    if matches!(event.kind, PaymentEventKind::Succeeded) && order.payment.is_none() {
        // A payment first heard of here (made outside `POST …/payment`): kept, so a refund
        // knows what to give back.
        order.payment = Some(Payment {
            provider: "stripe".into(),
            payment_intent_id: event.payment_id.clone(),
            client_secret: None,
        });
    }
    let matches =
        event.amount == read.total.amount() && event.currency == read.total.currency().as_str();
    let (action, announced, detail): (&str, Option<&str>, String) = match &event.kind {
        PaymentEventKind::Succeeded if !matches => (
            "order.payment_mismatch",
            None,
            format!(
                "{} paid {} {}, the order is {} {}",
                event.payment_id,
                event.amount,
                event.currency,
                read.total.amount(),
                read.total.currency().as_str()
            ),
        ),
        PaymentEventKind::Succeeded => match read.status {
            OrderStatus::PendingPayment => {
                order.status = read.status.after(Move::Pay)?;
                order.payment_failure = None;
                // A refund recorded before the payment it refunds: paid, then refunded.
                if read.refund.as_ref().map(|r| r.status) == Some(RefundStatus::Succeeded) {
                    order.status = order.status.after(Move::Refund)?;
                    (
                        "order.refunded",
                        Some("order.refunded"),
                        event.payment_id.clone(),
                    )
                } else {
                    ("order.paid", Some("order.paid"), event.payment_id.clone())
                }
            }
            // Paid after the order was cancelled (its window passed first): the money
            // goes back, asked of the provider by a job once this lands.
            OrderStatus::Cancelled if read.refund.is_none() => {
                order.refund = Some(Refund {
                    status: RefundStatus::Pending,
                    amount: read.total.clone(),
                });
                refund = Some(refund_job(ctx, &order)?);
                (
                    "order.paid_after_cancellation",
                    None,
                    event.payment_id.clone(),
                )
            }
            _ => ("order.payment_repeated", None, event.payment_id.clone()),
        },
        PaymentEventKind::Failed { message } => {
            order.payment_failure = Some(message.clone());
            ("order.payment_failed", None, message.clone())
        }
        PaymentEventKind::Refunded => {
            let amount = crate::domain::Money::new(event.amount, read.total.currency().clone())
                .map_err(|e| OrderError::Total(e.to_string()))?;
            order.refund = Some(Refund {
                status: RefundStatus::Succeeded,
                amount,
            });
            match read.status.after(Move::Refund) {
                Ok(refunded) => {
                    order.status = refunded;
                    (
                        "order.refunded",
                        Some("order.refunded"),
                        event.payment_id.clone(),
                    )
                }
                // A cancelled order keeps its status; its refund is news all the same (the
                // customer's refund email, the shop's webhooks).
                Err(_) => (
                    "order.refund_recorded",
                    Some("order.refunded"),
                    event.payment_id.clone(),
                ),
            }
        }
    };
    let mut tx = Transaction::<Part>::new();
    tx.add(
        THE_PAYMENT_EVENT.into(),
        orders::payment_event_applied(&event.id, read, now.timestamp())?,
    )?;
    let change = Change::new(action, "order", &read.id).detail(detail);
    tx.add(
        audit::LABEL.into(),
        audit::system_entry(ctx, &read.tenant_id, change)?,
    )?;
    if order != *read {
        order.version = read.version + 1;
        order.updated_at = crate::clock::rfc3339(now);
        for (label, op) in orders::rewrite(&order, read)? {
            tx.add(label.into(), op)?;
        }
        if let Some(kind) = announced {
            tx.add("the event".into(), announce(ctx, kind, &order)?)?;
        }
    }
    if let Some(refund) = refund {
        tx.add("the refund".into(), refund)?;
    }
    Ok(tx)
}
