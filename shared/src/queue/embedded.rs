//! The embedded `Queue` adapter: durable queues in one redb file, with SQS's rules.
//!
//! Each message is stored with the time it next becomes visible; an index ordered by that
//! time makes `receive` a range read. Receiving hides a message for the visibility timeout
//! and counts the receive; a message whose count would pass `max_receive_count` moves to the
//! dead-letter queue in the same transaction, so no crash can lose or duplicate it there.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::{
    validate, validate_batch, Outgoing, Queue, QueueError, Received, Redrive, Sent, MAX_BATCH,
};
use crate::clock::Clock;
use crate::store::embedded::{open_database, OpenError};

/// `(queue, message id)` → the message record as JSON.
const MESSAGES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("messages");
/// `(queue, visible at in epoch ms, message id)` → nothing: what `receive` reads.
const VISIBLE: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("visible");

#[derive(Serialize, Deserialize)]
struct Record {
    body: String,
    visible_at_ms: i64,
    receive_count: u32,
    /// Changes at every receive, so only the latest receiver can ack.
    receipt: String,
}

/// How one queue behaves.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    pub visibility_timeout: Duration,
    pub redrive: Option<Redrive>,
}

/// The file holding every embedded queue.
#[derive(Clone)]
pub struct EmbeddedQueues {
    db: Arc<Database>,
    clock: Arc<dyn Clock>,
}

impl EmbeddedQueues {
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self, OpenError> {
        let db = open_database(path, |tx| {
            tx.open_table(MESSAGES)?;
            tx.open_table(VISIBLE)?;
            Ok(())
        })?;
        Ok(Self {
            db: Arc::new(db),
            clock,
        })
    }

    /// A handle on the queue `name`, created on first send.
    pub fn queue(&self, name: &str, config: QueueConfig) -> EmbeddedQueue {
        EmbeddedQueue {
            queues: self.clone(),
            name: name.to_owned(),
            config,
        }
    }
}

/// One embedded queue.
#[derive(Clone)]
pub struct EmbeddedQueue {
    queues: EmbeddedQueues,
    name: String,
    config: QueueConfig,
}

fn backend(e: impl Into<redb::Error>) -> QueueError {
    QueueError::Backend(anyhow::Error::new(e.into()).context("embedded queue"))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn load(tx: &WriteTransaction, queue: &str, id: &str) -> Result<Option<Record>, QueueError> {
    let messages = tx.open_table(MESSAGES).map_err(backend)?;
    let found = messages.get((queue, id)).map_err(backend)?;
    match found {
        Some(bytes) => serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(|e| {
                QueueError::Backend(anyhow::anyhow!("stored message {id} does not decode: {e}"))
            }),
        None => Ok(None),
    }
}

/// Writes (or, with `None`, removes) a message, keeping the visibility index in step.
fn store(
    tx: &WriteTransaction,
    queue: &str,
    id: &str,
    old: Option<&Record>,
    new: Option<&Record>,
) -> Result<(), QueueError> {
    let mut messages = tx.open_table(MESSAGES).map_err(backend)?;
    let mut visible = tx.open_table(VISIBLE).map_err(backend)?;
    if let Some(old) = old {
        visible
            .remove((queue, old.visible_at_ms, id))
            .map_err(backend)?;
    }
    match new {
        Some(record) => {
            let bytes = serde_json::to_vec(record).map_err(|e| {
                QueueError::Backend(anyhow::anyhow!("message does not encode: {e}"))
            })?;
            messages
                .insert((queue, id), bytes.as_slice())
                .map_err(backend)?;
            visible
                .insert((queue, record.visible_at_ms, id), ())
                .map_err(backend)?;
        }
        None => {
            messages.remove((queue, id)).map_err(backend)?;
        }
    }
    Ok(())
}

/// A receipt names the message and the receive: `<id>.<token>`.
fn split_receipt(receipt: &str) -> Result<(&str, &str), QueueError> {
    receipt.split_once('.').ok_or(QueueError::StaleReceipt)
}

impl EmbeddedQueue {
    pub fn name(&self) -> &str {
        &self.name
    }

    fn now_ms(&self) -> i64 {
        self.queues.clock.now().timestamp_millis()
    }

    async fn blocking<T, F>(&self, work: F) -> Result<T, QueueError>
    where
        T: Send + 'static,
        F: FnOnce(&Database, &str, &QueueConfig, i64) -> Result<T, QueueError> + Send + 'static,
    {
        let db = self.queues.db.clone();
        let name = self.name.clone();
        let config = self.config.clone();
        let now = self.now_ms();
        tokio::task::spawn_blocking(move || work(&db, &name, &config, now))
            .await
            .context("embedded queue worker stopped")?
    }

    /// How many messages the queue holds, visible or not (for tests and operators).
    #[allow(clippy::len_without_is_empty)] // async, fallible: `is_empty` would add nothing
    pub async fn len(&self) -> Result<usize, QueueError> {
        self.blocking(|db, name, _, _| {
            use redb::ReadableDatabase;
            let tx = db.begin_read().map_err(backend)?;
            let messages = tx.open_table(MESSAGES).map_err(backend)?;
            let range = messages
                .range::<(&str, &str)>((name, "")..(format!("{name}\0").as_str(), ""))
                .map_err(backend)?;
            Ok(range.count())
        })
        .await
    }
}

/// A message as an operator sees it, without receiving it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    pub body: String,
    /// When it is (or was) next visible, epoch milliseconds.
    pub visible_at_ms: i64,
    pub receive_count: u32,
}

