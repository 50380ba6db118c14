//! The embedded `Table` adapter: one redb file, durable at every acknowledged write.
//!
//! redb gives serialisable write transactions with `fsync` at commit, so a condition is
//! checked and the write made under one lock, a transaction of 100 operations lands whole or
//! not at all, and an acknowledged write survives `kill -9`. The secondary index is a second
//! redb table kept in the same write transaction as the items it points to.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::{
    apply_updates, validate_get_many, validate_transaction, Condition, Consistency, Index, Item,
    Key, Page, Position, Query, SortKey, StoreError, Table, TxOp, UpdateOp, GSI1SK, PK, SK,
};
use crate::clock::Clock;

/// One entry of a redb range read.
type RangeEntry<'a, K, V> =
    Result<(redb::AccessGuard<'a, K>, redb::AccessGuard<'a, V>), redb::StorageError>;

/// `(pk, sk)` → the item as JSON.
const ITEMS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("items");
/// `(gsi1pk, gsi1sk, pk, sk)` → nothing: the secondary index.
const GSI1: TableDefinition<(&str, &str, &str, &str), ()> = TableDefinition::new("gsi1");

/// Why an embedded database file could not be opened, in words for whoever started us.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path} is in use by another running instance (its lock is held); stop it or choose another --data-dir")]
    Locked { path: String },
    #[error("{path} cannot be read or written: {source}")]
    Unreadable {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a valid Storefront database (corrupt or another format): {detail}")]
    Corrupt { path: String, detail: String },
}

/// Opens (or creates) a redb file and its tables (`create_tables` runs in a first write
/// transaction), telling a lock, an I/O problem and corruption apart.
pub fn open_database(
    path: &Path,
    create_tables: impl FnOnce(&WriteTransaction) -> Result<(), redb::TableError>,
) -> Result<Database, OpenError> {
    let db = open_file(path)?;
    let init = || -> Result<(), redb::Error> {
        let tx = db.begin_write()?;
        create_tables(&tx)?;
        tx.commit()?;
        Ok(())
    };
    init().map_err(|e| OpenError::Corrupt {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    Ok(db)
}

fn open_file(path: &Path) -> Result<Database, OpenError> {
    let shown = path.display().to_string();
    match Database::create(path) {
        Ok(db) => Ok(db),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => Err(OpenError::Locked { path: shown }),
        Err(redb::DatabaseError::Storage(redb::StorageError::Io(source))) => {
            Err(OpenError::Unreadable {
                path: shown,
                source,
            })
        }
        Err(other) => Err(OpenError::Corrupt {
            path: shown,
            detail: other.to_string(),
        }),
    }
}

/// The embedded single-table store.
#[derive(Clone)]
pub struct EmbeddedTable {
    db: Arc<Database>,
    clock: Arc<dyn Clock>,
}

impl EmbeddedTable {
    /// Opens the table file at `path`, creating it and its tables on first use.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self, OpenError> {
        let db = open_database(path, |tx| {
            tx.open_table(ITEMS)?;
            tx.open_table(GSI1)?;
            Ok(())
        })?;
        Ok(Self {
            db: Arc::new(db),
            clock,
        })
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp()
    }

    /// Runs blocking redb work off the async executor.
    async fn blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database, i64) -> Result<T, StoreError> + Send + 'static,
    {
        let db = self.db.clone();
        let now = self.now();
        tokio::task::spawn_blocking(move || work(&db, now))
            .await
            .context("embedded store worker stopped")?
    }
}

fn backend(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Backend(anyhow::Error::new(e.into()).context("embedded store"))
}

fn decode(bytes: &[u8]) -> Result<Item, StoreError> {
    let map = serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Backend(anyhow::anyhow!("stored item does not decode: {e}")))?;
    Item::from_map(map)
}

fn encode(item: &Item) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(item).map_err(|e| StoreError::Invalid(format!("item does not encode: {e}")))
}

