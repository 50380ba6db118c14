//! The orders' feature module: placing an order, and every move of its life.
//!
//! Placing an order is one transaction holding everything it implies: the order and its
//! index entries, a conditional decrement of each line's stock (`stock >= quantity`, so
//! however many orders race for the last unit, DynamoDB lets exactly as many through as
//! there are units), the idempotency answer, the `order.created` event in the outbox and
//! the audit entry. One line short of stock refuses the whole order: nothing is taken.
//! Prices are copied from the products, read strongly consistent, at that moment.
//!
//! A move ([`Action`]) reads the order, asks `crate::domain::OrderStatus::after` whether
//! its status allows it (409 if not), and writes the new status conditioned on the version
//! and status it read, with the stock it returns, its event and its audit entry, in one
//! transaction: two racing moves cannot both happen, and a move that lost a race reads
//! again and is judged anew.

pub mod payments;
pub mod refunds;

use std::time::Duration;

use serde::Serialize;

use crate::audit::{self, Change};
use crate::context::AppContext;
use crate::domain::{
    Caller, Cart, IllegalMove, Money, Move, OrderId, OrderStatus, ProductId, Role, TenantId,
};
use crate::http::Request;
use crate::payments::{PaymentError, PaymentRequest};
use crate::repo::orders::{self, Entry, Line, Order, Payment, Refund, RefundStatus, THE_ORDER};
use crate::repo::products;
use crate::store::{
    Consistency, StoreError, Transaction, TransactionError, TxOp, MAX_TRANSACTION_OPS,
};

/// The operations of an order's transaction besides its lines' stock: the order's own
/// writes, the idempotency answer, the event and the audit entry.
pub const FIXED_OPS: usize = orders::INSERT_OPS + 3;
/// The most products one order holds: each costs one operation (its stock), and the whole
/// order is one transaction of at most DynamoDB's hundred.
pub const MAX_LINES: usize = MAX_TRANSACTION_OPS - FIXED_OPS;

/// How often a write that DynamoDB cancelled for a concurrent one on the same item (a hot
/// product) is tried, backing off with jitter in between.
const ATTEMPTS: u32 = 8;

/// Why an order could not be placed or moved (`crate::handlers` says what each becomes).
#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    /// These products are not in the shop's catalogue (never were, or were deleted).
    #[error("the shop has no product {0:?}")]
    UnknownProducts(Vec<ProductId>),
    /// This line asked for more than its product has.
    #[error("{sku} has {available} left")]
    OutOfStock {
        product_id: ProductId,
        sku: String,
        available: u32,
    },
    /// The lines' amounts do not add up within the money's limits.
    #[error("the order's total is out of range: {0}")]
    Total(String),
    #[error("no such order for this caller")]
    NoSuchOrder,
    #[error(transparent)]
    Illegal(#[from] IllegalMove),
    #[error("the order kept changing while it was written")]
    Contended,
    #[error(transparent)]
    Payment(#[from] PaymentError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The label of each operation of an order's transactions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Named(&'static str),
    /// The stock of the order's line of this index.
    Stock(usize),
}

impl From<&'static str> for Part {
    fn from(label: &'static str) -> Self {
        Self::Named(label)
    }
}

/// The order as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct OrderView {
    pub id: OrderId,
    pub status: OrderStatus,
    pub customer_id: String,
    pub items: Vec<LineView>,
    pub total: Money,
    pub created_at: String,
    pub updated_at: String,
    pub payment_due_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refund: Option<RefundView>,
}

#[derive(Clone, Debug, Serialize)]
pub struct LineView {
    pub product_id: ProductId,
    pub sku: String,
    pub name: String,
    pub unit_price: Money,
    pub quantity: u32,
    pub line_total: Money,
}

#[derive(Clone, Debug, Serialize)]
pub struct RefundView {
    pub status: RefundStatus,
    pub amount: Money,
}

pub fn view(order: &Order) -> OrderView {
    OrderView {
        id: order.id.clone(),
        status: order.status,
        customer_id: order.customer_id.clone(),
        items: order
            .lines
            .iter()
            .map(|line| LineView {
                product_id: line.product_id.clone(),
                sku: line.sku.clone(),
                name: line.name.clone(),
                unit_price: line.unit_price.clone(),
                quantity: line.quantity,
                line_total: line.line_total.clone(),
            })
            .collect(),
        total: order.total.clone(),
        created_at: order.created_at.clone(),
        updated_at: order.updated_at.clone(),
        payment_due_by: order.payment_due_by.clone(),
        cancel_reason: order.cancel_reason.clone(),
        refund: order.refund.as_ref().map(|refund| RefundView {
            status: refund.status,
            amount: refund.amount.clone(),
        }),
    }
}

