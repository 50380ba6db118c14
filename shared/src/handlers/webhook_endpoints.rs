//! `POST /v1/webhook-endpoints`, `GET /v1/webhook-endpoints`,
//! `PATCH /v1/webhook-endpoints/{id}`, `DELETE /v1/webhook-endpoints/{id}`,
//! `GET /v1/webhook-endpoints/{id}/deliveries` and
//! `POST /v1/webhook-endpoints/{id}/deliveries/{delivery_id}/retry`: where a shop hears of
//! its events, and what was delivered there. Owners and admins only.
//!
//! An endpoint's signing secret (`whsec_…`) is shown once, at creation.

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::audit::{self, Change};
use crate::auth::Caller;
use crate::clock::rfc3339;
use crate::context::AppContext;
use crate::domain::{DeliveryId, EndpointId, EventTypes};
use crate::http::pagination::{paged, PageBody};
use crate::http::{
    internal, json, no_content, parse_json, path_id, ApiError, HandlerResult, Request,
};
use crate::repo::records;
use crate::repo::webhooks::{self as repo, Attempt, Endpoint, Outcome, StoredSecret};
use crate::store::UpdateOp;
use crate::validate;
use crate::webhooks::{self, RegisterError, RetryError, MAX_ENDPOINTS};

const NO_SUCH_ENDPOINT: &str = "This shop has no webhook endpoint with this id.";
const NO_SUCH_DELIVERY: &str = "This endpoint has no delivery with this id.";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateEndpoint {
    url: String,
    events: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateEndpoint {
    #[serde(default, deserialize_with = "crate::http::not_null")]
    url: Option<String>,
    #[serde(default, deserialize_with = "crate::http::not_null")]
    events: Option<Vec<String>>,
    #[serde(default, deserialize_with = "crate::http::not_null")]
    disabled: Option<bool>,
}

/// An endpoint as the API shows it: never its secret.
#[derive(Serialize)]
struct EndpointView<'a> {
    id: &'a EndpointId,
    url: &'a str,
    events: &'a [String],
    created_at: &'a str,
    disabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    disabled_reason: Option<&'a str>,
}

fn view(endpoint: &Endpoint) -> EndpointView<'_> {
    EndpointView {
        id: &endpoint.id,
        url: &endpoint.url,
        events: &endpoint.events,
        created_at: &endpoint.created_at,
        disabled: endpoint.disabled,
        disabled_reason: endpoint.disabled_reason.as_deref(),
    }
}

#[derive(Serialize)]
struct CreatedEndpoint<'a> {
    #[serde(flatten)]
    view: EndpointView<'a>,
    secret: &'a str,
}

/// One attempt as the API shows it.
#[derive(Serialize)]
struct DeliveryView<'a> {
    id: &'a DeliveryId,
    event_id: &'a str,
    event_type: &'a str,
    attempt: u32,
    status_code: Option<u16>,
    duration_ms: u64,
    outcome: Outcome,
    error: Option<&'a str>,
    next_attempt_at: Option<&'a str>,
    created_at: &'a str,
    response_excerpt: Option<&'a str>,
}

fn delivery_view(attempt: &Attempt) -> DeliveryView<'_> {
    DeliveryView {
        id: &attempt.id,
        event_id: &attempt.event_id,
        event_type: &attempt.event_type,
        attempt: attempt.attempt,
        status_code: attempt.status_code,
        duration_ms: attempt.duration_ms,
        outcome: attempt.outcome,
        error: attempt.error.as_deref(),
        next_attempt_at: attempt.next_attempt_at.as_deref(),
        created_at: &attempt.created_at,
        response_excerpt: attempt.response_excerpt.as_deref(),
    }
}

/// Registers an endpoint and shows its signing secret this once.
#[tracing::instrument(skip_all)]
pub async fn create(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let body: CreateEndpoint = parse_json(&req)?;
    validate! {
        url = webhooks::endpoint_url(&body.url, &ctx.webhooks) => "url",
        events = EventTypes::parse(&body.events) => "events",
    }
    let now = rfc3339(ctx.clock.now());
    let secret = crate::credentials::webhook_signature::generate_secret().map_err(internal)?;
    let endpoint = Endpoint {
        id: EndpointId::generate(ctx.ids.as_ref()),
        tenant_id: caller.tenant_id.clone(),
        url: url.to_string(),
        events: events.into_vec(),
        secret: StoredSecret::new(secret),
        created_at: now.clone(),
        updated_at: now,
        disabled: false,
        disabled_reason: None,
        failures: 0,
        open_until_ms: None,
        trial_until_ms: None,
    };
    let tx = audit::recorded(
        ctx,
        &req,
        &caller,
        Change::new(
            "webhook_endpoint.created",
            "webhook_endpoint",
            endpoint.id.as_str(),
        )
        .detail(format!("url: {}", endpoint.url)),
    )?;
    match webhooks::register(ctx, &endpoint, tx).await {
        Ok(()) => {}
        Err(RegisterError::TooMany) => {
            return Err(ApiError::Conflict {
                slug: "too-many-endpoints",
                detail: format!(
                    "A shop has at most {MAX_ENDPOINTS} webhook endpoints; delete one before adding another."
                ),
            })
        }
        Err(RegisterError::Store(e)) => return Err(e.into()),
    }
    tracing::info!(endpoint_id = %endpoint.id, "webhook endpoint created");
    json(
        StatusCode::CREATED,
        &CreatedEndpoint {
            view: view(&endpoint),
            secret: endpoint.secret.expose(),
        },
    )
}

