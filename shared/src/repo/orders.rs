//! A shop's orders, and the index entries each is found by.
//!
//! - order: `TENANT#<tid>#ORDER#<oid>` / `ORDER`, in `gsi1` under the customer's
//!   `TENANT#<tid>#USER#<customer>#ORDERS` with the order id (a ULID, time-sortable) as
//!   sort key: a customer's orders, newest first, are one index query.
//! - listing entry: the order's partition / `LISTING`, in `gsi1` under
//!   `TENANT#<tid>#ORDERS`: every order of the shop, for staff.
//! - status entry: the order's partition / `STATUS`, in `gsi1` under
//!   `TENANT#<tid>#ORDERS#<status>`, rewritten with each move: `?status=` is one query.
//! - due entry: the order's partition / `DUE`, while it awaits payment, in `gsi1` under
//!   `ORDERS_DUE#<shard>` sorted by `<payment due, epoch seconds>#<tenant>#<oid>`: the
//!   expiry sweep reads what is overdue, oldest first, across every shop, without a Scan.
//!
//! Every change of an order is conditioned on the version it read (and the status it
//! moves from), so two racing moves cannot both happen.

use serde::{Deserialize, Serialize};

use crate::domain::{Money, OrderId, OrderStatus, ProductId, TenantId};
use crate::repo::outbox::{shard_of, SHARDS};
use crate::store::{Condition, Index, Item, Key, Query, SortKey, StoreError, Table, TxOp};

const ORDER: &str = "ORDER";
const LISTING: &str = "LISTING";
const STATUS: &str = "STATUS";
const DUE: &str = "DUE";
const DUE_PREFIX: &str = "ORDERS_DUE#";

/// An order as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: OrderId,
    pub tenant_id: TenantId,
    /// Who placed it: a user id, or an API key id.
    pub customer_id: String,
    pub status: OrderStatus,
    pub lines: Vec<Line>,
    pub total: Money,
    pub created_at: String,
    pub updated_at: String,
    pub payment_due_by: String,
    /// `payment_due_by` in epoch seconds, as the due entry sorts it.
    pub payment_due_epoch: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund: Option<Refund>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<Payment>,
    /// The provider's last word on a failed payment attempt (the order stays unpaid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_failure: Option<String>,
    /// How many writes the order has had.
    pub version: u64,
}

/// One line of an order: what was sold, at the price of that moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub product_id: ProductId,
    pub sku: String,
    pub name: String,
    pub unit_price: Money,
    pub quantity: u32,
    pub line_total: Money,
}

/// A refund asked of the payment provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub status: RefundStatus,
    pub amount: Money,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Pending,
    Succeeded,
}

/// The provider's payment of an order, made once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub provider: String,
    pub payment_intent_id: String,
    /// What the customer's browser confirms the payment with (never card data); unknown
    /// for a payment first heard of through the provider's event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// What an index entry records: enough to fetch the order.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Entry {
    pub tenant_id: TenantId,
    pub order_id: OrderId,
    pub customer_id: String,
}

pub fn key(tenant_id: &str, order_id: &str) -> Key {
    Key::new(order_partition(tenant_id, order_id), ORDER)
}

fn order_partition(tenant_id: &str, order_id: &str) -> String {
    format!("TENANT#{tenant_id}#ORDER#{order_id}")
}

fn entry_key(order: &Order, sk: &str) -> Key {
    Key::new(order_partition(&order.tenant_id, &order.id), sk)
}

pub fn customer_partition(tenant_id: &str, customer_id: &str) -> String {
    format!("TENANT#{tenant_id}#USER#{customer_id}#ORDERS")
}

pub fn shop_partition(tenant_id: &str) -> String {
    format!("TENANT#{tenant_id}#ORDERS")
}

pub fn status_partition(tenant_id: &str, status: OrderStatus) -> String {
    format!("TENANT#{tenant_id}#ORDERS#{}", status.as_str())
}

