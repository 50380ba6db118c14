//! The DynamoDB `Table` adapter: the single table on AWS, held to the embedded adapter's semantics.
//!
//! Every expression is written with placeholders (`#n0` for names, `:v0` for values), so no
//! attribute name or value is ever spliced into expression text.
//!
//! DynamoDB deletes expired items lazily, days after their `ttl`
//! (<https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/howitworks-ttl.html>),
//! so this adapter makes an expired item behave as absent itself: reads drop it, every
//! condition sees it as absent, and an update replaces it rather than amending its stale
//! attributes (the update is guarded, and on failure the expired item is deleted and the
//! update run again).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use aws_sdk_dynamodb::client::Waiters as _;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, Put, ReturnValue,
    ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem, Update,
};
use aws_sdk_dynamodb::Client;
use serde_dynamo::aws_sdk_dynamodb_1 as codec;
use serde_json::{Map, Value};

use super::embedded::position_of;
use super::{
    validate_get_many, validate_transaction, Condition, Consistency, Index, Item, Key, Page,
    Position, Query, SortKey, StoreError, Table, TxOp, UpdateOp, GSI1PK, GSI1SK, PK, SK, TTL,
};
use crate::clock::Clock;

/// The name of the generic secondary index on `gsi1pk`/`gsi1sk`.
const GSI1_INDEX: &str = "gsi1";
/// How many times a batch read asks again for the keys DynamoDB left unprocessed (it does
/// under throttling), backing off between rounds, before it gives up as unavailable.
const BATCH_GET_ROUNDS: u32 = 6;
/// How long `create_table` waits for a new table to become active.
const CREATE_WAIT: Duration = Duration::from_secs(120);

/// An item, key or cursor as DynamoDB's attribute map.
type Attrs = HashMap<String, AttributeValue>;

/// The single table on DynamoDB.
#[derive(Clone)]
pub struct DynamoTable {
    client: Client,
    table: String,
    clock: Arc<dyn Clock>,
}

impl DynamoTable {
    pub fn new(client: Client, table_name: impl Into<String>, clock: Arc<dyn Clock>) -> Self {
        Self {
            client,
            table: table_name.into(),
            clock,
        }
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp()
    }
}

/// The names and values one request's expressions refer to, by placeholder.
struct Expr {
    /// The time (epoch seconds) against which `ttl` is compared.
    now: i64,
    names: HashMap<String, String>,
    values: Attrs,
}

impl Expr {
    fn new(now: i64) -> Self {
        Self {
            now,
            names: HashMap::new(),
            values: HashMap::new(),
        }
    }

