//! The transactional outbox on both table adapters: a job written with its change reaches
//! the queue once the relay runs, a change that fails sends nothing, and a queue that
//! refuses the send loses nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use storefront::clock::Clock as _;
use storefront::jobs::outbox::{enqueue, relay_all, relay_shard, shard_of};
use storefront::jobs::worker::Job;
use storefront::queue::embedded::{EmbeddedQueue, EmbeddedQueues, QueueConfig};
use storefront::queue::{Outgoing, Queue, QueueError, Received};
use storefront::store::{Condition, Item, Key, TxOp};

use crate::helpers;
use crate::table_conformance::{dynamo, embedded, Fixture};

const TENANT: &str = "ten_01JD0000000000000000000000";

fn job(n: usize) -> Job {
    Job::DeleteBlob {
        key: format!("uploads/{TENANT}/img_{n:026}"),
    }
}

fn message_id(n: usize) -> String {
    format!("msg_01JD{n:022}")
}

fn enqueued(f: &Fixture, n: usize) -> TxOp {
    enqueue(&job(n), &message_id(n), TENANT, f.clock.now()).unwrap()
}

fn change(name: &str) -> TxOp {
    TxOp::Put {
        item: Item::new(&Key::new("CHANGE", name)),
        condition: Some(Condition::NotExists),
    }
}

/// A queue of its own for each case, and the directory that keeps it.
fn jobs_queue(f: &Fixture) -> (EmbeddedQueue, tempfile::TempDir) {
    let dir = helpers::temp_dir();
    let queues = EmbeddedQueues::open(&dir.path().join("queue.redb"), f.clock.clone()).unwrap();
    let queue = queues.queue(
        "jobs",
        QueueConfig {
            visibility_timeout: Duration::from_secs(60),
            redrive: None,
        },
    );
    (queue, dir)
}

async fn drain(queue: &EmbeddedQueue) -> Vec<String> {
    let mut bodies = Vec::new();
    loop {
        let received = queue.receive(10).await.unwrap();
        if received.is_empty() {
            return bodies;
        }
        for message in received {
            queue.ack(&message.receipt).await.unwrap();
            bodies.push(message.body);
        }
    }
}

pub async fn a_job_written_with_its_change_is_sent_once_and_cleared(f: Fixture) {
    let (queue, _dir) = jobs_queue(&f);
    f.table
        .transact(vec![change("order"), enqueued(&f, 1)])
        .await
        .unwrap();
    assert_eq!(relay_all(f.table.as_ref(), &queue).await.unwrap(), 1);
    assert_eq!(drain(&queue).await, [job(1).to_body().unwrap()]);
    assert_eq!(
        relay_all(f.table.as_ref(), &queue).await.unwrap(),
        0,
        "a sent job is cleared from the outbox"
    );
}

pub async fn a_change_that_fails_sends_nothing(f: Fixture) {
    let (queue, _dir) = jobs_queue(&f);
    f.table.write(change("taken")).await.unwrap();
    let failed = f
        .table
        .transact(vec![change("taken"), enqueued(&f, 1)])
        .await;
    assert!(failed.is_err());
    assert_eq!(relay_all(f.table.as_ref(), &queue).await.unwrap(), 0);
    assert!(drain(&queue).await.is_empty());
}

pub async fn every_job_of_a_shard_is_sent_across_several_batches(f: Fixture) {
    let (queue, _dir) = jobs_queue(&f);
    for n in 0..25 {
        f.table.write(enqueued(&f, n)).await.unwrap();
    }
    let sent = relay_shard(f.table.as_ref(), &queue, shard_of(TENANT))
        .await
        .unwrap();
    assert_eq!(sent, 25);
    let bodies: BTreeSet<String> = drain(&queue).await.into_iter().collect();
    let expected: BTreeSet<String> = (0..25).map(|n| job(n).to_body().unwrap()).collect();
    assert_eq!(bodies, expected);
}

/// A queue that refuses every send, as SQS does when it is unreachable.
struct Unreachable;

#[async_trait]
impl Queue for Unreachable {
    async fn send(&self, _: Outgoing) -> Result<String, QueueError> {
        Err(QueueError::Backend(anyhow::anyhow!("queue unreachable")))
    }
    async fn send_batch(&self, _: Vec<Outgoing>) -> Result<Vec<String>, QueueError> {
        Err(QueueError::Backend(anyhow::anyhow!("queue unreachable")))
    }
    async fn receive(&self, _: usize) -> Result<Vec<Received>, QueueError> {
        Ok(Vec::new())
    }
    async fn ack(&self, _: &str) -> Result<(), QueueError> {
        Ok(())
    }
    async fn retry_after(&self, _: &str, _: Duration) -> Result<(), QueueError> {
        Ok(())
    }
}

pub async fn a_job_the_queue_refused_stays_in_the_outbox_for_the_next_round(f: Fixture) {
    let (queue, _dir) = jobs_queue(&f);
    f.table.write(enqueued(&f, 7)).await.unwrap();
    assert!(relay_all(f.table.as_ref(), &Unreachable).await.is_err());
    assert_eq!(relay_all(f.table.as_ref(), &queue).await.unwrap(), 1);
    assert_eq!(drain(&queue).await, [job(7).to_body().unwrap()]);
}

pub async fn a_repeated_message_id_is_refused_rather_than_overwriting_a_waiting_job(f: Fixture) {
    f.table.write(enqueued(&f, 1)).await.unwrap();
    let again = f.table.write(enqueued(&f, 1)).await;
    assert!(again.is_err(), "{again:?}");
}

conformance!(embedded, dynamo;
    a_job_written_with_its_change_is_sent_once_and_cleared,
    a_change_that_fails_sends_nothing,
    every_job_of_a_shard_is_sent_across_several_batches,
    a_job_the_queue_refused_stays_in_the_outbox_for_the_next_round,
    a_repeated_message_id_is_refused_rather_than_overwriting_a_waiting_job,
);
