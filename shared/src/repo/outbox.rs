//! The outbox's items: a job waiting to be relayed to the jobs queue, written in the same
//! transaction as the change that causes it (`crate::jobs::outbox` relays them).
//!
//! Items live at `OUTBOX#<shard>` / `<message id>`: ids are ULIDs, so a shard reads roughly
//! oldest first, and [`SHARDS`] partitions spread the write load. An item that can never be
//! sent is moved aside to `OUTBOX_DEAD#<shard>`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::Job;
use crate::queue::Outgoing;
use crate::store::{Condition, Item, Key, StoreError, TxOp};

/// How many partitions the outbox spreads over.
pub const SHARDS: u32 = 8;
const PREFIX: &str = "OUTBOX#";
pub(crate) const DEAD_PREFIX: &str = "OUTBOX_DEAD#";

/// The queue an outbox item is relayed to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Destination {
    /// The jobs queue, which the worker consumes (every job, unless it says otherwise).
    #[default]
    Jobs,
    /// The jobs queue's dead-letter queue: a job that has failed for good (a webhook
    /// delivery past its last attempt), kept for an operator to inspect and redrive.
    DeadLetters,
    /// The emails queue, which the emails consumer (and only it may send with SES) takes.
    Emails,
}

/// One job waiting to be sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pending {
    /// The job as the queue will carry it.
    pub(crate) body: String,
    pub(crate) created_at: String,
    /// Items written before destinations existed carry none: they go to the jobs queue.
    #[serde(default)]
    pub(crate) destination: Destination,
}

/// The shard a tenant's jobs go to: stable across builds, and spreading tenants evenly.
pub fn shard_of(tenant_id: &str) -> u32 {
    // FNV-1a: tiny, stable across builds and platforms (std's hasher is neither promised).
    let hash = tenant_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    hash % SHARDS
}

pub(crate) fn partition(shard: u32) -> String {
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
/// `message_id` (a `msg_` id) names the item. A job the queue could never carry is refused
/// here, while the change can still be refused with it.
pub fn enqueue(
    job: &Job,
    message_id: &str,
    tenant_id: &str,
    now: DateTime<Utc>,
) -> Result<TxOp, StoreError> {
    enqueue_to(Destination::Jobs, job, message_id, tenant_id, now)
}

/// [`enqueue`] for the queue `destination` names.
pub fn enqueue_to(
    destination: Destination,
    job: &Job,
    message_id: &str,
    tenant_id: &str,
    now: DateTime<Utc>,
) -> Result<TxOp, StoreError> {
    let body = job
        .to_body()
        .map(crate::queue::json_for_sqs)
        .map_err(|e| StoreError::Invalid(format!("job does not serialise: {e}")))?;
    crate::queue::validate(&Outgoing::new(body.as_str()))
        .map_err(|e| StoreError::Invalid(format!("job cannot be queued: {e}")))?;
    let pending = Pending {
        body,
        created_at: crate::clock::rfc3339(now),
        destination,
    };
    let item =
        Item::new(&Key::new(partition(shard_of(tenant_id)), message_id)).with_record(&pending)?;
    Ok(TxOp::Put {
        item,
        condition: Some(Condition::NotExists),
    })
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