    /// The placeholder of an attribute name, reused when the name recurs.
    fn name(&mut self, name: &str) -> String {
        if let Some((placeholder, _)) = self.names.iter().find(|(_, n)| n.as_str() == name) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.names.len());
        self.names.insert(placeholder.clone(), name.to_owned());
        placeholder
    }

    fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    fn string(&mut self, value: &str) -> String {
        self.value(AttributeValue::S(value.to_owned()))
    }

    fn number(&mut self, value: i64) -> String {
        self.value(AttributeValue::N(value.to_string()))
    }

    fn json(&mut self, value: &Value) -> Result<String, StoreError> {
        Ok(self.value(to_attribute(value)?))
    }

    fn function(&mut self, function: &str, name: &str) -> String {
        format!("{function}({})", self.name(name))
    }

    fn compare(&mut self, name: &str, operator: &str, value: &Value) -> Result<String, StoreError> {
        Ok(format!(
            "{} {operator} {}",
            self.name(name),
            self.json(value)?
        ))
    }

    fn condition(&mut self, condition: &Condition) -> Result<String, StoreError> {
        Ok(match condition {
            Condition::Exists => self.function("attribute_exists", PK),
            Condition::NotExists => self.function("attribute_not_exists", PK),
            Condition::AttrExists(name) => self.function("attribute_exists", name),
            Condition::AttrNotExists(name) => self.function("attribute_not_exists", name),
            Condition::Eq(name, value) => self.compare(name, "=", value)?,
            // `<>` is true for a missing attribute, as `Condition::holds` requires.
            Condition::Ne(name, value) => self.compare(name, "<>", value)?,
            Condition::Lt(name, value) => self.compare(name, "<", value)?,
            Condition::Le(name, value) => self.compare(name, "<=", value)?,
            Condition::Gt(name, value) => self.compare(name, ">", value)?,
            Condition::Ge(name, value) => self.compare(name, ">=", value)?,
            Condition::And(all) => self.joined(all, "AND")?,
            Condition::Or(any) => self.joined(any, "OR")?,
            Condition::Not(inner) => format!("NOT ({})", self.condition(inner)?),
        })
    }

    /// Joins conditions with `AND` or `OR`. DynamoDB has no literal for an empty list's
    /// value (true for `AND`, false for `OR`), so it is spelled as a tautology or a
    /// contradiction about the partition key.
    fn joined(&mut self, parts: &[Condition], operator: &str) -> Result<String, StoreError> {
        if parts.is_empty() {
            let exists = self.function("attribute_exists", PK);
            let absent = self.function("attribute_not_exists", PK);
            let join = if operator == "AND" { "OR" } else { "AND" };
            return Ok(format!("({exists} {join} {absent})"));
        }
        // One part needs no parentheses, and DynamoDB refuses an expression that is wholly
        // in them ("redundant parentheses").
        if let [only] = parts {
            return self.condition(only);
        }
        let rendered = parts
            .iter()
            .map(|part| self.condition(part).map(|c| format!("({c})")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rendered.join(&format!(" {operator} ")))
    }

    /// True when the item's `ttl` has passed; only a number compares, so an item without
    /// a numeric `ttl` never matches.
    fn expired(&mut self) -> String {
        let now = self.now;
        format!("{} <= {}", self.name(TTL), self.number(now))
    }

    /// A put's, delete's or check's condition, made to see an expired item as absent.
    fn guard(&mut self, condition: Option<&Condition>) -> Result<Option<String>, StoreError> {
        let Some(condition) = condition else {
            return Ok(None);
        };
        let rendered = self.condition(condition)?;
        let expired = self.expired();
        Ok(Some(if condition.holds(None) {
            format!("({rendered}) OR ({expired})")
        } else {
            format!("({rendered}) AND NOT ({expired})")
        }))
    }

    /// An update's condition: it also requires the item to be live or absent, because an
    /// update of an expired item would keep its stale attributes (see `purging`).
    fn guard_update(&mut self, condition: Option<&Condition>) -> Result<String, StoreError> {
        let live = format!("NOT ({})", self.expired());
        Ok(match condition {
            Some(condition) => format!("({}) AND {live}", self.condition(condition)?),
            None => live,
        })
    }

    /// The `UpdateExpression` of some changes, or `None` when there are none.
    fn updates(&mut self, ops: &[UpdateOp]) -> Result<Option<String>, StoreError> {
        check_updates(ops)?;
        let (mut set, mut add, mut remove) = (Vec::new(), Vec::new(), Vec::new());
        for op in ops {
            match op {
                UpdateOp::Set(name, value) => {
                    set.push(format!("{} = {}", self.name(name), self.json(value)?))
                }
                UpdateOp::Add(name, by) => {
                    add.push(format!("{} {}", self.name(name), self.number(*by)))
                }
                UpdateOp::Remove(name) => remove.push(self.name(name)),
            }
        }
        let clauses: Vec<String> = [("SET", set), ("ADD", add), ("REMOVE", remove)]
            .into_iter()
            .filter(|(_, parts)| !parts.is_empty())
            .map(|(keyword, parts)| format!("{keyword} {}", parts.join(", ")))
            .collect();
        Ok((!clauses.is_empty()).then(|| clauses.join(" ")))
    }

    /// The `KeyConditionExpression` of a query whose sort condition can match something.
    fn key_condition(&mut self, query: &Query) -> String {
        let (pk, sk) = query.index.key_names();
        let partition = format!("{} = {}", self.name(pk), self.string(&query.partition));
        let sort = match &query.sort {
            SortKey::Any => return partition,
            SortKey::BeginsWith(prefix) if prefix.is_empty() => return partition,
            SortKey::Eq(value) => format!("{} = {}", self.name(sk), self.string(value)),
            SortKey::BeginsWith(prefix) => {
                format!("begins_with({}, {})", self.name(sk), self.string(prefix))
            }
            // A key value cannot be the empty string, so an open lower bound is spelled `<=`.
            SortKey::Between(low, high) if low.is_empty() => {
                format!("{} <= {}", self.name(sk), self.string(high))
            }
            SortKey::Between(low, high) => format!(
                "{} BETWEEN {} AND {}",
                self.name(sk),
                self.string(low),
                self.string(high)
            ),
        };
        format!("{partition} AND {sort}")
    }

    /// Finishes a write: its item or key, its expressions and the placeholders they use.
    /// An empty placeholder map must be left out, not sent empty.
    fn finish(self, attrs: Attrs, update: Option<String>, condition: Option<String>) -> Rendered {
        Rendered {
            attrs,
            update,
            condition,
            names: (!self.names.is_empty()).then_some(self.names),
            values: (!self.values.is_empty()).then_some(self.values),
        }
    }
}

