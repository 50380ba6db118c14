//! The transactional outbox on both table adapters: a job written with its change reaches
//! the queue once the relay runs, a change that fails sends nothing, and a queue that
//! refuses the send loses nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use storefront::clock::Clock as _;
use storefront::jobs::outbox::{enqueue, relay_all, relay_shard, shard_of, MAX_BATCHES_PER_CALL};
use storefront::jobs::worker::Job;
use storefront::queue::embedded::{EmbeddedQueue, EmbeddedQueues, QueueConfig};
use storefront::queue::{Outgoing, Queue, QueueError, Received, Sent};
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
    async fn send_batch(&self, _: Vec<Outgoing>) -> Result<Vec<Sent>, QueueError> {
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

pub async fn an_item_that_can_never_be_sent_is_parked_and_the_jobs_behind_it_go(f: Fixture) {
    let (queue, _dir) = jobs_queue(&f);
    let shard = shard_of(TENANT);
    // Written by something else: no `body`, so it cannot decode as a waiting job.
    f.table
        .put(
            Item::new(&Key::new(format!("OUTBOX#{shard}"), message_id(0))),
            None,
        )
        .await
        .unwrap();
    f.table.write(enqueued(&f, 1)).await.unwrap();
    assert_eq!(
        relay_shard(f.table.as_ref(), &queue, shard).await.unwrap(),
        1
    );
    assert_eq!(drain(&queue).await, [job(1).to_body().unwrap()]);
    let parked = f
        .table
        .get(&Key::new(format!("OUTBOX_DEAD#{shard}"), message_id(0)))
        .await
        .unwrap()
        .expect("kept aside for an operator");
    assert!(parked.get_str("parked_because").is_some());
    assert_eq!(
        relay_shard(f.table.as_ref(), &queue, shard).await.unwrap(),
        0
    );
}

/// A queue that refuses the first entry of every batch as the message's own fault, the
/// second as a passing failure (as SQS's `SendMessageBatch` can), and passes the rest on.
struct PartlyRefusing<'q>(&'q EmbeddedQueue);

#[async_trait]
impl Queue for PartlyRefusing<'_> {
    async fn send(&self, message: Outgoing) -> Result<String, QueueError> {
        self.0.send(message).await
    }
    async fn send_batch(&self, messages: Vec<Outgoing>) -> Result<Vec<Sent>, QueueError> {
        let mut outcomes = Vec::new();
        for (n, message) in messages.into_iter().enumerate() {
            outcomes.push(match n {
                0 => Sent::Refused {
                    reason: "InvalidMessageContents: refused".into(),
                    permanent: true,
                },
                1 => Sent::Refused {
                    reason: "InternalError: try again".into(),
                    permanent: false,
                },
                _ => Sent::Accepted(self.0.send(message).await?),
            });
        }
        Ok(outcomes)
    }
    async fn receive(&self, max: usize) -> Result<Vec<Received>, QueueError> {
        self.0.receive(max).await
    }
    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        self.0.ack(receipt).await
    }
    async fn retry_after(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        self.0.retry_after(receipt, delay).await
    }
}

pub async fn a_partly_refused_batch_clears_what_was_sent_parks_what_never_can_be_and_keeps_the_rest(
    f: Fixture,
) {
    let (queue, _dir) = jobs_queue(&f);
    let shard = shard_of(TENANT);
    for n in 0..5 {
        f.table.write(enqueued(&f, n)).await.unwrap();
    }
    let refused = relay_shard(f.table.as_ref(), &PartlyRefusing(&queue), shard).await;
    assert!(
        refused.is_err(),
        "a passing refusal is reported: {refused:?}"
    );
    let first = drain(&queue).await;
    assert_eq!(first.len(), 3, "the three accepted, once: {first:?}");
    assert!(f
        .table
        .get(&Key::new(format!("OUTBOX_DEAD#{shard}"), message_id(0)))
        .await
        .unwrap()
        .is_some_and(|parked| parked.get_str("parked_because").is_some()));
    // The next round sends only what was held back: none of the three again.
    assert_eq!(
        relay_shard(f.table.as_ref(), &queue, shard).await.unwrap(),
        1
    );
    assert_eq!(drain(&queue).await, [job(1).to_body().unwrap()]);
    assert_eq!(
        relay_shard(f.table.as_ref(), &queue, shard).await.unwrap(),
        0
    );
}

pub async fn a_job_holding_characters_sqs_refuses_is_escaped_when_written_and_sent(f: Fixture) {
    let (queue, _dir) = jobs_queue(&f);
    let odd = Job::DeleteBlob {
        key: "uploads/odd-\u{FFFF}-\u{FFFE}".into(),
    };
    f.table
        .write(enqueue(&odd, &message_id(9), TENANT, f.clock.now()).unwrap())
        .await
        .unwrap();
    assert_eq!(relay_all(f.table.as_ref(), &queue).await.unwrap(), 1);
    let bodies = drain(&queue).await;
    assert_eq!(bodies.len(), 1);
    assert!(
        !bodies[0].contains('\u{FFFF}') && bodies[0].contains("\\uffff"),
        "{:?}",
        bodies[0]
    );
    let decoded: Job = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(decoded, odd, "the escape means the same JSON");
}