/// Whether `caller` may see `order`: its customer, or staff and above. Anyone else is told
/// it does not exist.
pub fn visible_to(order: &Order, caller: &Caller) -> bool {
    caller.role.includes(Role::Staff) || order.customer_id == caller.principal_id()
}

/// An order of the caller's shop that the caller may see.
pub async fn get(ctx: &AppContext, caller: &Caller, id: &OrderId) -> Result<Order, OrderError> {
    orders::get(ctx.table.as_ref(), &caller.tenant_id, id)
        .await?
        .filter(|order| visible_to(order, caller))
        .ok_or(OrderError::NoSuchOrder)
}

/// The outbox write announcing `kind` (`order.created`, `order.cancelled`, …) of `order`.
fn event(ctx: &AppContext, kind: &str, order: &Order) -> Result<TxOp, StoreError> {
    crate::events::announce(ctx, &order.tenant_id, kind, &view(order))
}

/// Waits before attempt `attempt + 1` of a write DynamoDB cancelled as conflicting:
/// exponential from 10 ms, with full jitter so racing writers spread out.
async fn back_off(attempt: u32) {
    let ceiling = 10u64 << attempt.min(6);
    let random = crate::crypto::random_bytes(2)
        .map(|b| u64::from(u16::from_le_bytes([b[0], b[1]])))
        .unwrap_or(u64::from(u16::MAX) / 2);
    tokio::time::sleep(Duration::from_millis(
        1 + ceiling * random / u64::from(u16::MAX),
    ))
    .await;
}

/// Places an order of `cart` for `caller`: one transaction taking each line's stock and
/// writing the order, its entries, its event, its audit entry and `answer` (the
/// idempotency record's completion, made from the order). All or nothing.
#[tracing::instrument(skip_all, fields(lines = cart.lines().len()))]
pub async fn place(
    ctx: &AppContext,
    req: &Request,
    caller: &Caller,
    cart: &Cart,
    answer: impl Fn(&Order) -> Result<TxOp, StoreError>,
) -> Result<Order, OrderError> {
    let table = ctx.table.as_ref();
    let ids: Vec<ProductId> = cart.lines().iter().map(|(id, _)| id.clone()).collect();
    let found = products::get_many(table, &caller.tenant_id, &ids, Consistency::Strong).await?;
    let unknown: Vec<ProductId> = ids
        .iter()
        .zip(&found)
        .filter(|(_, product)| product.is_none())
        .map(|(id, _)| id.clone())
        .collect();
    if !unknown.is_empty() {
        return Err(OrderError::UnknownProducts(unknown));
    }
    let mut lines = Vec::with_capacity(ids.len());
    for ((_, quantity), product) in cart.lines().iter().zip(found.into_iter().flatten()) {
        let line_total = product
            .price
            .times(quantity.units())
            .map_err(|e| OrderError::Total(e.to_string()))?;
        lines.push(Line {
            product_id: product.id,
            sku: product.sku,
            name: product.name,
            unit_price: product.price,
            quantity: quantity.units(),
            line_total,
        });
    }
    let mut total = lines
        .first()
        .map(|line| Money::zero(line.unit_price.currency().clone()))
        .ok_or_else(|| OrderError::Total("an order has at least one line".into()))?;
    for line in &lines {
        total = total
            .checked_add(&line.line_total)
            .map_err(|e| OrderError::Total(e.to_string()))?;
    }
    let now = ctx.clock.now();
    let due = now + ctx.payment_window;
    let order = Order {
        id: OrderId::generate(ctx.ids.as_ref()),
        tenant_id: caller.tenant_id.clone(),
        customer_id: caller.principal_id().to_owned(),
        status: OrderStatus::PendingPayment,
        lines,
        total,
        created_at: crate::clock::rfc3339(now),
        updated_at: crate::clock::rfc3339(now),
        payment_due_by: crate::clock::rfc3339(due),
        payment_due_epoch: due.timestamp(),
        cancel_reason: None,
        refund: None,
        payment: None,
        payment_failure: None,
        version: 1,
    };
    for attempt in 0..ATTEMPTS {
        let mut tx = Transaction::<Part>::new();
        let change = Change::new("order.created", "order", &order.id).detail(format!(
            "{} line(s), total {} {}",
            order.lines.len(),
            order.total.amount(),
            order.total.currency().as_str()
        ));
        tx.add(audit::LABEL.into(), audit::entry(ctx, req, caller, change)?)?;
        for (label, op) in orders::insert(&order)? {
            tx.add(label.into(), op)?;
        }
        let at = crate::clock::rfc3339(now);
        for (n, line) in order.lines.iter().enumerate() {
            tx.add(
                Part::Stock(n),
                products::take_stock(&order.tenant_id, &line.product_id, line.quantity, &at),
            )?;
        }
        tx.add("the event".into(), event(ctx, "order.created", &order)?)?;
        tx.add("the idempotency answer".into(), answer(&order)?)?;
        match tx.commit(table).await {
            Ok(()) => return Ok(order),
            Err(TransactionError::Refused(Part::Stock(n))) => {
                return Err(short_of_stock(ctx, &order, n).await)
            }
            Err(TransactionError::Store(StoreError::Conflict)) => back_off(attempt).await,
            Err(TransactionError::Refused(Part::Named("the idempotency answer"))) => {
                // The key's lease lapsed and another request holds it now.
                return Err(OrderError::Contended);
            }
            Err(e) => return Err(OrderError::Store(e.into_store())),
        }
    }
    Err(OrderError::Contended)
}