/// Refuses what DynamoDB would reject in an update, as the embedded adapter does.
fn check_updates(ops: &[UpdateOp]) -> Result<(), StoreError> {
    let mut seen = std::collections::HashSet::new();
    for op in ops {
        let (UpdateOp::Set(name, _) | UpdateOp::Add(name, _) | UpdateOp::Remove(name)) = op;
        if name == PK || name == SK {
            return Err(StoreError::Invalid(format!(
                "cannot update key attribute `{name}`"
            )));
        }
        // DynamoDB refuses overlapping paths in one update expression.
        if !seen.insert(name.as_str()) {
            return Err(StoreError::Invalid(format!(
                "DynamoDB cannot change attribute `{name}` twice in one update"
            )));
        }
    }
    Ok(())
}

/// Sort conditions DynamoDB would reject rather than answer with nothing: a key value
/// cannot be empty, and `BETWEEN` needs its bounds in order.
fn matches_nothing(sort: &SortKey) -> bool {
    match sort {
        SortKey::Eq(value) => value.is_empty(),
        SortKey::Between(low, high) => high.is_empty() || low > high,
        SortKey::Any | SortKey::BeginsWith(_) => false,
    }
}

/// One write ready for a request builder.
struct Rendered {
    attrs: Attrs,
    update: Option<String>,
    condition: Option<String>,
    names: Option<HashMap<String, String>>,
    values: Option<Attrs>,
}

/// Renders a write with `now` as the time its item would expire against.
fn render(op: &TxOp, now: i64) -> Result<Rendered, StoreError> {
    let mut expr = Expr::new(now);
    let (attrs, update, condition) = match op {
        TxOp::Put { item, condition } => (to_attrs(item)?, None, expr.guard(condition.as_ref())?),
        TxOp::Update {
            key,
            ops,
            condition,
        } => {
            let update = expr.updates(ops)?;
            (
                key_attrs(key),
                update,
                Some(expr.guard_update(condition.as_ref())?),
            )
        }
        TxOp::Delete { key, condition } => (key_attrs(key), None, expr.guard(condition.as_ref())?),
        TxOp::Check { key, condition } => (key_attrs(key), None, expr.guard(Some(condition))?),
    };
    Ok(expr.finish(attrs, update, condition))
}

/// Sets a rendered write's condition and placeholders on any of the SDK's request
/// builders, which share these setters but no trait.
macro_rules! with_expressions {
    ($builder:expr, $rendered:expr) => {
        $builder
            .set_condition_expression($rendered.condition)
            .set_expression_attribute_names($rendered.names)
            .set_expression_attribute_values($rendered.values)
    };
}

fn to_attribute(value: &Value) -> Result<AttributeValue, StoreError> {
    codec::to_attribute_value(value)
        .map_err(|e| StoreError::Invalid(format!("value does not encode for DynamoDB: {e}")))
}

fn to_attrs(item: &Item) -> Result<Attrs, StoreError> {
    codec::to_item(item.attrs())
        .map_err(|e| StoreError::Invalid(format!("item does not encode for DynamoDB: {e}")))
}

fn from_attrs(attrs: Attrs) -> Result<Item, StoreError> {
    let map: Map<String, Value> = codec::from_item(attrs)
        .map_err(|e| StoreError::Backend(anyhow::anyhow!("stored item does not decode: {e}")))?;
    Item::from_map(map)
}