fn due_partition(shard: u32) -> String {
    format!("{DUE_PREFIX}{shard}")
}

/// The due entry's sort key: epoch seconds fixed-width, so text order is time order.
fn due_sort(epoch: i64, tenant_id: &str, order_id: &str) -> String {
    format!("{:012}#{tenant_id}#{order_id}", epoch.max(0))
}

fn item(order: &Order) -> Result<Item, StoreError> {
    Ok(Item::new(&key(&order.tenant_id, &order.id))
        .with_record(order)?
        .with_gsi1(
            customer_partition(&order.tenant_id, &order.customer_id),
            order.id.as_str(),
        ))
}

fn entry(order: &Order) -> Entry {
    Entry {
        tenant_id: order.tenant_id.clone(),
        order_id: order.id.clone(),
        customer_id: order.customer_id.clone(),
    }
}

fn status_entry(order: &Order) -> Result<TxOp, StoreError> {
    Ok(TxOp::Put {
        item: Item::new(&entry_key(order, STATUS))
            .with_record(&entry(order))?
            .with_gsi1(
                status_partition(&order.tenant_id, order.status),
                order.id.as_str(),
            ),
        condition: None,
    })
}

/// The writes that place a new order: the order (refused if its id is taken), its listing,
/// status and due entries. Four operations: `crate::orders` counts them against the
/// transaction's hundred.
pub fn insert(order: &Order) -> Result<Vec<(&'static str, TxOp)>, StoreError> {
    let listing = Item::new(&entry_key(order, LISTING))
        .with_record(&entry(order))?
        .with_gsi1(shop_partition(&order.tenant_id), order.id.as_str());
    let due = Item::new(&entry_key(order, DUE))
        .with_record(&entry(order))?
        .with_gsi1(
            due_partition(shard_of(&order.tenant_id)),
            due_sort(order.payment_due_epoch, &order.tenant_id, &order.id),
        );
    Ok(vec![
        (
            THE_ORDER,
            TxOp::Put {
                item: item(order)?,
                condition: Some(Condition::NotExists),
            },
        ),
        (
            "the order's listing",
            TxOp::Put {
                item: listing,
                condition: Some(Condition::NotExists),
            },
        ),
        ("the order's status entry", status_entry(order)?),
        (
            "the order's due entry",
            TxOp::Put {
                item: due,
                condition: Some(Condition::NotExists),
            },
        ),
    ])
}

/// How many operations [`insert`] makes.
pub const INSERT_OPS: usize = 4;

/// The label of the order item's own write.
pub const THE_ORDER: &str = "the order";

/// The writes that store `order` as changed from `read` (the order as read, at its
/// version and status): the order, refused unless it is still as read; the status entry
/// when the status moved; the due entry dropped when it no longer awaits payment.
pub fn rewrite(order: &Order, read: &Order) -> Result<Vec<(&'static str, TxOp)>, StoreError> {
    let mut ops = vec![(
        THE_ORDER,
        TxOp::Put {
            item: item(order)?,
            condition: Some(Condition::And(vec![
                Condition::eq("version", read.version),
                Condition::eq("status", read.status.as_str()),
            ])),
        },
    )];
    if order.status != read.status {
        ops.push(("the order's status entry", status_entry(order)?));
    }
    if read.status == OrderStatus::PendingPayment && order.status != OrderStatus::PendingPayment {
        ops.push((
            "the order's due entry",
            TxOp::Delete {
                key: entry_key(order, DUE),
                condition: None,
            },
        ));
    }
    Ok(ops)
}

pub async fn get(
    table: &dyn Table,
    tenant_id: &str,
    order_id: &str,
) -> Result<Option<Order>, StoreError> {
    table
        .get(&key(tenant_id, order_id))
        .await?
        .map(|item| item.record())
        .transpose()
}