/// Every message of `queue`, oldest id first, up to `max`.
fn list_all(
    tx: &WriteTransaction,
    queue: &str,
    max: usize,
) -> Result<Vec<(String, Record)>, QueueError> {
    let messages = tx.open_table(MESSAGES).map_err(backend)?;
    let end = format!("{queue}\0");
    let range = messages
        .range::<(&str, &str)>((queue, "")..(end.as_str(), ""))
        .map_err(backend)?;
    let mut found = Vec::new();
    for entry in range.take(max) {
        let (key, value) = entry.map_err(backend)?;
        let id = key.value().1.to_owned();
        let record: Record = serde_json::from_slice(value.value()).map_err(|e| {
            QueueError::Backend(anyhow::anyhow!("stored message {id} does not decode: {e}"))
        })?;
        found.push((id, record));
    }
    Ok(found)
}

impl EmbeddedQueue {
    /// Up to `max` messages of the queue, oldest first, left where they are (what an
    /// operator inspects in a dead-letter queue).
    pub async fn list(&self, max: usize) -> Result<Vec<Listed>, QueueError> {
        self.blocking(move |db, name, _, _| {
            let tx = db.begin_write().map_err(backend)?;
            let listed = list_all(&tx, name, max)?
                .into_iter()
                .map(|(id, record)| Listed {
                    id,
                    body: record.body,
                    visible_at_ms: record.visible_at_ms,
                    receive_count: record.receive_count,
                })
                .collect();
            tx.abort().map_err(backend)?;
            Ok(listed)
        })
        .await
    }

    /// Makes every message received but not acknowledged visible again now, and answers
    /// how many: for a process that holds the queue file alone, whose receipts all belong
    /// to a process that died (the local server at start), so they need not wait out their
    /// visibility timeout. A message sent with a delay keeps it.
    pub async fn release_in_flight(&self) -> Result<usize, QueueError> {
        self.blocking(move |db, name, _, now| {
            let tx = db.begin_write().map_err(backend)?;
            let held: Vec<(String, Record)> = list_all(&tx, name, usize::MAX)?
                .into_iter()
                .filter(|(_, record)| !record.receipt.is_empty() && record.visible_at_ms > now)
                .collect();
            for (id, old) in &held {
                let released = Record {
                    body: old.body.clone(),
                    visible_at_ms: now,
                    receive_count: old.receive_count,
                    receipt: String::new(),
                };
                store(&tx, name, id, Some(old), Some(&released))?;
            }
            tx.commit().map_err(backend)?;
            Ok(held.len())
        })
        .await
    }

    /// Moves this queue's messages (every one, or only `id`) to `target`, visible at once
    /// and with their receive counts reset, in one transaction, as SQS's message move task
    /// redrives a dead-letter queue; answers how many moved.
    pub async fn move_to(
        &self,
        target: &EmbeddedQueue,
        id: Option<String>,
    ) -> Result<usize, QueueError> {
        let target = target.name.clone();
        self.blocking(move |db, name, _, now| {
            let tx = db.begin_write().map_err(backend)?;
            let chosen: Vec<(String, Record)> = list_all(&tx, name, usize::MAX)?
                .into_iter()
                .filter(|(found, _)| id.as_ref().is_none_or(|id| id == found))
                .collect();
            for (id, old) in &chosen {
                store(&tx, name, id, Some(old), None)?;
                let moved = Record {
                    body: old.body.clone(),
                    visible_at_ms: now,
                    receive_count: 0,
                    receipt: String::new(),
                };
                store(&tx, &target, id, None, Some(&moved))?;
            }
            tx.commit().map_err(backend)?;
            Ok(chosen.len())
        })
        .await
    }
}

fn enqueue(
    tx: &WriteTransaction,
    queue: &str,
    message: &Outgoing,
    now: i64,
) -> Result<String, QueueError> {
    let id = ulid::Ulid::new().to_string();
    let record = Record {
        body: message.body.clone(),
        visible_at_ms: now + millis(message.delay),
        receive_count: 0,
        receipt: String::new(),
    };
    store(tx, queue, &id, None, Some(&record))?;
    Ok(id)
}

