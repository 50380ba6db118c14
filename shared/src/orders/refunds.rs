//! The refund job: asks the payment provider to give an order's money back, once the
//! change that decided it (a cancel of a paid order, a payment that came after the order
//! expired) has landed. The provider's idempotency key is the order's, so a job run twice
//! (SQS delivers at least once) makes one refund; the outcome comes back as the provider's
//! `charge.refunded` event, which marks the refund `succeeded`.

use crate::context::AppContext;
use crate::repo::orders::{self, RefundStatus};

/// Asks for the refund of order `order_id` of `tenant_id`, if it still waits for one.
/// An error fails the job, which is retried and then parked in the dead-letter queue.
#[tracing::instrument(skip(ctx))]
pub async fn ask(ctx: &AppContext, tenant_id: &str, order_id: &str) -> anyhow::Result<()> {
    let Some(order) = orders::get(ctx.table.as_ref(), tenant_id, order_id).await? else {
        anyhow::bail!("order {order_id} of {tenant_id} to refund does not exist");
    };
    let Some(refund) = order.refund.as_ref() else {
        anyhow::bail!("order {order_id} has no refund to ask for");
    };
    if refund.status == RefundStatus::Succeeded {
        tracing::info!(order_id, "refund already made");
        return Ok(());
    }
    let Some(payment) = order.payment.as_ref() else {
        anyhow::bail!("order {order_id} has a refund pending but no payment to refund");
    };
    ctx.payments
        .refund(
            &payment.payment_intent_id,
            refund.amount.amount(),
            &format!("refund-{order_id}"),
        )
        .await?;
    tracing::info!(order_id, payment_id = %payment.payment_intent_id, "refund asked for");
    Ok(())
}
