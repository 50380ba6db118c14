//! The transactional outbox: a job is written into the table in the same transaction as
//! the change that causes it, then relayed to the jobs queue. A change that lands always
//! gets its job sent; a change that fails sends nothing.
//!
//! Items live at `OUTBOX#<shard>` / `<message id>`: ids are ULIDs, so a shard reads oldest
//! first, and [`SHARDS`] partitions spread the write load. The relay reads a shard, sends
//! what it found in batches of ten, and deletes each item only after its batch was
//! accepted. A crash between the two sends a job twice, never zero times: delivery is at
//! least once, and every job's handler is idempotent.
//!
//! On AWS the relay is the `outbox-relay` function, woken by the table's stream whenever an
//! outbox item is inserted; it drains the whole shard, so an item whose wake-up was lost is
//! sent with the next one. The local server runs the same relay as a loop.
//! <https://microservices.io/patterns/data/transactional-outbox.html>

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::worker::Job;
use crate::queue::{Outgoing, Queue, MAX_BATCH};
use crate::store::{Condition, Index, Item, Key, Query, StoreError, Table, TxOp};

/// How many partitions the outbox spreads over.
pub const SHARDS: u32 = 8;
const PREFIX: &str = "OUTBOX#";

/// One job waiting to be sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    /// The job as the queue will carry it.
    body: String,
    created_at: String,
}

/// The shard a tenant's jobs go to: stable, so one tenant's jobs keep their order.
pub fn shard_of(tenant_id: &str) -> u32 {
    // FNV-1a: tiny, stable across builds and platforms (std's hasher is neither promised).
    let hash = tenant_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % SHARDS
}

fn partition(shard: u32) -> String {
    format!("{PREFIX}{shard}")
}

/// The shard an outbox item's partition key names, or `None` for any other item.
pub fn shard_of_partition(pk: &str) -> Option<u32> {
    pk.strip_prefix(PREFIX)?
        .parse()
        .ok()
        .filter(|shard| *shard < SHARDS)
}

/// The write that puts `job` in the outbox, for the transaction of the change causing it.
/// `message_id` (a `msg_` id) names the item and lets consumers spot a repeat.
pub fn enqueue(
    job: &Job,
    message_id: &str,
    tenant_id: &str,
    now: DateTime<Utc>,
) -> Result<TxOp, StoreError> {
    let body = job
        .to_body()
        .map_err(|e| StoreError::Invalid(format!("job does not serialise: {e}")))?;
    let pending = Pending {
        body,
        created_at: crate::clock::rfc3339(now),
    };
    let item =
        Item::new(&Key::new(partition(shard_of(tenant_id)), message_id)).with_record(&pending)?;
    Ok(TxOp::Put {
        item,
        condition: Some(Condition::NotExists),
    })
}

/// Sends every job waiting in `shard`, oldest first, and says how many it sent.
#[tracing::instrument(skip(table, queue))]
pub async fn relay_shard(
    table: &dyn Table,
    queue: &dyn Queue,
    shard: u32,
) -> anyhow::Result<usize> {
    let mut sent = 0;
    loop {
        let page = table
            .query(Query::partition(Index::Primary, partition(shard)).limit(MAX_BATCH))
            .await
            .with_context(|| format!("reading outbox shard {shard}"))?;
        if page.items.is_empty() {
            return Ok(sent);
        }
        let mut keys = Vec::with_capacity(page.items.len());
        let mut messages = Vec::with_capacity(page.items.len());
        for item in &page.items {
            let pending: Pending = item.record()?;
            keys.push(item.key()?);
            messages.push(Outgoing::new(pending.body));
        }
        queue
            .send_batch(messages)
            .await
            .with_context(|| format!("sending {} outbox jobs of shard {shard}", keys.len()))?;
        for key in &keys {
            // Another relay may have sent and deleted it meanwhile; that is fine.
            match table.delete(key, Some(Condition::Exists)).await {
                Ok(_) | Err(StoreError::ConditionFailed { .. }) => {}
                Err(e) => {
                    return Err(e).with_context(|| format!("clearing outbox item {}", key.sk))
                }
            }
        }
        sent += keys.len();
        tracing::info!(shard, count = keys.len(), "outbox jobs sent");
    }
}

/// Drains every shard once; the local server calls this in a loop.
pub async fn relay_all(table: &dyn Table, queue: &dyn Queue) -> anyhow::Result<usize> {
    let mut sent = 0;
    for shard in 0..SHARDS {
        sent += relay_shard(table, queue, shard).await?;
    }
    Ok(sent)
}

/// The local server's relay: drains the outbox, then waits `idle` for more, until
/// `shutdown`. What it fails to send stays in the table and is tried again next round.
pub async fn run_relay(
    table: std::sync::Arc<dyn Table>,
    queue: std::sync::Arc<dyn Queue>,
    idle: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        if let Err(e) = relay_all(table.as_ref(), queue.as_ref()).await {
            tracing::error!(error = format!("{e:#}"), "outbox relay failed; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(idle) => {}
            _ = shutdown.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_always_lands_in_the_same_valid_shard() {
        let a = shard_of("ten_01JD0000000000000000000000");
        assert_eq!(a, shard_of("ten_01JD0000000000000000000000"));
        assert!(a < SHARDS);
        let spread: std::collections::BTreeSet<u32> =
            (0..64).map(|i| shard_of(&format!("ten_{i:026}"))).collect();
        assert!(
            spread.len() > SHARDS as usize / 2,
            "tenants spread: {spread:?}"
        );
    }

    #[test]
    fn only_outbox_partitions_name_a_shard() {
        assert_eq!(shard_of_partition("OUTBOX#3"), Some(3));
        assert_eq!(shard_of_partition(&format!("OUTBOX#{SHARDS}")), None);
        assert_eq!(shard_of_partition("OUTBOX#x"), None);
        assert_eq!(shard_of_partition("TENANT#ten_1"), None);
    }
}