/// Reads the live (unexpired) item under `key` inside a write transaction.
fn read_live(tx: &WriteTransaction, key: &Key, now: i64) -> Result<Option<Item>, StoreError> {
    let items = tx.open_table(ITEMS).map_err(backend)?;
    let found = items
        .get((key.pk.as_str(), key.sk.as_str()))
        .map_err(backend)?;
    match found {
        Some(bytes) => {
            let item = decode(bytes.value())?;
            Ok((!item.is_expired(now)).then_some(item))
        }
        None => Ok(None),
    }
}

/// Writes `new` (or nothing) under `key`, keeping the index in step.
fn replace(tx: &WriteTransaction, key: &Key, new: Option<&Item>) -> Result<(), StoreError> {
    let mut items = tx.open_table(ITEMS).map_err(backend)?;
    let mut gsi = tx.open_table(GSI1).map_err(backend)?;
    // An expired item still occupies its slot (and its index entry) until replaced.
    let stored = match items
        .get((key.pk.as_str(), key.sk.as_str()))
        .map_err(backend)?
    {
        Some(bytes) => Some(decode(bytes.value())?),
        None => None,
    };
    if let Some(g) = stored.as_ref().and_then(Item::gsi1) {
        gsi.remove((
            g.pk.as_str(),
            g.sk.as_str(),
            key.pk.as_str(),
            key.sk.as_str(),
        ))
        .map_err(backend)?;
    }
    match new {
        Some(item) => {
            let bytes = encode(item)?;
            items
                .insert((key.pk.as_str(), key.sk.as_str()), bytes.as_slice())
                .map_err(backend)?;
            if let Some(g) = item.gsi1() {
                gsi.insert(
                    (
                        g.pk.as_str(),
                        g.sk.as_str(),
                        key.pk.as_str(),
                        key.sk.as_str(),
                    ),
                    (),
                )
                .map_err(backend)?;
            }
        }
        None => {
            items
                .remove((key.pk.as_str(), key.sk.as_str()))
                .map_err(backend)?;
        }
    }
    Ok(())
}

fn check(
    condition: Option<&Condition>,
    current: Option<&Item>,
    op: Option<usize>,
) -> Result<(), StoreError> {
    match condition {
        Some(c) if !c.holds(current) => Err(StoreError::ConditionFailed { op }),
        _ => Ok(()),
    }
}

/// Applies one operation inside an open write transaction.
fn apply(
    tx: &WriteTransaction,
    op: &TxOp,
    index: Option<usize>,
    now: i64,
) -> Result<Option<Item>, StoreError> {
    let key = op.key()?;
    let current = read_live(tx, &key, now)?;
    match op {
        TxOp::Put { item, condition } => {
            check(condition.as_ref(), current.as_ref(), index)?;
            replace(tx, &key, Some(item))?;
            Ok(Some(item.clone()))
        }
        TxOp::Update { ops, condition, .. } => {
            check(condition.as_ref(), current.as_ref(), index)?;
            let mut next = current.clone().unwrap_or_else(|| Item::new(&key));
            apply_updates(&mut next, ops)?;
            replace(tx, &key, Some(&next))?;
            Ok(Some(next))
        }
        TxOp::Delete { condition, .. } => {
            check(condition.as_ref(), current.as_ref(), index)?;
            replace(tx, &key, None)?;
            Ok(current)
        }
        TxOp::Check { condition, .. } => {
            check(Some(condition), current.as_ref(), index)?;
            Ok(None)
        }
    }
}

/// Runs operations in one redb write transaction that commits only if all succeed.
fn write(db: &Database, ops: &[TxOp], now: i64, indexed: bool) -> Result<Option<Item>, StoreError> {
    let tx = db.begin_write().map_err(backend)?;
    let mut last = None;
    for (i, op) in ops.iter().enumerate() {
        // Dropping `tx` without commit rolls every earlier operation back.
        last = apply(&tx, op, indexed.then_some(i), now)?;
    }
    tx.commit().map_err(backend)?;
    Ok(last)
}

/// The sort-key window a query reads, before and after the cursor is applied.
struct Window {
    lower: Bound<String>,
    upper: Bound<String>,
}