/// Why line `n` of `order` was refused: its product is gone, or has too few left.
async fn short_of_stock(ctx: &AppContext, order: &Order, n: usize) -> OrderError {
    let Some(line) = order.lines.get(n) else {
        return OrderError::Contended;
    };
    match products::get(ctx.table.as_ref(), &order.tenant_id, &line.product_id).await {
        Ok(Some(product)) => OrderError::OutOfStock {
            product_id: line.product_id.clone(),
            sku: line.sku.clone(),
            available: product.stock,
        },
        Ok(None) => OrderError::UnknownProducts(vec![line.product_id.clone()]),
        Err(e) => OrderError::Store(e),
    }
}

/// What is done to an order after it is placed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// The customer or staff cancel it.
    Cancel,
    /// Staff send it.
    Fulfil,
    /// Its payment window passed unpaid (the expiry sweep).
    Expire,
}

impl Action {
    fn verb(self) -> Move {
        match self {
            Self::Cancel => Move::Cancel,
            Self::Fulfil => Move::Fulfil,
            Self::Expire => Move::Expire,
        }
    }
}

/// Who moves an order, for its audit entry.
#[derive(Clone, Copy)]
pub enum Actor<'a> {
    Caller(&'a Request, &'a Caller),
    /// Storefront itself (the expiry sweep).
    System,
}

impl Actor<'_> {
    fn entry(
        &self,
        ctx: &AppContext,
        tenant_id: &TenantId,
        change: Change<'_>,
    ) -> Result<TxOp, StoreError> {
        match self {
            Self::Caller(req, caller) => audit::entry(ctx, req, caller, change),
            Self::System => audit::system_entry(ctx, tenant_id, change),
        }
    }

    fn may_see(&self, order: &Order) -> bool {
        match self {
            Self::Caller(_, caller) => visible_to(order, caller),
            Self::System => true,
        }
    }
}

/// Applies `action` to an order of `tenant_id`, as `actor`: 409 ([`OrderError::Illegal`])
/// when its status does not allow it, and nothing changes. A move that lost a race to
/// another reads the order again and is judged against what it finds.
#[tracing::instrument(skip(ctx, actor), fields(order_id = %id))]
pub async fn apply(
    ctx: &AppContext,
    actor: Actor<'_>,
    tenant_id: &TenantId,
    id: &OrderId,
    action: Action,
) -> Result<Order, OrderError> {
    let table = ctx.table.as_ref();
    for attempt in 0..ATTEMPTS {
        let read = orders::get(table, tenant_id, id)
            .await?
            .filter(|order| actor.may_see(order))
            .ok_or(OrderError::NoSuchOrder)?;
        if action == Action::Expire && ctx.clock.now().timestamp() < read.payment_due_epoch {
            return Ok(read);
        }
        let status = read.status.after(action.verb())?;
        let (order, tx) = moved(ctx, actor, &read, action, status).await?;
        match tx.commit(table).await {
            Ok(()) => return Ok(order),
            // Another move or a product change got in between: judge again.
            Err(TransactionError::Refused(Part::Named(THE_ORDER)))
            | Err(TransactionError::Refused(Part::Stock(_))) => {}
            Err(TransactionError::Store(StoreError::Conflict)) => back_off(attempt).await,
            Err(e) => return Err(OrderError::Store(e.into_store())),
        }
    }
    Err(OrderError::Contended)
}

