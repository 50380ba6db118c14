//! The jobs the `worker` function runs, and the dispatcher that routes each to its handler.
//!
//! A job travels as JSON tagged with its `kind`. A body that is not a known job fails, so it
//! is retried and then parked in the dead-letter queue, where an operator can see it.

use async_trait::async_trait;

use super::{JobMessage, Worker};
use crate::context::AppContext;

pub use crate::domain::{Event, Job};

/// Decodes each message as a [`Job`] and runs it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Dispatcher;

#[async_trait]
impl Worker for Dispatcher {
    async fn handle(&self, ctx: &AppContext, message: &JobMessage) -> anyhow::Result<()> {
        let job: Job = serde_json::from_str(&message.body)
            .map_err(|e| anyhow::anyhow!("message {} is not a job: {e}", message.id))?;
        match job {
            Job::DeleteBlob { key } => {
                ctx.blobs.delete(&key).await?;
                tracing::info!(key, "blob deleted");
            }
            Job::DeleteBlobs { keys } => {
                for key in keys {
                    ctx.blobs.delete(&key).await?;
                    tracing::info!(key, "blob deleted");
                }
            }
            // The event has left the outbox: each webhook endpoint subscribed to it gets
            // its own delivery, once however often the queue brings the event.
            Job::Event { event } => {
                let endpoints = crate::webhooks::fan_out(ctx, &event).await?;
                let emailed = crate::emails::queue(ctx, &event).await?;
                tracing::info!(event_id = %event.id, event_type = %event.kind, endpoints, emailed, "event published");
            }
            Job::Email {
                tenant_id,
                event_id,
                email,
                to,
                customer_name,
                shop_name,
                order,
            } => {
                let request = crate::emails::Request {
                    tenant_id,
                    event_id,
                    kind: email,
                    to,
                    customer_name,
                    shop_name,
                    order,
                };
                crate::emails::send(ctx, request).await?
            }
            Job::Deliver {
                tenant_id,
                endpoint_id,
                event_id,
                attempt,
                not_before,
                manual,
            } => {
                let request = crate::webhooks::delivery::Request {
                    delivery: crate::webhooks::delivery::Delivery {
                        tenant_id,
                        endpoint_id,
                        event_id,
                    },
                    attempt,
                    not_before,
                    manual,
                };
                crate::webhooks::delivery::attempt(ctx, request).await?
            }
            Job::Refund {
                tenant_id,
                order_id,
            } => crate::orders::refunds::ask(ctx, &tenant_id, &order_id).await?,
        }
        Ok(())
    }
}