impl Window {
    fn new(sort: &SortKey, after_sk: Option<&str>, forward: bool) -> Self {
        let (mut lower, mut upper) = match sort {
            SortKey::Any => (Bound::Unbounded, Bound::Unbounded),
            SortKey::Eq(v) => (Bound::Included(v.clone()), Bound::Included(v.clone())),
            SortKey::BeginsWith(p) => (Bound::Included(p.clone()), Bound::Unbounded),
            SortKey::Between(lo, hi) => (Bound::Included(lo.clone()), Bound::Included(hi.clone())),
        };
        if let Some(after) = after_sk {
            if forward {
                lower = Bound::Excluded(after.to_owned());
            } else {
                upper = Bound::Excluded(after.to_owned());
            }
        }
        Self { lower, upper }
    }
}

/// Collects up to `limit` live items in order and says whether more remain.
fn collect_page<I>(entries: I, query: &Query, now: i64) -> Result<Page, StoreError>
where
    I: Iterator<Item = Result<(String, Item), StoreError>>,
{
    let mut items = Vec::new();
    let mut more = false;
    for entry in entries {
        let (sk, item) = entry?;
        if !query.sort.matches(&sk) {
            // Past the prefix in the direction of travel: nothing further can match.
            if let SortKey::BeginsWith(p) = &query.sort {
                let passed = if query.forward {
                    sk.as_str() > p.as_str()
                } else {
                    sk.as_str() < p.as_str()
                };
                if passed {
                    break;
                }
            }
            continue;
        }
        if item.is_expired(now) {
            continue;
        }
        if items.len() == query.limit {
            more = true;
            break;
        }
        items.push(item);
    }
    let next = match (more, items.last()) {
        (true, Some(last)) => Some(position_of(last, query.index)),
        _ => None,
    };
    Ok(Page { items, next })
}

/// The cursor position of an item in an index: its table key plus the index key.
pub(crate) fn position_of(item: &Item, index: Index) -> Position {
    item.position(index)
}

/// An upper bound just past every key of `partition`: tuples compare element by element,
/// and no key holds a NUL, so `partition + "\0"` sorts after all of the partition's keys.
fn past(partition: &str) -> String {
    format!("{partition}\0")
}

fn query_primary(db: &Database, query: &Query, now: i64) -> Result<Page, StoreError> {
    let tx = db.begin_read().map_err(backend)?;
    let items = tx.open_table(ITEMS).map_err(backend)?;
    let after = query.after.as_ref().and_then(|p| p.0.get(SK).cloned());
    let window = Window::new(&query.sort, after.as_deref(), query.forward);
    let p = query.partition.as_str();
    let end = past(p);
    let lower = match &window.lower {
        Bound::Included(s) => Bound::Included((p, s.as_str())),
        Bound::Excluded(s) => Bound::Excluded((p, s.as_str())),
        Bound::Unbounded => Bound::Included((p, "")),
    };
    let upper = match &window.upper {
        Bound::Included(s) => Bound::Included((p, s.as_str())),
        Bound::Excluded(s) => Bound::Excluded((p, s.as_str())),
        Bound::Unbounded => Bound::Excluded((end.as_str(), "")),
    };
    let range = items
        .range::<(&str, &str)>((lower, upper))
        .map_err(backend)?;
    let decode_entry = |entry: RangeEntry<(&str, &str), &[u8]>| {
        let (k, v) = entry.map_err(backend)?;
        Ok((k.value().1.to_owned(), decode(v.value())?))
    };
    if query.forward {
        collect_page(range.map(decode_entry), query, now)
    } else {
        collect_page(range.rev().map(decode_entry), query, now)
    }
}

