//! The transactional outbox: a job is written into the table in the same transaction as
//! the change that causes it, then relayed to the jobs queue. A change that lands always
//! gets its job sent; a change that fails sends nothing.
//!
//! Items live at `OUTBOX#<shard>` / `<message id>`: ids are ULIDs, so a shard reads roughly
//! oldest first (there is no ordering promise: the jobs queue is a standard SQS queue), and
//! [`SHARDS`] partitions spread the write load. The relay reads a shard, sends what it found
//! in batches of ten, and deletes each item only after its batch was accepted. A crash
//! between the two sends a job twice, never zero times: delivery is at least once, so every
//! job's handler is idempotent (deleting a deleted blob is fine; later jobs key their effects
//! on the id of what they act on).
//!
//! On AWS the relay is the `outbox-relay` function, woken by the table's stream whenever an
//! outbox item is inserted, and by a sweep every minute that drains every shard, so a job
//! whose wake-up was lost or whose retries ran out is sent within a minute of the queue
//! coming back. The local server runs the same relay as a loop. An item that can never be
//! sent (it does not decode, or the queue refuses its body) is moved aside to
//! `OUTBOX_DEAD#<shard>` with the reason and logged as an error, rather than blocking its
//! shard. <https://microservices.io/patterns/data/transactional-outbox.html>

use anyhow::Context as _;

use crate::queue::{Outgoing, Queue, Sent, MAX_BATCH};
use crate::repo::outbox::{partition, Pending, DEAD_PREFIX};

pub use crate::repo::outbox::{enqueue_to, Destination};
use crate::store::{Condition, Index, Item, Key, Query, StoreError, Table, Transaction};

pub use crate::repo::outbox::{enqueue, shard_of, shard_of_partition, SHARDS};

/// The most batches one call sends, so a relay under steady writes ends well inside its
/// Lambda timeout; the next wake-up or sweep goes on where it stopped.
pub const MAX_BATCHES_PER_CALL: usize = 20;

/// The queues the relay sends to, by [`Destination`]; `None` where it has none.
pub trait Queues: Send + Sync {
    fn queue(&self, destination: Destination) -> Option<&dyn Queue>;
}

/// One queue is the jobs queue alone (tests, and tools that relay into one queue): a dead
/// letter stays in the outbox rather than go back to the jobs queue and round again.
impl<Q: Queue> Queues for Q {
    fn queue(&self, destination: Destination) -> Option<&dyn Queue> {
        (destination == Destination::Jobs).then_some(self as &dyn Queue)
    }
}

impl Queues for dyn Queue {
    fn queue(&self, destination: Destination) -> Option<&dyn Queue> {
        (destination == Destination::Jobs).then_some(self)
    }
}

impl Queues for crate::context::AppContext {
    fn queue(&self, destination: Destination) -> Option<&dyn Queue> {
        Some(match destination {
            Destination::Jobs => self.queue.as_ref(),
            Destination::DeadLetters => self.dead_letters.as_ref(),
            Destination::Emails => self.emails.as_ref(),
        })
    }
}

/// An outbox item ready to send.
struct Ready<'a> {
    key: Key,
    item: &'a Item,
    destination: Destination,
    message: Outgoing,
}