fn key_attrs(key: &Key) -> Attrs {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(key.pk.clone())),
        (SK.to_owned(), AttributeValue::S(key.sk.clone())),
    ])
}

/// The `ExclusiveStartKey` of a cursor: the key attributes of the index it was taken from.
fn start_key(after: Option<&Position>, index: Index) -> Result<Option<Attrs>, StoreError> {
    let Some(position) = after else {
        return Ok(None);
    };
    let names: &[&str] = match index {
        Index::Primary => &[PK, SK],
        Index::Gsi1 => &[PK, SK, GSI1PK, GSI1SK],
    };
    names
        .iter()
        .map(|name| match position.0.get(*name) {
            Some(value) => Ok(((*name).to_owned(), AttributeValue::S(value.clone()))),
            None => Err(StoreError::Invalid(format!("query cursor lacks `{name}`"))),
        })
        .collect::<Result<Attrs, _>>()
        .map(Some)
}

fn page(items: Vec<Item>, more: bool, index: Index) -> Page {
    let next = if more {
        items.last().map(|last| position_of(last, index))
    } else {
        None
    };
    Page { items, next }
}

/// The key of an update that may have failed only because an expired item holds its key:
/// such an item reads as absent, and this update's condition holds for an absent item.
fn purgeable(op: &TxOp) -> Option<&Key> {
    match op {
        TxOp::Update { key, condition, .. } if condition.as_ref().is_none_or(|c| c.holds(None)) => {
            Some(key)
        }
        _ => None,
    }
}

/// Maps an SDK failure: throttling and an unreachable or slow endpoint are passing
/// (`Unavailable`, a 503 the client may retry); anything else is `Backend` (a 500).
fn backend<E>(err: SdkError<E>, operation: &str, table: &str) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let throttled = matches!(
        err.code(),
        Some(
            "ProvisionedThroughputExceededException"
                | "ThrottlingException"
                | "RequestLimitExceeded"
        )
    );
    let unreachable = matches!(
        err,
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)
    );
    let error = anyhow::Error::new(err).context(format!("DynamoDB {operation} on table {table}"));
    if throttled || unreachable {
        StoreError::Unavailable(error)
    } else {
        StoreError::Backend(error)
    }
}

/// Maps a write's error: a failed condition and a clash with a running transaction are
/// the caller's to handle; anything else is the backend's.
fn write_error<E>(err: SdkError<E>, operation: &str, table: &str) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match err.code() {
        Some("ConditionalCheckFailedException") => StoreError::ConditionFailed { op: None },
        Some("TransactionConflictException") => StoreError::Conflict,
        _ => backend(err, operation, table),
    }
}

/// Maps a failed transaction: the first failed condition names its operation, and a
/// clash with another transaction is retryable
/// (<https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_TransactWriteItems.html>).
fn transaction_error(err: SdkError<TransactWriteItemsError>, table: &str) -> StoreError {
    if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
        err.as_service_error()
    {
        let codes: Vec<&str> = cancelled
            .cancellation_reasons()
            .iter()
            .map(|reason| reason.code().unwrap_or("None"))
            .collect();
        if let Some(op) = codes
            .iter()
            .position(|code| *code == "ConditionalCheckFailed")
        {
            return StoreError::ConditionFailed { op: Some(op) };
        }
        if codes.contains(&"TransactionConflict") {
            return StoreError::Conflict;
        }
    }
    write_error(err, "TransactWriteItems", table)
}

impl DynamoTable {
    /// Runs a write; when it fails only because an expired item still holds a key it
    /// updates, deletes that item and runs the write again, at most `purges` times.
    async fn purging<T, W, F>(
        &self,
        mut purges: usize,
        mut write: W,
        stale: impl Fn(&StoreError) -> Option<Key> + Send,
    ) -> Result<T, StoreError>
    where
        W: FnMut() -> F + Send,
        F: Future<Output = Result<T, StoreError>> + Send,
        T: Send,
    {
        loop {
            let err = match write().await {
                Ok(done) => return Ok(done),
                Err(err) => err,
            };
            let key = match stale(&err) {
                Some(key) if purges > 0 => key,
                _ => return Err(err),
            };
            if !self.purge_expired(&key).await? {
                return Err(err);
            }
            purges -= 1;
        }
    }