fn query_gsi1(db: &Database, query: &Query, now: i64) -> Result<Page, StoreError> {
    let tx = db.begin_read().map_err(backend)?;
    let index = tx.open_table(GSI1).map_err(backend)?;
    let items = tx.open_table(ITEMS).map_err(backend)?;
    let after = query.after.as_ref();
    let after_gsk = after.and_then(|p| p.0.get(GSI1SK).cloned());
    let after_pk = after.and_then(|p| p.0.get(PK).cloned()).unwrap_or_default();
    let after_sk = after.and_then(|p| p.0.get(SK).cloned()).unwrap_or_default();
    let window = Window::new(&query.sort, after_gsk.as_deref(), query.forward);
    let g = query.partition.as_str();
    let end = past(g);
    let lower = match &window.lower {
        Bound::Included(s) => Bound::Included((g, s.as_str(), "", "")),
        // Index keys are not unique: resume after the exact (index key, table key) entry.
        Bound::Excluded(s) => {
            Bound::Excluded((g, s.as_str(), after_pk.as_str(), after_sk.as_str()))
        }
        Bound::Unbounded => Bound::Included((g, "", "", "")),
    };
    let upper_past;
    let upper = match &window.upper {
        Bound::Included(s) => {
            upper_past = past(s);
            Bound::Excluded((g, upper_past.as_str(), "", ""))
        }
        Bound::Excluded(s) => {
            Bound::Excluded((g, s.as_str(), after_pk.as_str(), after_sk.as_str()))
        }
        Bound::Unbounded => Bound::Excluded((end.as_str(), "", "", "")),
    };
    let range = index
        .range::<(&str, &str, &str, &str)>((lower, upper))
        .map_err(backend)?;
    let load = |entry: RangeEntry<(&str, &str, &str, &str), ()>| {
        let (k, _) = entry.map_err(backend)?;
        let (_, gsk, pk, sk) = k.value();
        let bytes = items.get((pk, sk)).map_err(backend)?.ok_or_else(|| {
            StoreError::Backend(anyhow::anyhow!("index entry without item {pk}/{sk}"))
        })?;
        Ok((gsk.to_owned(), decode(bytes.value())?))
    };
    if query.forward {
        collect_page(range.map(load), query, now)
    } else {
        collect_page(range.rev().map(load), query, now)
    }
}

#[async_trait]
impl Table for EmbeddedTable {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let key = key.clone();
        self.blocking(move |db, now| {
            let tx = db.begin_read().map_err(backend)?;
            let items = tx.open_table(ITEMS).map_err(backend)?;
            let found = items
                .get((key.pk.as_str(), key.sk.as_str()))
                .map_err(backend)?;
            match found {
                Some(bytes) => {
                    let item = decode(bytes.value())?;
                    Ok((!item.is_expired(now)).then_some(item))
                }
                None => Ok(None),
            }
        })
        .await
    }

    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        item.key()?;
        self.blocking(move |db, now| {
            write(db, &[TxOp::Put { item, condition }], now, false).map(|_| ())
        })
        .await
    }

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
        self.blocking(move |db, now| {
            write(db, &[op], now, false)?
                .ok_or_else(|| StoreError::Backend(anyhow::anyhow!("update wrote no item")))
        })
        .await
    }

    async fn delete(
        &self,
        key: &Key,
        condition: Option<Condition>,
    ) -> Result<Option<Item>, StoreError> {
        let op = TxOp::Delete {
            key: key.clone(),
            condition,
        };
        self.blocking(move |db, now| write(db, &[op], now, false))
            .await
    }

    /// Every read of the embedded store is strongly consistent.
    async fn get_many(
        &self,
        keys: &[Key],
        _consistency: Consistency,
    ) -> Result<Vec<Option<Item>>, StoreError> {
        validate_get_many(keys)?;
        let keys = keys.to_vec();
        self.blocking(move |db, now| {
            let tx = db.begin_read().map_err(backend)?;
            let items = tx.open_table(ITEMS).map_err(backend)?;
            keys.iter()
                .map(|key| {
                    match items
                        .get((key.pk.as_str(), key.sk.as_str()))
                        .map_err(backend)?
                    {
                        Some(bytes) => {
                            let item = decode(bytes.value())?;
                            Ok((!item.is_expired(now)).then_some(item))
                        }
                        None => Ok(None),
                    }
                })
                .collect()
        })
        .await
    }

    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        query.validate()?;
        self.blocking(move |db, now| match query.index {
            Index::Primary => query_primary(db, &query, now),
            Index::Gsi1 => query_gsi1(db, &query, now),
        })
        .await
    }

    async fn transact(&self, ops: Vec<TxOp>) -> Result<(), StoreError> {
        validate_transaction(&ops)?;
        self.blocking(move |db, now| write(db, &ops, now, true).map(|_| ()))
            .await
    }
}