/// The orders of these ids, in the order given, leaving out any that are gone; one batch
/// read, eventually consistent (the ids come from an index, itself eventually consistent).
pub async fn get_many(
    table: &dyn Table,
    tenant_id: &str,
    order_ids: &[OrderId],
) -> Result<Vec<Order>, StoreError> {
    if order_ids.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<Key> = order_ids.iter().map(|id| key(tenant_id, id)).collect();
    table
        .get_many(&keys, crate::store::Consistency::Eventual)
        .await?
        .into_iter()
        .flatten()
        .map(|item| item.record())
        .collect()
}

/// A customer's orders, newest first (the orders themselves).
pub fn of_customer(tenant_id: &str, customer_id: &str) -> Query {
    Query::partition(Index::Gsi1, customer_partition(tenant_id, customer_id)).backward()
}

/// The shop's orders, newest first (their listing entries).
pub fn of_shop(tenant_id: &str) -> Query {
    Query::partition(Index::Gsi1, shop_partition(tenant_id)).backward()
}

/// The shop's orders of one status, newest first (their status entries).
pub fn with_status(tenant_id: &str, status: OrderStatus) -> Query {
    Query::partition(Index::Gsi1, status_partition(tenant_id, status)).backward()
}

/// The due entries of one shard whose payment was due at or before `now_epoch`, oldest
/// first.
pub fn overdue(shard: u32, now_epoch: i64) -> Query {
    Query::partition(Index::Gsi1, due_partition(shard))
        .sort(SortKey::Between(
            String::new(),
            format!("{:012}~", now_epoch.max(0)),
        ))
        .limit(100)
}

/// Every shard of the due entries.
pub fn due_shards() -> std::ops::Range<u32> {
    0..SHARDS
}

fn intent_key(payment_intent_id: &str) -> Key {
    Key::new(format!("PAYMENT_INTENT#{payment_intent_id}"), "INTENT")
}

/// Which order a provider's payment is for, written when the payment is made: an event
/// that carries no order id (a charge's) finds its order through it.
pub fn payment_of(order: &Order, payment_intent_id: &str) -> Result<TxOp, StoreError> {
    Ok(TxOp::Put {
        item: Item::new(&intent_key(payment_intent_id)).with_record(&entry(order))?,
        condition: None,
    })
}

/// The order a provider's payment is for.
pub async fn order_of_payment(
    table: &dyn Table,
    payment_intent_id: &str,
) -> Result<Option<Entry>, StoreError> {
    table
        .get(&intent_key(payment_intent_id))
        .await?
        .map(|item| item.record())
        .transpose()
}

/// How long a payment provider's event id is remembered: far longer than any provider
/// retries a webhook (Stripe: three days).
pub const PAYMENT_EVENT_RETENTION_S: i64 = 30 * 24 * 3600;

/// The label of a provider event's record in a transaction.
pub const THE_PAYMENT_EVENT: &str = "the payment event";

/// The record that a payment provider's event was applied, for the transaction of its
/// change: refused when the event was applied before, so it is applied once.
pub fn payment_event_applied(
    event_id: &str,
    order: &Order,
    now_epoch: i64,
) -> Result<TxOp, StoreError> {
    let item = Item::new(&Key::new(format!("PAYMENT_EVENT#{event_id}"), "EVENT"))
        .with_record(&entry(order))?
        .with_ttl(now_epoch + PAYMENT_EVENT_RETENTION_S);
    Ok(TxOp::Put {
        item,
        condition: Some(Condition::NotExists),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_entries_sort_by_time_whatever_the_number_of_digits() {
        let early = due_sort(999, "ten_b", "ord_2");
        let late = due_sort(1_000, "ten_a", "ord_1");
        assert!(early < late);
        let query = overdue(0, 1_000);
        assert!(query.sort.matches(&late));
        assert!(!query.sort.matches(&due_sort(1_001, "ten_a", "ord_1")));
    }
}
