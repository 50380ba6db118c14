//! The `Table` port: a single-table, partitioned key-value store in DynamoDB's shape.
//!
//! Items are flat JSON maps. Five attribute names are reserved and understood by every
//! adapter: `pk`/`sk` (the primary key), `gsi1pk`/`gsi1sk` (the one generic secondary index)
//! and `ttl` (epoch seconds after which the item reads as absent). Everything above this
//! module (repositories, the limiter, the idempotency store) speaks only these types; SDK
//! types and expression strings stay inside `dynamo.rs`.

pub mod dynamo;
pub mod embedded;
mod transaction;

pub use transaction::{Transaction, TransactionError};

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The attribute names with a meaning to the store itself.
pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const GSI1PK: &str = "gsi1pk";
pub const GSI1SK: &str = "gsi1sk";
pub const TTL: &str = "ttl";

/// DynamoDB's limit on the operations of one `TransactWriteItems` call.
pub const MAX_TRANSACTION_OPS: usize = 100;
/// The largest page a query may ask for.
pub const MAX_QUERY_LIMIT: usize = 1000;
/// DynamoDB's limit on the keys of one `BatchGetItem` call.
pub const MAX_GET_MANY: usize = 100;

/// The primary key of an item.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self {
            pk: pk.into(),
            sk: sk.into(),
        }
    }
}

/// One stored item: its key and attributes in a single flat map.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Item(Map<String, Value>);

impl Item {
    /// A new item holding only its key.
    pub fn new(key: &Key) -> Self {
        let mut map = Map::new();
        map.insert(PK.into(), Value::String(key.pk.clone()));
        map.insert(SK.into(), Value::String(key.sk.clone()));
        Self(map)
    }

    /// Builds an item from a map read back from an adapter; it must carry `pk` and `sk`.
    pub fn from_map(map: Map<String, Value>) -> Result<Self, StoreError> {
        let item = Self(map);
        item.key()?;
        Ok(item)
    }

    /// Adds every field of a serialisable record (a JSON object) to the item.
    pub fn with_record<T: Serialize>(mut self, record: &T) -> Result<Self, StoreError> {
        match serde_json::to_value(record) {
            Ok(Value::Object(fields)) => {
                for (name, value) in fields {
                    if is_reserved(&name) {
                        return Err(StoreError::Invalid(format!(
                            "record field `{name}` collides with a key attribute"
                        )));
                    }
                    self.0.insert(name, value);
                }
                Ok(self)
            }
            Ok(_) => Err(StoreError::Invalid(
                "a record must serialise to an object".into(),
            )),
            Err(e) => Err(StoreError::Invalid(format!(
                "record does not serialise: {e}"
            ))),
        }
    }