/// The shop's endpoints, newest first.
#[tracing::instrument(skip_all)]
pub async fn list(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let query = paged(&req, repo::of_tenant(&caller.tenant_id))?;
    let (endpoints, next) = records::<Endpoint>(ctx.table.as_ref(), query).await?;
    json(
        StatusCode::OK,
        &PageBody::new(endpoints.iter().map(view).collect(), next),
    )
}

/// Changes an endpoint's URL, events or whether it is disabled; re-enabling it resets its
/// circuit breaker.
#[tracing::instrument(skip_all)]
pub async fn update(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let id: EndpointId = path_id(&req, "id", NO_SUCH_ENDPOINT)?;
    let body: UpdateEndpoint = parse_json(&req)?;
    validate! {
        url = body.url.as_deref().map(|u| webhooks::endpoint_url(u, &ctx.webhooks)).transpose() => "url",
        events = body.events.as_deref().map(EventTypes::parse).transpose() => "events",
    }
    let mut ops = vec![UpdateOp::set("updated_at", rfc3339(ctx.clock.now()))];
    let mut changed = Vec::new();
    if let Some(url) = url {
        ops.push(UpdateOp::set("url", url.to_string()));
        changed.push(format!("url: {url}"));
    }
    if let Some(events) = events {
        changed.push(format!("events: {}", events.as_slice().join(", ")));
        ops.push(UpdateOp::set("events", events.into_vec()));
    }
    match body.disabled {
        Some(true) => {
            ops.push(UpdateOp::set("disabled", true));
            ops.push(UpdateOp::remove("disabled_reason"));
            changed.push("disabled".into());
        }
        Some(false) => {
            ops.extend(repo::enable_ops());
            changed.push("enabled".into());
        }
        None => {}
    }
    let mut change = Change::new("webhook_endpoint.updated", "webhook_endpoint", id.as_str());
    if !changed.is_empty() {
        change = change.detail(changed.join("; "));
    }
    let tx = audit::recorded(ctx, &req, &caller, change)?;
    if !repo::change(ctx.table.as_ref(), &caller.tenant_id, id.as_str(), ops, tx).await? {
        return Err(ApiError::not_found(NO_SUCH_ENDPOINT));
    }
    let endpoint = repo::get(ctx.table.as_ref(), &caller.tenant_id, id.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found(NO_SUCH_ENDPOINT))?;
    tracing::info!(endpoint_id = %id, "webhook endpoint updated");
    json(StatusCode::OK, &view(&endpoint))
}

/// Deletes an endpoint: nothing more is delivered to it.
#[tracing::instrument(skip_all)]
pub async fn delete(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let id: EndpointId = path_id(&req, "id", NO_SUCH_ENDPOINT)?;
    let tx = audit::recorded(
        ctx,
        &req,
        &caller,
        Change::new("webhook_endpoint.deleted", "webhook_endpoint", id.as_str()),
    )?;
    if repo::delete(ctx.table.as_ref(), &caller.tenant_id, id.as_str(), tx).await? {
        tracing::info!(endpoint_id = %id, "webhook endpoint deleted");
        Ok(no_content())
    } else {
        Err(ApiError::not_found(NO_SUCH_ENDPOINT))
    }
}

/// The endpoint's delivery attempts, newest first.
#[tracing::instrument(skip_all)]
pub async fn deliveries(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let id: EndpointId = path_id(&req, "id", NO_SUCH_ENDPOINT)?;
    if repo::get(ctx.table.as_ref(), &caller.tenant_id, id.as_str())
        .await?
        .is_none()
    {
        return Err(ApiError::not_found(NO_SUCH_ENDPOINT));
    }
    let query = paged(&req, repo::attempts_of(&caller.tenant_id, id.as_str()))?;
    let (attempts, next) = records::<Attempt>(ctx.table.as_ref(), query).await?;
    json(
        StatusCode::OK,
        &PageBody::new(attempts.iter().map(delivery_view).collect(), next),
    )
}

#[derive(Serialize)]
struct Retrying<'a> {
    endpoint_id: &'a EndpointId,
    event_id: &'a str,
    attempt: u32,
}

/// Sends a delivery's event again, now, as a new attempt: 202, and the attempt shows in
/// the endpoint's deliveries once made.
#[tracing::instrument(skip_all)]
pub async fn retry(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let id: EndpointId = path_id(&req, "id", NO_SUCH_ENDPOINT)?;
    let delivery: DeliveryId = path_id(&req, "delivery_id", NO_SUCH_DELIVERY)?;
    let tx = audit::recorded(
        ctx,
        &req,
        &caller,
        Change::new(
            "webhook_delivery.retried",
            "webhook_delivery",
            delivery.as_str(),
        ),
    )?;
    match webhooks::retry(ctx, &caller.tenant_id, &id, delivery.as_str(), tx).await {
        Ok((event_id, attempt)) => {
            tracing::info!(endpoint_id = %id, delivery_id = %delivery, attempt, "delivery retry queued");
            json(
                StatusCode::ACCEPTED,
                &Retrying {
                    endpoint_id: &id,
                    event_id: &event_id,
                    attempt,
                },
            )
        }
        Err(RetryError::NotFound) => Err(ApiError::not_found(NO_SUCH_DELIVERY)),
        Err(RetryError::Disabled) => Err(ApiError::Conflict {
            slug: "endpoint-disabled",
            detail: "The endpoint is disabled; enable it before retrying a delivery.".into(),
        }),
        Err(RetryError::InFlight) => Err(ApiError::Conflict {
            slug: "delivery-in-flight",
            detail:
                "An attempt of this event is being made now; see its outcome in the deliveries."
                    .into(),
        }),
        Err(RetryError::Store(e)) => Err(e.into()),
    }
}