    /// Deletes the item under `key` if it has expired, and says whether it did.
    async fn purge_expired(&self, key: &Key) -> Result<bool, StoreError> {
        let mut expr = Expr::new(self.now());
        let expired = expr.expired();
        let rendered = expr.finish(key_attrs(key), None, Some(expired));
        let request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(rendered.attrs));
        let result = with_expressions!(request, rendered).send().await;
        match result.map_err(|e| write_error(e, "DeleteItem (expired item)", &self.table)) {
            Ok(_) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(err) => Err(err),
        }
    }

    async fn update_once(&self, op: &TxOp) -> Result<Item, StoreError> {
        let rendered = render(op, self.now())?;
        let request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(rendered.attrs))
            .set_update_expression(rendered.update)
            .return_values(ReturnValue::AllNew);
        let output = with_expressions!(request, rendered)
            .send()
            .await
            .map_err(|e| write_error(e, "UpdateItem", &self.table))?;
        let attrs = output.attributes.with_context(|| {
            format!(
                "DynamoDB UpdateItem on table {} returned no item",
                self.table
            )
        })?;
        from_attrs(attrs)
    }

    /// One `Query` request: up to `limit` items from `start`, and where the next would begin.
    async fn query_once(
        &self,
        query: &Query,
        limit: usize,
        start: Option<Attrs>,
    ) -> Result<(Vec<Item>, Option<Attrs>), StoreError> {
        let mut expr = Expr::new(self.now());
        let key_condition = expr.key_condition(query);
        let rendered = expr.finish(HashMap::new(), None, None);
        let output = self
            .client
            .query()
            .table_name(&self.table)
            .set_index_name((query.index == Index::Gsi1).then(|| GSI1_INDEX.to_owned()))
            // Secondary indexes only offer eventually consistent reads.
            .consistent_read(query.index == Index::Primary)
            .key_condition_expression(key_condition)
            .set_expression_attribute_names(rendered.names)
            .set_expression_attribute_values(rendered.values)
            .scan_index_forward(query.forward)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .set_exclusive_start_key(start)
            .send()
            .await
            .map_err(|e| backend(e, "Query", &self.table))?;
        let items = output
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_attrs)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((
            items,
            output.last_evaluated_key.filter(|key| !key.is_empty()),
        ))
    }

    fn transact_item(&self, op: &TxOp, now: i64) -> Result<TransactWriteItem, StoreError> {
        let rendered = render(op, now)?;
        let table = self.table.clone();
        let item = TransactWriteItem::builder();
        let built = match op {
            TxOp::Put { .. } => with_expressions!(
                Put::builder()
                    .table_name(table)
                    .set_item(Some(rendered.attrs)),
                rendered
            )
            .build()
            .map(|put| item.put(put)),
            TxOp::Update { .. } => {
                if rendered.update.is_none() {
                    return Err(StoreError::Invalid(
                        "an update in a transaction needs at least one change".into(),
                    ));
                }
                let update = Update::builder()
                    .table_name(table)
                    .set_key(Some(rendered.attrs))
                    .set_update_expression(rendered.update);
                with_expressions!(update, rendered)
                    .build()
                    .map(|update| item.update(update))
            }
            TxOp::Delete { .. } => with_expressions!(
                Delete::builder()
                    .table_name(table)
                    .set_key(Some(rendered.attrs)),
                rendered
            )
            .build()
            .map(|delete| item.delete(delete)),
            TxOp::Check { .. } => {
                let check = ConditionCheck::builder()
                    .table_name(table)
                    .set_key(Some(rendered.attrs));
                with_expressions!(check, rendered)
                    .build()
                    .map(|check| item.condition_check(check))
            }
        };
        built
            .map(|item| item.build())
            .map_err(|e| StoreError::Invalid(format!("transaction operation does not build: {e}")))
    }

    async fn transact_once(&self, ops: &[TxOp]) -> Result<(), StoreError> {
        let now = self.now();
        let items = ops
            .iter()
            .map(|op| self.transact_item(op, now))
            .collect::<Result<Vec<_>, _>>()?;
        self.client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
            .map_err(|e| transaction_error(e, &self.table))?;
        Ok(())
    }
}