/// The order after `action` and the transaction that writes it.
async fn moved(
    ctx: &AppContext,
    actor: Actor<'_>,
    read: &Order,
    action: Action,
    status: OrderStatus,
) -> Result<(Order, Transaction<Part>), OrderError> {
    let now = crate::clock::rfc3339(ctx.clock.now());
    let mut order = read.clone();
    order.status = status;
    order.version = read.version + 1;
    order.updated_at = now.clone();
    let mut refund = None;
    let (kind, detail) = match action {
        Action::Cancel if read.status == OrderStatus::Paid => {
            // The money goes back: asked of the provider by a job, once the cancel lands.
            order.refund = Some(Refund {
                status: RefundStatus::Pending,
                amount: read.total.clone(),
            });
            refund = Some(refund_job(ctx, read)?);
            ("order.cancelled", Some("refund asked for"))
        }
        Action::Cancel => ("order.cancelled", None),
        Action::Expire => {
            order.cancel_reason = Some(PAYMENT_WINDOW_EXPIRED.to_owned());
            ("order.cancelled", Some(PAYMENT_WINDOW_EXPIRED))
        }
        Action::Fulfil => ("order.fulfilled", None),
    };
    let mut tx = Transaction::<Part>::new();
    let mut change = Change::new(kind, "order", &read.id);
    if let Some(detail) = detail {
        change = change.detail(detail);
    }
    tx.add(
        audit::LABEL.into(),
        actor.entry(ctx, &read.tenant_id, change)?,
    )?;
    for (label, op) in orders::rewrite(&order, read)? {
        tx.add(label.into(), op)?;
    }
    if status == OrderStatus::Cancelled {
        restock(ctx, &mut tx, read, &now).await?;
    }
    tx.add("the event".into(), event(ctx, kind, &order)?)?;
    if let Some(refund) = refund {
        tx.add("the refund".into(), refund)?;
    }
    Ok((order, tx))
}

/// The outbox write of the job that asks the provider to refund `order`.
pub(crate) fn refund_job(ctx: &AppContext, order: &Order) -> Result<TxOp, StoreError> {
    let job = crate::domain::Job::Refund {
        tenant_id: order.tenant_id.to_string(),
        order_id: order.id.to_string(),
    };
    crate::events::queue(ctx, &order.tenant_id, &job)
}

/// Starts paying an order of the caller's (its customer alone): creates the provider's
/// payment for its total, once. Called again while the order awaits payment, it answers
/// the same payment; for an order in any other status, 409.
#[tracing::instrument(skip(ctx, req, caller), fields(order_id = %id))]
pub async fn start_payment(
    ctx: &AppContext,
    req: &Request,
    caller: &Caller,
    id: &OrderId,
) -> Result<Payment, OrderError> {
    let table = ctx.table.as_ref();
    for attempt in 0..ATTEMPTS {
        let read = orders::get(table, &caller.tenant_id, id)
            .await?
            .filter(|order| order.customer_id == caller.principal_id())
            .ok_or(OrderError::NoSuchOrder)?;
        if read.status != OrderStatus::PendingPayment {
            return Err(OrderError::Illegal(IllegalMove {
                from: read.status.as_str(),
                action: "paid for",
            }));
        }
        if let Some(payment) = read.payment.as_ref().filter(|p| p.client_secret.is_some()) {
            return Ok(payment.clone());
        }
        // The order id is the provider's idempotency key: a retry, or a request racing
        // this one, gets this same payment back.
        let intent = ctx
            .payments
            .create(&PaymentRequest {
                tenant_id: read.tenant_id.to_string(),
                order_id: read.id.to_string(),
                amount: read.total.amount(),
                currency: read.total.currency().as_str().to_owned(),
            })
            .await?;
        let payment = Payment {
            provider: ctx.payments.name().to_owned(),
            payment_intent_id: intent.id.clone(),
            client_secret: Some(intent.client_secret),
        };
        let mut order = read.clone();
        order.payment = Some(payment.clone());
        order.version = read.version + 1;
        order.updated_at = crate::clock::rfc3339(ctx.clock.now());
        let mut tx = Transaction::<Part>::new();
        let change =
            Change::new("order.payment_started", "order", &read.id).detail(intent.id.clone());
        tx.add(audit::LABEL.into(), audit::entry(ctx, req, caller, change)?)?;
        for (label, op) in orders::rewrite(&order, &read)? {
            tx.add(label.into(), op)?;
        }
        tx.add(
            "the payment's order".into(),
            orders::payment_of(&order, &intent.id)?,
        )?;
        match tx.commit(table).await {
            Ok(()) => return Ok(payment),
            // Another request stored the payment, or the order moved: read it again.
            Err(TransactionError::Refused(Part::Named(THE_ORDER))) => {}
            Err(TransactionError::Store(StoreError::Conflict)) => back_off(attempt).await,
            Err(e) => return Err(OrderError::Store(e.into_store())),
        }
    }
    Err(OrderError::Contended)
}