    /// Sets one attribute.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.0.insert(name.to_owned(), value.into());
        self
    }

    /// Places the item in the secondary index under `gsi1pk`/`gsi1sk`.
    pub fn with_gsi1(self, pk: impl Into<String>, sk: impl Into<String>) -> Self {
        self.with(GSI1PK, pk.into()).with(GSI1SK, sk.into())
    }

    /// Makes the item expire at `epoch_seconds`.
    pub fn with_ttl(self, epoch_seconds: i64) -> Self {
        self.with(TTL, epoch_seconds)
    }

    pub fn key(&self) -> Result<Key, StoreError> {
        match (self.get_str(PK), self.get_str(SK)) {
            (Some(pk), Some(sk)) if !pk.is_empty() && !sk.is_empty() => Ok(Key::new(pk, sk)),
            _ => Err(StoreError::Invalid(
                "an item needs non-empty string `pk` and `sk`".into(),
            )),
        }
    }

    /// The item's secondary-index key, when it has both halves.
    pub fn gsi1(&self) -> Option<Key> {
        match (self.get_str(GSI1PK), self.get_str(GSI1SK)) {
            (Some(pk), Some(sk)) => Some(Key::new(pk, sk)),
            _ => None,
        }
    }

    /// Where a query of `index` that stopped at this item goes on from: the item's table
    /// key plus its key in the index.
    pub fn position(&self, index: Index) -> Position {
        let mut names = vec![PK, SK];
        if index == Index::Gsi1 {
            names.extend([GSI1PK, GSI1SK]);
        }
        Position(
            names
                .into_iter()
                .filter_map(|n| self.get_str(n).map(|v| (n.to_owned(), v.to_owned())))
                .collect(),
        )
    }

    pub fn ttl(&self) -> Option<i64> {
        self.get_i64(TTL)
    }

    /// Whether the item's `ttl` has passed at `now` (epoch seconds).
    pub fn is_expired(&self, now: i64) -> bool {
        self.ttl().is_some_and(|ttl| ttl <= now)
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name)
    }

    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    pub fn get_i64(&self, name: &str) -> Option<i64> {
        self.0.get(name).and_then(Value::as_i64)
    }

    pub fn attrs(&self) -> &Map<String, Value> {
        &self.0
    }

    pub fn into_attrs(self) -> Map<String, Value> {
        self.0
    }

    /// Reads the item's non-key attributes back into a record type.
    pub fn record<T: serde::de::DeserializeOwned>(&self) -> Result<T, StoreError> {
        let fields: Map<String, Value> = self
            .0
            .iter()
            .filter(|(name, _)| !is_reserved(name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        serde_json::from_value(Value::Object(fields))
            .map_err(|e| StoreError::Backend(anyhow::anyhow!("stored item does not decode: {e}")))
    }
}

/// Whether an attribute name belongs to the store rather than to a record.
pub fn is_reserved(name: &str) -> bool {
    matches!(name, PK | SK | GSI1PK | GSI1SK | TTL)
}

/// A condition a write must satisfy against the item as it is before the write.
#[derive(Clone, Debug, PartialEq)]
pub enum Condition {
    /// The item exists.
    Exists,
    /// No item has this key.
    NotExists,
    AttrExists(String),
    AttrNotExists(String),
    Eq(String, Value),
    Ne(String, Value),
    Lt(String, Value),
    Le(String, Value),
    Gt(String, Value),
    Ge(String, Value),
    And(Vec<Condition>),
    Or(Vec<Condition>),
    Not(Box<Condition>),
}

impl Condition {
    pub fn eq(name: &str, value: impl Into<Value>) -> Self {
        Self::Eq(name.into(), value.into())
    }
    pub fn ge(name: &str, value: impl Into<Value>) -> Self {
        Self::Ge(name.into(), value.into())
    }
    pub fn lt(name: &str, value: impl Into<Value>) -> Self {
        Self::Lt(name.into(), value.into())
    }

    /// Evaluates the condition against the current item (`None` when absent), with
    /// DynamoDB's semantics: a comparison with a missing attribute or an attribute of
    /// another type is false.
    pub fn holds(&self, item: Option<&Item>) -> bool {
        let attr = |name: &str| item.and_then(|i| i.get(name));
        match self {
            Self::Exists => item.is_some(),
            Self::NotExists => item.is_none(),
            Self::AttrExists(n) => attr(n).is_some(),
            Self::AttrNotExists(n) => attr(n).is_none(),
            Self::Eq(n, v) => {
                attr(n).is_some_and(|a| compare(a, v) == Some(std::cmp::Ordering::Equal))
            }
            // DynamoDB's `<>` is true for a missing attribute.
            Self::Ne(n, v) => {
                attr(n).is_none_or(|a| compare(a, v) != Some(std::cmp::Ordering::Equal))
            }
            Self::Lt(n, v) => attr(n)
                .and_then(|a| compare(a, v))
                .is_some_and(|o| o.is_lt()),
            Self::Le(n, v) => attr(n)
                .and_then(|a| compare(a, v))
                .is_some_and(|o| o.is_le()),
            Self::Gt(n, v) => attr(n)
                .and_then(|a| compare(a, v))
                .is_some_and(|o| o.is_gt()),
            Self::Ge(n, v) => attr(n)
                .and_then(|a| compare(a, v))
                .is_some_and(|o| o.is_ge()),
            Self::And(all) => all.iter().all(|c| c.holds(item)),
            Self::Or(any) => any.iter().any(|c| c.holds(item)),
            Self::Not(c) => !c.holds(item),
        }
    }
}

/// Orders two values the way DynamoDB does: numbers numerically, strings by bytes,
/// booleans and other equal types only for equality; different types do not compare.
fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(x), Some(y)) => Some(x.cmp(&y)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Value::String(x), Value::String(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (x, y) if std::mem::discriminant(x) == std::mem::discriminant(y) => {
            (x == y).then_some(std::cmp::Ordering::Equal)
        }
        _ => None,
    }
}

/// One change an update makes to an item.
#[derive(Clone, Debug, PartialEq)]
pub enum UpdateOp {
    /// Sets an attribute.
    Set(String, Value),
    /// Adds to a numeric attribute, treating a missing one as 0 (DynamoDB's `ADD`).
    Add(String, i64),
    /// Removes an attribute.
    Remove(String),
}