/// Sends the jobs waiting in `shard`, oldest first, up to [`MAX_BATCHES_PER_CALL`]
/// batches, and says how many it sent.
#[tracing::instrument(skip(table, queues))]
pub async fn relay_shard(
    table: &dyn Table,
    queues: &(impl Queues + ?Sized),
    shard: u32,
) -> anyhow::Result<usize> {
    let mut sent = 0;
    for _ in 0..MAX_BATCHES_PER_CALL {
        let page = table
            .query(Query::partition(Index::Primary, partition(shard)).limit(MAX_BATCH))
            .await
            .with_context(|| format!("reading outbox shard {shard}"))?;
        if page.items.is_empty() {
            break;
        }
        let mut ready = Vec::with_capacity(page.items.len());
        for item in &page.items {
            let key = item.key()?;
            match sendable(item) {
                Ok((destination, message)) => ready.push(Ready {
                    key,
                    item,
                    destination,
                    message,
                }),
                Err(reason) => park(table, item, shard, &reason).await?,
            }
        }
        let mut held_back = Vec::new();
        for destination in [
            Destination::Jobs,
            Destination::DeadLetters,
            Destination::Emails,
        ] {
            let batch: Vec<&Ready> = ready
                .iter()
                .filter(|r| r.destination == destination)
                .collect();
            if batch.is_empty() {
                continue;
            }
            let Some(queue) = queues.queue(destination) else {
                held_back.extend(
                    batch
                        .iter()
                        .map(|r| format!("{}: no queue for {destination:?} here", r.key.sk)),
                );
                continue;
            };
            let messages = batch.iter().map(|r| r.message.clone()).collect();
            let outcomes = queue.send_batch(messages).await.with_context(|| {
                format!(
                    "sending {} outbox jobs of shard {shard} to {destination:?}",
                    batch.len()
                )
            })?;
            let mut sent_now = 0;
            // Each entry on its own: what was accepted is cleared (and never sent again),
            // what SQS says can never be sent is parked, and the rest waits for a retry.
            for (ready, outcome) in batch.iter().zip(outcomes) {
                match outcome {
                    Sent::Accepted(_) => {
                        clear(table, &ready.key).await?;
                        sent_now += 1;
                    }
                    Sent::Refused {
                        reason,
                        permanent: true,
                    } => park(table, ready.item, shard, &reason).await?,
                    Sent::Refused { reason, .. } => {
                        held_back.push(format!("{}: {reason}", ready.key.sk))
                    }
                }
            }
            sent += sent_now;
            tracing::info!(shard, ?destination, count = sent_now, "outbox jobs sent");
        }
        if !held_back.is_empty() {
            anyhow::bail!(
                "the queue refused {} outbox jobs of shard {shard} for now (they stay in the outbox): {}",
                held_back.len(),
                held_back.join("; ")
            );
        }
        if page.next.is_none() {
            // The page was the rest of the shard: no need to ask again.
            break;
        }
    }
    Ok(sent)
}

/// Deletes a sent item. Another relay may have sent and deleted it meanwhile; that is fine.
async fn clear(table: &dyn Table, key: &Key) -> anyhow::Result<()> {
    match table.delete(key, Some(Condition::Exists)).await {
        Ok(_) | Err(StoreError::ConditionFailed { .. }) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("clearing outbox item {}", key.sk)),
    }
}

/// The message an outbox item becomes and where it goes, or why it can never be one.
fn sendable(item: &Item) -> Result<(Destination, Outgoing), String> {
    let pending: Pending = item.record().map_err(|e| e.to_string())?;
    let message = Outgoing::new(pending.body);
    crate::queue::validate(&message).map_err(|e| e.to_string())?;
    Ok((pending.destination, message))
}

/// Moves an item that can never be sent out of its shard, keeping it (and why) for an
/// operator: one bad item must not hold back every job behind it.
async fn park(table: &dyn Table, item: &Item, shard: u32, reason: &str) -> anyhow::Result<()> {
    let key = item.key()?;
    tracing::error!(shard, item = %key.sk, reason, "outbox item cannot be sent; parked");
    let parked = item
        .clone()
        .with(crate::store::PK, format!("{DEAD_PREFIX}{shard}"))
        .with("parked_because", reason);
    let mut tx = Transaction::new();
    tx.put("the parked copy", parked, None)?.delete(
        "the item in its shard",
        key.clone(),
        Some(Condition::Exists),
    )?;
    tx.commit(table)
        .await
        .with_context(|| format!("parking outbox item {}", key.sk))
}

/// Drains every shard once (the local server's loop, and the sweep on AWS), and fails after
/// trying them all if any failed.
pub async fn relay_all(
    table: &dyn Table,
    queues: &(impl Queues + ?Sized),
) -> anyhow::Result<usize> {
    let mut sent = 0;
    let mut failed = Vec::new();
    // Every shard gets its turn: one that fails must not hold back the ones after it.
    for shard in 0..SHARDS {
        match relay_shard(table, queues, shard).await {
            Ok(n) => sent += n,
            Err(e) => failed.push(format!("{e:#}")),
        }
    }
    match failed.len() {
        0 => Ok(sent),
        n => Err(anyhow::anyhow!(
            "{n} of {SHARDS} outbox shards failed ({sent} jobs sent from the others): {}",
            failed.join("; ")
        )),
    }
}

/// The local server's relay: drains the outbox, then waits `idle` for more, until
/// `shutdown`. What it fails to send stays in the table and is tried again next round.
pub async fn run_relay(
    ctx: crate::context::AppContext,
    idle: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        if let Err(e) = relay_all(ctx.table.as_ref(), &ctx).await {
            tracing::error!(error = format!("{e:#}"), "outbox relay failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(idle) => {}
            _ = shutdown.changed() => {}
        }
    }
}
