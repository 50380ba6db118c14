//! Webhooks: a shop's endpoints, and the events Storefront delivers to them.
//!
//! An event leaves the outbox for the jobs queue; the worker fans it out ([`fan_out`]):
//! in one transaction, a message per subscribed endpoint (`repo::webhooks`) and a
//! delivery job for each, so an event delivered twice to the worker fans out once.
//! Each job makes one attempt ([`delivery::attempt`]), signed as Standard Webhooks
//! asks, through the SSRF [`guard`]; a failure schedules the next attempt, through the
//! outbox again, on the retry schedule; the last failure sends the job to the dead-letter
//! queue. A per-endpoint circuit breaker holds deliveries to an endpoint that keeps
//! failing, without counting them as attempts.

pub mod delivery;
pub mod guard;

use crate::config::WebhookSettings;
use crate::context::AppContext;
use crate::domain::{EndpointId, Event, Invalid, TenantId};
use crate::repo::webhooks::{self as repo, Message, MessageState};
use crate::store::{Transaction, TransactionError};
use delivery::Delivery;

/// The most endpoints a shop may have (Stripe allows as many).
pub const MAX_ENDPOINTS: usize = 16;

/// The policy deliveries follow under `settings`.
pub fn policy(settings: &WebhookSettings) -> guard::Policy {
    guard::Policy {
        allow_loopback: settings.allow_loopback,
    }
}

/// An endpoint URL as given at registration: a well-formed https URL that names no
/// address Storefront may not reach (checked again at every delivery, after resolving).
pub fn endpoint_url(raw: &str, settings: &WebhookSettings) -> Result<url::Url, Invalid> {
    let url =
        url::Url::parse(raw.trim()).map_err(|e| Invalid(format!("is not an absolute URL: {e}")))?;
    guard::check_url(&url, policy(settings)).map_err(|e| Invalid(e.to_string()))?;
    Ok(url)
}

/// When an item written now expires: messages and attempts are kept
/// [`repo::RETENTION_DAYS`].
fn expiry(ctx: &AppContext) -> i64 {
    (ctx.clock.now() + chrono::Duration::days(repo::RETENTION_DAYS)).timestamp()
}

/// Creates the shop's messages for `event`, one per endpoint subscribed to its type, each
/// with its first delivery job; answers how many. An event fanned out before (the queue
/// delivered it twice) writes nothing.
#[tracing::instrument(skip_all, fields(event_id = %event.id, event_type = %event.kind))]
pub async fn fan_out(ctx: &AppContext, event: &Event) -> anyhow::Result<usize> {
    let endpoints: Vec<_> =
        repo::all_of_tenant(ctx.table.as_ref(), &event.tenant_id, MAX_ENDPOINTS * 2)
            .await?
            .into_iter()
            .filter(|endpoint| endpoint.subscribes_to(&event.kind))
            .collect();
    if endpoints.is_empty() {
        return Ok(0);
    }
    let payload = serde_json::to_string(event)?;
    let expires_at = expiry(ctx);
    let mut tx: Transaction<String> = Transaction::new();
    tx.add(
        FANNED_OUT.to_owned(),
        repo::fan_out_marker(&event.tenant_id, &event.id, expires_at),
    )?;
    for endpoint in &endpoints {
        let message = Message {
            event_id: event.id.clone(),
            event_type: event.kind.clone(),
            payload: payload.clone(),
            created_at: crate::clock::rfc3339(ctx.clock.now()),
            completed: 0,
            state: MessageState::Pending,
            lease_until_ms: None,
            lease_token: None,
        };
        tx.add(
            format!("{}'s message", endpoint.id),
            repo::new_message(&event.tenant_id, endpoint.id.as_str(), &message, expires_at)?,
        )?;
        let delivery = Delivery {
            tenant_id: event.tenant_id.clone(),
            endpoint_id: endpoint.id.to_string(),
            event_id: event.id.clone(),
        };
        tx.add(
            format!("{}'s first delivery job", endpoint.id),
            crate::events::queue(ctx, &event.tenant_id, &delivery.job(1, None, false))?,
        )?;
    }
    match tx.commit(ctx.table.as_ref()).await {
        Ok(()) => {
            tracing::info!(endpoints = endpoints.len(), "event fanned out");
            Ok(endpoints.len())
        }
        Err(TransactionError::Refused(label)) if label == FANNED_OUT => {
            tracing::info!("event fanned out before; nothing to do");
            Ok(0)
        }
        Err(e) => Err(e.into_store().into()),
    }
}

