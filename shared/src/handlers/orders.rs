//! `POST /v1/orders`, `GET /v1/orders`, `GET /v1/orders/{id}`,
//! `POST /v1/orders/{id}/payment`, `POST /v1/orders/{id}/cancel`,
//! `POST /v1/orders/{id}/fulfil`: a shop's orders.
//!
//! Placing an order needs an `Idempotency-Key`: a retry of the same request answers the
//! first answer again and never places a second order. A customer sees their own orders;
//! staff and above see the shop's. Anyone else's order is a 404, never a 403.

use http::{header, HeaderValue, StatusCode};
use serde::Deserialize;

use crate::auth::Caller;
use crate::context::AppContext;
use crate::domain::{Cart, OrderId, OrderStatus, ProductId, Quantity, Role, TypedId as _};
use crate::handlers::NO_SUCH_ORDER;
use crate::http::idempotency::{self, Claim};
use crate::http::pagination::{paged, PageBody};
use crate::http::{
    json, parse_json, path_id, query_param, ApiError, FieldError, HandlerResult, Request,
};
use crate::orders::{self, Action, Actor, OrderError, MAX_LINES};
use crate::repo::orders::{self as stored, Entry, Order};
use crate::store::{Position, Query, StoreError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceOrder {
    items: Vec<OrderLine>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderLine {
    product_id: String,
    quantity: i64,
}

/// How many index pages a filtered list reads at most to fill one page of answers.
const FILTER_ROUNDS: usize = 5;

/// The cart the body describes, or every line that is wrong and why (422).
fn cart(body: &PlaceOrder) -> Result<Cart, ApiError> {
    let mut errors = Vec::new();
    let mut lines = Vec::with_capacity(body.items.len());
    for (n, line) in body.items.iter().enumerate() {
        match ProductId::parse(&line.product_id) {
            Ok(id) => lines.push((id, line.quantity)),
            Err(e) => errors.push(FieldError::new(
                format!("items[{n}].product_id"),
                e.to_string(),
            )),
        }
        if let Err(e) = Quantity::parse(line.quantity) {
            errors.push(FieldError::new(
                format!("items[{n}].quantity"),
                e.to_string(),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    Cart::parse(&lines, MAX_LINES).map_err(|(n, e)| {
        let field = if body.items.is_empty() || n >= body.items.len() {
            "items".to_owned()
        } else {
            format!("items[{n}]")
        };
        ApiError::validation(vec![FieldError::new(field, e.to_string())])
    })
}

/// The answer to a placed order: 201, the order, and where it lives.
fn placed(order: &Order) -> HandlerResult {
    let mut response = json(StatusCode::CREATED, &orders::view(order))?;
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/orders/{}", order.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

/// Places an order for the caller: 201 `pending_payment`, its stock taken; 409
/// `out-of-stock` and nothing changed when a line has too few.
#[tracing::instrument(skip_all)]
pub async fn create(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    idempotency::key(&req)?;
    let body: PlaceOrder = parse_json(&req)?;
    let cart = cart(&body)?;
    let lease =
        match idempotency::claim(&req, ctx, &caller.tenant_id, caller.principal_id()).await? {
            Claim::Replay(response) => return Ok(response),
            Claim::Run(lease) => lease,
        };
    let answer = |order: &Order| {
        let response = placed(order)
            .and_then(|r| idempotency::stored(&r))
            .map_err(|e| StoreError::Invalid(format!("the order's answer: {e:?}")))?;
        lease.complete(&response)
    };
    match orders::place(ctx, &req, &caller, &cart, answer).await {
        Ok(order) => {
            tracing::info!(order_id = %order.id, lines = order.lines.len(), "order placed");
            placed(&order)
        }
        Err(error) => {
            // Nothing landed: give the key up, so no record of a refused order is left and
            // a retry (once there is stock) runs afresh.
            if let Err(e) = lease.release(ctx.table.as_ref()).await {
                tracing::warn!(error = %e, "idempotency key not released");
            }
            Err(refused(error, &body))
        }
    }
}

/// A refusal of an order, with unknown products named by the body's line numbers.
fn refused(error: OrderError, body: &PlaceOrder) -> ApiError {
    match error {
        OrderError::UnknownProducts(ids) => {
            let errors = body
                .items
                .iter()
                .enumerate()
                .filter(|(_, line)| ids.iter().any(|id| id.as_str() == line.product_id))
                .map(|(n, _)| {
                    FieldError::new(
                        format!("items[{n}].product_id"),
                        "names no product of this shop",
                    )
                })
                .collect();
            ApiError::Unprocessable {
                slug: "unknown-product",
                detail: "The order names a product this shop does not sell; see `errors`.".into(),
                errors,
            }
        }
        other => other.into(),
    }
}

/// `?status=`, when given: one of the order statuses, or 400.
fn status_filter(req: &Request) -> Result<Option<OrderStatus>, ApiError> {
    query_param(req, "status")
        .filter(|s| !s.is_empty())
        .map(|raw| {
            serde_json::from_value(serde_json::Value::String(raw)).map_err(|_| {
                ApiError::BadRequest {
                    detail:
                        "`status` is one of pending_payment, paid, fulfilled, cancelled, refunded."
                            .into(),
                    errors: vec![FieldError::new("status", "is not an order status")],
                }
            })
        })
        .transpose()
}

/// Orders the caller may list, newest first: a customer's own; staff see the shop's,
/// `?customer=` and `?status=` narrowing them.
#[tracing::instrument(skip_all)]
pub async fn list(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let status = status_filter(&req)?;
    let named = query_param(&req, "customer").filter(|c| !c.is_empty());
    let customer = if caller.role.includes(Role::Staff) {
        named
    } else {
        match named {
            // A customer may see no one else's orders: that filter holds none for them.
            Some(other) if other != caller.principal_id() => {
                return json(StatusCode::OK, &PageBody::<()>::new(Vec::new(), None));
            }
            _ => Some(caller.principal_id().to_owned()),
        }
    };
    let tenant_id = caller.tenant_id.as_str();
    let (found, next) = match (customer, status) {
        (Some(customer), status) => {
            let query = paged(&req, stored::of_customer(tenant_id, &customer))?;
            filtered(ctx, query, |order: &Order| {
                status.is_none_or(|s| order.status == s)
            })
            .await?
        }
        (None, Some(status)) => {
            let query = paged(&req, stored::with_status(tenant_id, status))?;
            listed(ctx, tenant_id, query, |order| order.status == status).await?
        }
        (None, None) => {
            let query = paged(&req, stored::of_shop(tenant_id))?;
            listed(ctx, tenant_id, query, |_| true).await?
        }
    };
    let page = PageBody::new(found.iter().map(orders::view).collect(), next);
    json(StatusCode::OK, &page)
}

/// A page of orders read from a partition holding the orders themselves, keeping those
/// `keep` accepts: up to [`FILTER_ROUNDS`] index pages to fill the page asked for.
async fn filtered(
    ctx: &AppContext,
    mut query: Query,
    keep: impl Fn(&Order) -> bool,
) -> Result<(Vec<Order>, Option<Position>), ApiError> {
    let want = query.limit;
    let mut found = Vec::new();
    for _ in 0..FILTER_ROUNDS {
        let (page, next): (Vec<Order>, _) =
            crate::repo::records(ctx.table.as_ref(), query.clone()).await?;
        found.extend(page.into_iter().filter(|o| keep(o)));
        match next {
            Some(position) if found.len() < want => query = query.after(Some(position)),
            next => return Ok((found, next)),
        }
    }
    let next = query.after.clone();
    Ok((found, next))
}

/// A page of orders read through index entries: the entries, then the orders in one batch
/// read; an order that moved on since its entry was read (`keep` refuses it) is left out.
async fn listed(
    ctx: &AppContext,
    tenant_id: &str,
    query: Query,
    keep: impl Fn(&Order) -> bool,
) -> Result<(Vec<Order>, Option<Position>), ApiError> {
    let (entries, next): (Vec<Entry>, _) = crate::repo::records(ctx.table.as_ref(), query).await?;
    let ids: Vec<OrderId> = entries.into_iter().map(|e| e.order_id).collect();
    let found = stored::get_many(ctx.table.as_ref(), tenant_id, &ids).await?;
    Ok((found.into_iter().filter(|o| keep(o)).collect(), next))
}

/// One order: its customer's, or any of the shop's for staff.
#[tracing::instrument(skip_all)]
pub async fn get(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let id: OrderId = path_id(&req, "id", NO_SUCH_ORDER)?;
    let order = orders::get(ctx, &caller, &id).await?;
    json(StatusCode::OK, &orders::view(&order))
}

/// Cancels an order that awaits payment (or is paid): its stock is returned.
#[tracing::instrument(skip_all)]
pub async fn cancel(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    moved(req, ctx, caller, Action::Cancel).await
}

/// Marks a paid order as sent.
#[tracing::instrument(skip_all)]
pub async fn fulfil(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    moved(req, ctx, caller, Action::Fulfil).await
}

async fn moved(req: Request, ctx: &AppContext, caller: Caller, action: Action) -> HandlerResult {
    let id: OrderId = path_id(&req, "id", NO_SUCH_ORDER)?;
    let order = orders::apply(
        ctx,
        Actor::Caller(&req, &caller),
        &caller.tenant_id,
        &id,
        action,
    )
    .await?;
    tracing::info!(order_id = %order.id, status = order.status.as_str(), "order moved");
    json(StatusCode::OK, &orders::view(&order))
}

/// What `POST /v1/orders/{id}/payment` answers.
#[derive(serde::Serialize)]
struct PaymentView<'a> {
    provider: &'a str,
    payment_intent_id: &'a str,
    client_secret: &'a str,
}

/// Starts paying one of the caller's own orders: the provider's payment for its total,
/// made once; called again, the same answer. 409 unless it awaits payment.
#[tracing::instrument(skip_all)]
pub async fn pay(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let id: OrderId = path_id(&req, "id", NO_SUCH_ORDER)?;
    let payment = orders::start_payment(ctx, &req, &caller, &id).await?;
    tracing::info!(order_id = %id, payment_id = %payment.payment_intent_id, "payment started");
    json(
        StatusCode::OK,
        &PaymentView {
            provider: &payment.provider,
            payment_intent_id: &payment.payment_intent_id,
            client_secret: payment.client_secret.as_deref().unwrap_or_default(),
        },
    )
}