fn send_all(
    db: &Database,
    queue: &str,
    messages: &[Outgoing],
    now: i64,
) -> Result<Vec<String>, QueueError> {
    let tx = db.begin_write().map_err(backend)?;
    let ids = messages
        .iter()
        .map(|m| enqueue(&tx, queue, m, now))
        .collect::<Result<Vec<_>, _>>()?;
    tx.commit().map_err(backend)?;
    Ok(ids)
}

fn receive_visible(
    db: &Database,
    queue: &str,
    config: &QueueConfig,
    now: i64,
    max: usize,
) -> Result<Vec<Received>, QueueError> {
    let tx = db.begin_write().map_err(backend)?;
    let due: Vec<String> = {
        let visible = tx.open_table(VISIBLE).map_err(backend)?;
        let range = visible
            .range::<(&str, i64, &str)>((queue, i64::MIN, "")..=(queue, now, "\u{10FFFF}"))
            .map_err(backend)?;
        let mut ids = Vec::new();
        for entry in range {
            let (key, _) = entry.map_err(backend)?;
            ids.push(key.value().2.to_owned());
        }
        ids
    };
    let mut received = Vec::new();
    for id in due {
        if received.len() == max {
            break;
        }
        let Some(old) = load(&tx, queue, &id)? else {
            continue;
        };
        let count = old.receive_count.saturating_add(1);
        if let Some(redrive) = config
            .redrive
            .as_ref()
            .filter(|r| count > r.max_receive_count)
        {
            // SQS moves the message on the receive that would pass the limit.
            store(&tx, queue, &id, Some(&old), None)?;
            let moved = Record {
                body: old.body.clone(),
                visible_at_ms: now,
                receive_count: 0,
                receipt: String::new(),
            };
            store(&tx, &redrive.dead_letter_queue, &id, None, Some(&moved))?;
            tracing::warn!(queue, message_id = %id, dlq = %redrive.dead_letter_queue, "message moved to the dead-letter queue");
            continue;
        }
        let token = ulid::Ulid::new().to_string();
        let new = Record {
            body: old.body.clone(),
            visible_at_ms: now + millis(config.visibility_timeout),
            receive_count: count,
            receipt: token.clone(),
        };
        store(&tx, queue, &id, Some(&old), Some(&new))?;
        received.push(Received {
            receipt: format!("{id}.{token}"),
            id,
            body: new.body,
            receive_count: count,
        });
    }
    tx.commit().map_err(backend)?;
    Ok(received)
}

/// Applies `change` to the message named by a current receipt.
fn with_receipt(
    db: &Database,
    queue: &str,
    receipt: &str,
    change: impl FnOnce(&Record) -> Option<Record>,
) -> Result<(), QueueError> {
    let (id, token) = split_receipt(receipt)?;
    let tx = db.begin_write().map_err(backend)?;
    let old = load(&tx, queue, id)?
        .filter(|r| r.receipt == token)
        .ok_or(QueueError::StaleReceipt)?;
    let new = change(&old);
    store(&tx, queue, id, Some(&old), new.as_ref())?;
    tx.commit().map_err(backend)?;
    Ok(())
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn send(&self, message: Outgoing) -> Result<String, QueueError> {
        validate(&message)?;
        let mut ids = self
            .blocking(move |db, name, _, now| send_all(db, name, &[message], now))
            .await?;
        ids.pop()
            .ok_or_else(|| QueueError::Backend(anyhow::anyhow!("send stored nothing")))
    }

    async fn send_batch(&self, messages: Vec<Outgoing>) -> Result<Vec<Sent>, QueueError> {
        validate_batch(&messages)?;
        let ids = self
            .blocking(move |db, name, _, now| send_all(db, name, &messages, now))
            .await?;
        // One write transaction: every message is accepted, or the call fails.
        Ok(ids.into_iter().map(Sent::Accepted).collect())
    }

    async fn receive(&self, max: usize) -> Result<Vec<Received>, QueueError> {
        if max == 0 || max > MAX_BATCH {
            return Err(QueueError::Invalid(format!(
                "receive takes 1..={MAX_BATCH} messages"
            )));
        }
        self.blocking(move |db, name, config, now| receive_visible(db, name, config, now, max))
            .await
    }

    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        let receipt = receipt.to_owned();
        self.blocking(move |db, name, _, _| with_receipt(db, name, &receipt, |_| None))
            .await
    }

    async fn retry_after(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        let receipt = receipt.to_owned();
        self.blocking(move |db, name, _, now| {
            with_receipt(db, name, &receipt, |old| {
                Some(Record {
                    body: old.body.clone(),
                    visible_at_ms: now + millis(delay),
                    receive_count: old.receive_count,
                    receipt: old.receipt.clone(),
                })
            })
        })
        .await
    }
}