#[async_trait]
impl Table for DynamoTable {
    #[tracing::instrument(skip_all, fields(table = %self.table))]
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let now = self.now();
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key_attrs(key)))
            // Read-your-writes, as the embedded adapter gives.
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| backend(e, "GetItem", &self.table))?;
        let item = output.item.map(from_attrs).transpose()?;
        Ok(item.filter(|item| !item.is_expired(now)))
    }

    /// One `BatchGetItem` of the distinct keys, asking again (with backoff) for any that
    /// DynamoDB leaves unprocessed, as its documentation asks callers to.
    /// <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_BatchGetItem.html>
    #[tracing::instrument(skip_all, fields(table = %self.table, keys = keys.len()))]
    async fn get_many(
        &self,
        keys: &[Key],
        consistency: Consistency,
    ) -> Result<Vec<Option<Item>>, StoreError> {
        validate_get_many(keys)?;
        let now = self.now();
        let distinct: std::collections::BTreeSet<&Key> = keys.iter().collect();
        let mut pending: Vec<Attrs> = distinct.into_iter().map(key_attrs).collect();
        let mut found: HashMap<Key, Item> = HashMap::new();
        for round in 0..BATCH_GET_ROUNDS {
            if round > 0 {
                tokio::time::sleep(Duration::from_millis(25 << round)).await;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(consistency == Consistency::Strong)
                .build()
                .map_err(|e| StoreError::Invalid(format!("batch read does not build: {e}")))?;
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| backend(e, "BatchGetItem", &self.table))?;
            for attrs in output
                .responses
                .and_then(|mut tables| tables.remove(&self.table))
                .unwrap_or_default()
            {
                let item = from_attrs(attrs)?;
                found.insert(item.key()?, item);
            }
            pending = output
                .unprocessed_keys
                .and_then(|mut tables| tables.remove(&self.table))
                .map(|left| left.keys)
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(keys
                    .iter()
                    .map(|key| found.get(key).filter(|i| !i.is_expired(now)).cloned())
                    .collect());
            }
        }
        Err(StoreError::Unavailable(anyhow::anyhow!(
            "BatchGetItem on table {} left {} keys unprocessed after {BATCH_GET_ROUNDS} rounds",
            self.table,
            pending.len()
        )))
    }

    #[tracing::instrument(skip_all, fields(table = %self.table))]
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        item.key()?;
        let rendered = render(&TxOp::Put { item, condition }, self.now())?;
        let request = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(rendered.attrs));
        with_expressions!(request, rendered)
            .send()
            .await
            .map_err(|e| write_error(e, "PutItem", &self.table))?;
        Ok(())
    }

    #[tracing::instrument(skip_all, fields(table = %self.table))]
    async fn update(
        &self,
        key: &Key,
        ops: Vec<UpdateOp>,
        condition: Option<Condition>,
    ) -> Result<Item, StoreError> {
        let op = TxOp::Update {
            key: key.clone(),
            ops,
            condition,
        };
        let op = &op;
        self.purging(
            1,
            || self.update_once(op),
            |err| match err {
                StoreError::ConditionFailed { .. } => purgeable(op).cloned(),
                _ => None,
            },
        )
        .await
    }

    #[tracing::instrument(skip_all, fields(table = %self.table))]
    async fn delete(
        &self,
        key: &Key,
        condition: Option<Condition>,
    ) -> Result<Option<Item>, StoreError> {
        let now = self.now();
        let rendered = render(
            &TxOp::Delete {
                key: key.clone(),
                condition,
            },
            now,
        )?;
        let request = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(rendered.attrs))
            .return_values(ReturnValue::AllOld);
        let output = with_expressions!(request, rendered)
            .send()
            .await
            .map_err(|e| write_error(e, "DeleteItem", &self.table))?;
        let old = output
            .attributes
            .filter(|attrs| !attrs.is_empty())
            .map(from_attrs)
            .transpose()?;
        Ok(old.filter(|item| !item.is_expired(now)))
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, index = ?query.index, limit = query.limit))]
    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        query.validate()?;
        if matches_nothing(&query.sort) {
            return Ok(page(Vec::new(), false, query.index));
        }
        let now = self.now();
        let mut start = start_key(query.after.as_ref(), query.index)?;
        let mut items = Vec::with_capacity(query.limit);
        loop {
            // One live item past the page tells whether another page follows; expired
            // items still count against DynamoDB's `Limit`, hence the loop.
            let want = query.limit + 1 - items.len();
            let (found, last) = self.query_once(&query, want, start).await?;
            for item in found.into_iter().filter(|item| !item.is_expired(now)) {
                if items.len() == query.limit {
                    return Ok(page(items, true, query.index));
                }
                items.push(item);
            }
            match last {
                Some(key) => start = Some(key),
                None => return Ok(page(items, false, query.index)),
            }
        }
    }

    #[tracing::instrument(skip_all, fields(table = %self.table, ops = ops.len()))]
    async fn transact(&self, ops: Vec<TxOp>) -> Result<(), StoreError> {
        validate_transaction(&ops)?;
        let purges = ops.iter().filter(|op| purgeable(op).is_some()).count();
        let ops = &ops;
        self.purging(
            purges,
            || self.transact_once(ops),
            |err| match err {
                StoreError::ConditionFailed { op: Some(i) } => {
                    ops.get(*i).and_then(purgeable).cloned()
                }
                _ => None,
            },
        )
        .await
    }
}