impl UpdateOp {
    pub fn set(name: &str, value: impl Into<Value>) -> Self {
        Self::Set(name.into(), value.into())
    }
    pub fn add(name: &str, by: i64) -> Self {
        Self::Add(name.into(), by)
    }
    pub fn remove(name: &str) -> Self {
        Self::Remove(name.into())
    }
}

/// Applies update operations to an item in memory (the embedded adapter's update, and the
/// reference semantics the DynamoDB adapter's conformance run is held to).
pub fn apply_updates(item: &mut Item, ops: &[UpdateOp]) -> Result<(), StoreError> {
    for op in ops {
        match op {
            UpdateOp::Set(name, _) | UpdateOp::Add(name, _) | UpdateOp::Remove(name)
                if name == PK || name == SK =>
            {
                return Err(StoreError::Invalid(format!(
                    "cannot update key attribute `{name}`"
                )));
            }
            UpdateOp::Set(name, value) => {
                item.0.insert(name.clone(), value.clone());
            }
            UpdateOp::Add(name, by) => {
                let current = match item.0.get(name) {
                    None => 0,
                    Some(v) => v.as_i64().ok_or_else(|| {
                        StoreError::Invalid(format!("cannot add to non-integer attribute `{name}`"))
                    })?,
                };
                let next = current
                    .checked_add(*by)
                    .ok_or_else(|| StoreError::Invalid(format!("adding to `{name}` overflows")))?;
                item.0.insert(name.clone(), Value::from(next));
            }
            UpdateOp::Remove(name) => {
                item.0.remove(name);
            }
        }
    }
    Ok(())
}

/// Which index a query reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Index {
    /// The table itself: partition `pk`, sort `sk`.
    Primary,
    /// The generic secondary index: partition `gsi1pk`, sort `gsi1sk`.
    Gsi1,
}

impl Index {
    pub fn key_names(self) -> (&'static str, &'static str) {
        match self {
            Self::Primary => (PK, SK),
            Self::Gsi1 => (GSI1PK, GSI1SK),
        }
    }
}

/// A condition on the sort key of a query.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SortKey {
    Any,
    Eq(String),
    BeginsWith(String),
    /// Inclusive at both ends, as DynamoDB's `BETWEEN`.
    Between(String, String),
}

impl SortKey {
    pub fn matches(&self, sk: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Eq(v) => sk == v,
            Self::BeginsWith(p) => sk.starts_with(p.as_str()),
            Self::Between(lo, hi) => lo.as_str() <= sk && sk <= hi.as_str(),
        }
    }
}

/// Where a previous page stopped: the key attributes of its last item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Position(pub BTreeMap<String, String>);

/// A query over one partition of an index.
#[derive(Clone, Debug, PartialEq)]
pub struct Query {
    pub index: Index,
    pub partition: String,
    pub sort: SortKey,
    /// Ascending sort-key order when true.
    pub forward: bool,
    pub limit: usize,
    pub after: Option<Position>,
}

impl Query {
    /// All items of a partition in ascending order, twenty at a time.
    pub fn partition(index: Index, partition: impl Into<String>) -> Self {
        Self {
            index,
            partition: partition.into(),
            sort: SortKey::Any,
            forward: true,
            limit: 20,
            after: None,
        }
    }
    pub fn sort(mut self, sort: SortKey) -> Self {
        self.sort = sort;
        self
    }
    pub fn backward(mut self) -> Self {
        self.forward = false;
        self
    }
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
    pub fn after(mut self, after: Option<Position>) -> Self {
        self.after = after;
        self
    }

    pub(crate) fn validate(&self) -> Result<(), StoreError> {
        if self.partition.is_empty() {
            return Err(StoreError::Invalid("a query needs a partition".into()));
        }
        if self.limit == 0 || self.limit > MAX_QUERY_LIMIT {
            return Err(StoreError::Invalid(format!(
                "query limit must be 1..={MAX_QUERY_LIMIT}"
            )));
        }
        Ok(())
    }
}

/// One page of a query.
#[derive(Clone, Debug, PartialEq)]
pub struct Page {
    pub items: Vec<Item>,
    /// Present when more items may follow.
    pub next: Option<Position>,
}

/// One write of an all-or-nothing transaction.
#[derive(Clone, Debug, PartialEq)]
pub enum TxOp {
    Put {
        item: Item,
        condition: Option<Condition>,
    },
    Update {
        key: Key,
        ops: Vec<UpdateOp>,
        condition: Option<Condition>,
    },
    Delete {
        key: Key,
        condition: Option<Condition>,
    },
    /// Writes nothing; the transaction fails unless the condition holds.
    Check { key: Key, condition: Condition },
}