/// The fan-out's marker, in its transaction.
const FANNED_OUT: &str = "the fan-out";

/// Why an endpoint could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("the shop has {MAX_ENDPOINTS} webhook endpoints already")]
    TooMany,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Stores a new endpoint with `alongside` (its audit entry), counted against the shop's
/// [`MAX_ENDPOINTS`] in the same transaction.
#[tracing::instrument(skip_all, fields(endpoint_id = %endpoint.id))]
pub async fn register(
    ctx: &AppContext,
    endpoint: &repo::Endpoint,
    alongside: Transaction<&'static str>,
) -> Result<(), RegisterError> {
    let mut tx = alongside;
    tx.add("the endpoint", repo::create(endpoint)?)?.add(
        "the count",
        repo::count_one_more(&endpoint.tenant_id, MAX_ENDPOINTS as u32),
    )?;
    match tx.commit(ctx.table.as_ref()).await {
        Ok(()) => Ok(()),
        Err(TransactionError::Refused("the count")) => Err(RegisterError::TooMany),
        Err(e) => Err(e.into_store().into()),
    }
}

/// Why a shop's retry of a delivery was refused.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("no such delivery")]
    NotFound,
    #[error("the endpoint is disabled")]
    Disabled,
    #[error("an attempt of this event is in flight")]
    InFlight,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Sends the event of delivery `delivery_id` to its endpoint again, now, as a new attempt:
/// answers the event id and the attempt's number. The shop's audit entry comes in
/// `alongside`.
#[tracing::instrument(skip(ctx, alongside))]
pub async fn retry(
    ctx: &AppContext,
    tenant_id: &TenantId,
    endpoint_id: &EndpointId,
    delivery_id: &str,
    alongside: Transaction<&'static str>,
) -> Result<(String, u32), RetryError> {
    let table = ctx.table.as_ref();
    let attempt = repo::attempt(table, tenant_id, endpoint_id.as_str(), delivery_id)
        .await?
        .ok_or(RetryError::NotFound)?;
    let (endpoint, message) =
        repo::endpoint_and_message(table, tenant_id, endpoint_id.as_str(), &attempt.event_id)
            .await?;
    let endpoint = endpoint.ok_or(RetryError::NotFound)?;
    // The message expired with its retention: there is nothing left to send.
    let message = message.ok_or(RetryError::NotFound)?;
    if endpoint.disabled {
        return Err(RetryError::Disabled);
    }
    let next = message.completed + 1;
    let now_ms = ctx.clock.now().timestamp_millis();
    let delivery = Delivery {
        tenant_id: tenant_id.to_string(),
        endpoint_id: endpoint_id.to_string(),
        event_id: message.event_id.clone(),
    };
    // A delivery still on its schedule is attempted now as its next scheduled attempt (the
    // job already waiting for that number finds it made and does nothing), so the schedule
    // goes on after it; one that had ended gets one attempt more, which schedules nothing.
    let manual = message.state != MessageState::Pending;
    let job = delivery.job(next, None, manual);
    let mut tx = alongside;
    tx.add(
        "the message",
        repo::reopen(
            repo::message_key(tenant_id, endpoint_id.as_str(), &message.event_id),
            message.completed,
            now_ms,
        ),
    )?
    .add(
        "the delivery job",
        crate::events::queue(ctx, tenant_id, &job)?,
    )?;
    match tx.commit(table).await {
        Ok(()) => Ok((message.event_id, next)),
        Err(TransactionError::Refused("the message")) => Err(RetryError::InFlight),
        Err(e) => Err(e.into_store().into()),
    }
}