/// Why the expiry sweep cancels an order.
pub const PAYMENT_WINDOW_EXPIRED: &str = "payment_window_expired";

/// Adds the return of each line's units to its product, for the products that still
/// exist (a deleted product's stock goes nowhere).
async fn restock(
    ctx: &AppContext,
    tx: &mut Transaction<Part>,
    order: &Order,
    now: &str,
) -> Result<(), OrderError> {
    let ids: Vec<ProductId> = order.lines.iter().map(|l| l.product_id.clone()).collect();
    let found = products::get_many(
        ctx.table.as_ref(),
        &order.tenant_id,
        &ids,
        Consistency::Strong,
    )
    .await?;
    for (n, (line, product)) in order.lines.iter().zip(found).enumerate() {
        if product.is_some() {
            tx.add(
                Part::Stock(n),
                products::return_stock(&order.tenant_id, &line.product_id, line.quantity, now),
            )?;
        }
    }
    Ok(())
}

/// What one expiry sweep did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Sweep {
    /// Orders cancelled and restocked.
    pub expired: usize,
    /// Entries of orders that had already moved on (paid or cancelled just before).
    pub settled: usize,
    /// Orders that could not be expired this time (they are tried again next sweep).
    pub failed: usize,
}

/// Cancels every order whose payment window has passed unpaid, across all shops, returning
/// its stock: reads each shard of the due index, oldest first. Each order is expired once,
/// however many sweeps run at the same time: the move is conditioned on its status.
#[tracing::instrument(skip_all)]
pub async fn expire_overdue(ctx: &AppContext) -> Result<Sweep, StoreError> {
    let table = ctx.table.as_ref();
    let now = ctx.clock.now().timestamp();
    let mut sweep = Sweep::default();
    for shard in orders::due_shards() {
        let mut after = None;
        loop {
            let page = table
                .query(orders::overdue(shard, now).after(after))
                .await?;
            for item in &page.items {
                let entry: Entry = item.record()?;
                match apply(
                    ctx,
                    Actor::System,
                    &entry.tenant_id,
                    &entry.order_id,
                    Action::Expire,
                )
                .await
                {
                    Ok(order) if order.status == OrderStatus::Cancelled => sweep.expired += 1,
                    Ok(_) | Err(OrderError::Illegal(_)) | Err(OrderError::NoSuchOrder) => {
                        sweep.settled += 1
                    }
                    Err(e) => {
                        tracing::warn!(order_id = %entry.order_id, error = %e, "order not expired; the next sweep tries again");
                        sweep.failed += 1;
                    }
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
    }
    if sweep.expired + sweep.failed > 0 {
        tracing::info!(
            expired = sweep.expired,
            failed = sweep.failed,
            "unpaid orders expired"
        );
    }
    Ok(sweep)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_of_the_most_lines_fits_one_transaction() {
        assert_eq!(FIXED_OPS, 7);
        assert_eq!(MAX_LINES + FIXED_OPS, MAX_TRANSACTION_OPS);
    }
}