impl TxOp {
    pub fn key(&self) -> Result<Key, StoreError> {
        match self {
            Self::Put { item, .. } => item.key(),
            Self::Update { key, .. } | Self::Delete { key, .. } | Self::Check { key, .. } => {
                Ok(key.clone())
            }
        }
    }
}

/// Checks the rules DynamoDB enforces on a transaction before any adapter runs it.
pub(crate) fn validate_transaction(ops: &[TxOp]) -> Result<(), StoreError> {
    if ops.is_empty() || ops.len() > MAX_TRANSACTION_OPS {
        return Err(StoreError::Invalid(format!(
            "a transaction holds 1..={MAX_TRANSACTION_OPS} operations, not {}",
            ops.len()
        )));
    }
    let mut seen = std::collections::HashSet::new();
    for op in ops {
        if !seen.insert(op.key()?) {
            return Err(StoreError::Invalid(
                "a transaction cannot touch one item twice".into(),
            ));
        }
    }
    Ok(())
}

/// Checks a `get_many` request: 1 to [`MAX_GET_MANY`] keys.
pub(crate) fn validate_get_many(keys: &[Key]) -> Result<(), StoreError> {
    if keys.is_empty() || keys.len() > MAX_GET_MANY {
        return Err(StoreError::Invalid(format!(
            "a batch read takes 1..={MAX_GET_MANY} keys, not {}",
            keys.len()
        )));
    }
    Ok(())
}

/// How fresh a batch read must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// It may miss writes of the last second or so (DynamoDB's default, at half the cost).
    Eventual,
    /// It sees every write acknowledged before it.
    Strong,
}

/// What can go wrong with a table operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A write's condition did not hold. In a transaction, `op` is the index of the
    /// operation whose condition failed, when the backend says.
    #[error("condition failed{}", .op.map(|i| format!(" on operation {i}")).unwrap_or_default())]
    ConditionFailed { op: Option<usize> },
    /// Another transaction touched the same items at the same time; safe to retry.
    #[error("conflicting concurrent transaction")]
    Conflict,
    /// The request itself is malformed (a bug in the caller, never user input).
    #[error("invalid store request: {0}")]
    Invalid(String),
    /// The backend is throttling or cannot be reached: passing, worth a retry later.
    #[error("store unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] anyhow::Error),
}

impl StoreError {
    pub fn is_condition_failed(&self) -> bool {
        matches!(self, Self::ConditionFailed { .. })
    }
}

/// The single-table store.
#[async_trait]
pub trait Table: Send + Sync {
    /// Reads one item; an expired item reads as absent.
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError>;
    /// Writes a whole item, replacing any item with its key.
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError>;
    /// Changes attributes in place, creating the item if absent, and returns it as it is after.
    async fn update(
        &self,
        key: &Key,
        ops: Vec<UpdateOp>,
        condition: Option<Condition>,
    ) -> Result<Item, StoreError>;
    /// Deletes an item and returns it as it was, if it existed.
    async fn delete(
        &self,
        key: &Key,
        condition: Option<Condition>,
    ) -> Result<Option<Item>, StoreError>;
    /// Reads up to [`MAX_GET_MANY`] items at once (one `BatchGetItem`), answering in the
    /// order of `keys`; an absent or expired item is `None`. A key may repeat. On DynamoDB
    /// an [`Consistency::Eventual`] read costs half a strong one: right for pages of what
    /// an index, itself eventually consistent, found; a read a write will rely on (an
    /// order's prices) asks for [`Consistency::Strong`].
    async fn get_many(
        &self,
        keys: &[Key],
        consistency: Consistency,
    ) -> Result<Vec<Option<Item>>, StoreError>;
    /// Reads a page of one partition of an index, in sort-key order.
    async fn query(&self, query: Query) -> Result<Page, StoreError>;
    /// Applies every operation or none of them.
    async fn transact(&self, ops: Vec<TxOp>) -> Result<(), StoreError>;

    /// Makes one write on its own, as the plain request for it rather than a transaction
    /// (which DynamoDB bills at twice the capacity).
    async fn write(&self, op: TxOp) -> Result<(), StoreError> {
        match op {
            TxOp::Put { item, condition } => self.put(item, condition).await,
            TxOp::Update {
                key,
                ops,
                condition,
            } => self.update(&key, ops, condition).await.map(|_| ()),
            TxOp::Delete { key, condition } => self.delete(&key, condition).await.map(|_| ()),
            TxOp::Check { .. } => Err(StoreError::Invalid(
                "a condition check writes nothing on its own".into(),
            )),
        }
    }
}