/// Creates the single table (`pk`/`sk`, the `gsi1` index with every attribute projected,
/// on-demand billing), waits until it is active, and turns on expiry by `ttl`. An existing
/// table of that name is left as it is.
#[tracing::instrument(skip(client))]
pub async fn create_table(client: &Client, name: &str) -> anyhow::Result<()> {
    let string = |attr: &str| {
        AttributeDefinition::builder()
            .attribute_name(attr)
            .attribute_type(ScalarAttributeType::S)
            .build()
    };
    let key = |attr: &str, kind: KeyType| {
        KeySchemaElement::builder()
            .attribute_name(attr)
            .key_type(kind)
            .build()
    };
    let gsi1 = GlobalSecondaryIndex::builder()
        .index_name(GSI1_INDEX)
        .key_schema(key(GSI1PK, KeyType::Hash)?)
        .key_schema(key(GSI1SK, KeyType::Range)?)
        .projection(
            Projection::builder()
                .projection_type(ProjectionType::All)
                .build(),
        )
        .build()?;
    let created = client
        .create_table()
        .table_name(name)
        .attribute_definitions(string(PK)?)
        .attribute_definitions(string(SK)?)
        .attribute_definitions(string(GSI1PK)?)
        .attribute_definitions(string(GSI1SK)?)
        .key_schema(key(PK, KeyType::Hash)?)
        .key_schema(key(SK, KeyType::Range)?)
        .global_secondary_indexes(gsi1)
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await;
    match created {
        Ok(_) => {}
        Err(err)
            if err
                .as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            tracing::info!(table = name, "DynamoDB table already exists");
            return Ok(());
        }
        Err(err) => return Err(err).with_context(|| format!("DynamoDB CreateTable {name}")),
    }
    client
        .wait_until_table_exists()
        .table_name(name)
        .wait(CREATE_WAIT)
        .await
        .with_context(|| format!("waiting for DynamoDB table {name} to become active"))?;
    enable_ttl(client, name).await
}

/// Turns on expiry by `ttl`. Emulators that lack it (some moto versions) only log a
/// warning: reads filter expired items regardless, they are just never deleted.
async fn enable_ttl(client: &Client, name: &str) -> anyhow::Result<()> {
    let spec = TimeToLiveSpecification::builder()
        .enabled(true)
        .attribute_name(TTL)
        .build()?;
    let result = client
        .update_time_to_live()
        .table_name(name)
        .time_to_live_specification(spec)
        .send()
        .await;
    if let Err(err) = result {
        tracing::warn!(
            table = name,
            error = %DisplayErrorContext(&err),
            "could not enable TTL on the DynamoDB table; expired items will be hidden but not deleted"
        );
    }
    Ok(())
}