pub async fn an_item_sqs_would_refuse_already_in_the_outbox_is_parked(f: Fixture) {
    let (queue, _dir) = jobs_queue(&f);
    let shard = shard_of(TENANT);
    // Written before bodies were escaped: a raw U+FFFF that SQS refuses, for ever.
    let item = Item::new(&Key::new(format!("OUTBOX#{shard}"), message_id(0)))
        .with("body", "{\"type\":\"delete_blob\",\"key\":\"\u{FFFF}\"}")
        .with("created_at", "2026-12-01T00:00:00Z");
    f.table.put(item, None).await.unwrap();
    f.table.write(enqueued(&f, 1)).await.unwrap();
    assert_eq!(
        relay_shard(f.table.as_ref(), &queue, shard).await.unwrap(),
        1
    );
    assert_eq!(drain(&queue).await, [job(1).to_body().unwrap()]);
    assert!(f
        .table
        .get(&Key::new(format!("OUTBOX_DEAD#{shard}"), message_id(0)))
        .await
        .unwrap()
        .is_some());
}

conformance!(embedded, dynamo;
    a_partly_refused_batch_clears_what_was_sent_parks_what_never_can_be_and_keeps_the_rest,
    a_job_holding_characters_sqs_refuses_is_escaped_when_written_and_sent,
    an_item_sqs_would_refuse_already_in_the_outbox_is_parked,
    an_item_that_can_never_be_sent_is_parked_and_the_jobs_behind_it_go,
    a_job_written_with_its_change_is_sent_once_and_cleared,
    a_change_that_fails_sends_nothing,
    every_job_of_a_shard_is_sent_across_several_batches,
    a_job_the_queue_refused_stays_in_the_outbox_for_the_next_round,
    a_repeated_message_id_is_refused_rather_than_overwriting_a_waiting_job,
);

#[tokio::test]
async fn a_job_too_large_for_the_queue_is_refused_when_written() {
    let f = embedded().await;
    let huge = Job::DeleteBlob {
        key: "k".repeat(storefront::queue::MAX_BODY_BYTES),
    };
    let refused = enqueue(&huge, &message_id(1), TENANT, f.clock.now());
    assert!(refused.is_err(), "{refused:?}");
}

#[tokio::test]
async fn one_call_sends_a_bounded_number_of_batches_and_the_next_goes_on() {
    let f = embedded().await;
    let (queue, _dir) = jobs_queue(&f);
    let total = MAX_BATCHES_PER_CALL * 10 + 5;
    for n in 0..total {
        f.table.write(enqueued(&f, n)).await.unwrap();
    }
    let shard = shard_of(TENANT);
    let first = relay_shard(f.table.as_ref(), &queue, shard).await.unwrap();
    assert_eq!(first, MAX_BATCHES_PER_CALL * 10);
    assert_eq!(
        relay_shard(f.table.as_ref(), &queue, shard).await.unwrap(),
        5
    );
    assert_eq!(drain(&queue).await.len(), total);
}

/// The stream's first record names the outbox shard of [`TENANT`] (see events_replay.rs).
fn stream_event() -> storefront::lambda::RelayEvent {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events/outbox-relay.json"),
    )
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn a_stream_batch_whose_send_fails_reports_its_first_record_and_keeps_the_job() {
    let (embedded, _dir) = helpers::embedded(helpers::system_clock());
    let mut ctx = embedded.ctx.clone();
    ctx.queue = std::sync::Arc::new(Unreachable);
    let write = enqueue(&job(1), &message_id(1), TENANT, ctx.clock.now()).unwrap();
    ctx.table.write(write).await.unwrap();
    let response = storefront::lambda::handle_relay(&ctx, stream_event())
        .await
        .unwrap();
    let failed: Vec<Option<&str>> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_deref())
        .collect();
    assert_eq!(failed, [Some("111100000000000000000001")]);
    assert_eq!(
        relay_all(ctx.table.as_ref(), embedded.ctx.queue.as_ref())
            .await
            .unwrap(),
        1,
        "the job waited in the table"
    );
}

#[tokio::test]
async fn a_sweep_drains_every_shard_and_fails_loudly_when_the_queue_is_down() {
    let (embedded, _dir) = helpers::embedded(helpers::system_clock());
    let sweep: storefront::lambda::RelayEvent = serde_json::from_value(serde_json::json!({
        "version": "0",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "detail": {}
    }))
    .unwrap();
    for (n, tenant) in [
        "ten_01JD0000000000000000000001",
        "ten_01JD0000000000000000000007",
    ]
    .iter()
    .enumerate()
    {
        let write = enqueue(&job(n), &message_id(n), tenant, embedded.ctx.clock.now()).unwrap();
        embedded.ctx.table.write(write).await.unwrap();
    }
    let mut down = embedded.ctx.clone();
    down.queue = std::sync::Arc::new(Unreachable);
    let sweep_again: storefront::lambda::RelayEvent =
        serde_json::from_value(serde_json::json!({"detail-type": "Scheduled Event"})).unwrap();
    assert!(storefront::lambda::handle_relay(&down, sweep_again)
        .await
        .is_err());
    storefront::lambda::handle_relay(&embedded.ctx, sweep)
        .await
        .unwrap();
    assert_eq!(drain(&embedded.jobs).await.len(), 2);
}
