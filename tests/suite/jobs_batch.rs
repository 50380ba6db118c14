//! The batch handler and the local worker loop: failures are per message, a panic fails only
//! its own message, and a message that keeps failing ends in the dead-letter queue.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use storefront::clock::SystemClock;
use storefront::context::AppContext;
use storefront::jobs::{process_batch, run_queue, JobMessage, Worker};
use storefront::queue::embedded::{EmbeddedQueues, QueueConfig};
use storefront::queue::{Outgoing, Queue, Redrive};

use crate::helpers;

/// Fails messages whose body is `fail`, panics on `panic`, counts the rest.
#[derive(Default)]
struct Picky {
    handled: AtomicU32,
}

#[async_trait]
impl Worker for Picky {
    async fn handle(&self, _ctx: &AppContext, message: &JobMessage) -> anyhow::Result<()> {
        match message.body.as_str() {
            "fail" => anyhow::bail!("refused"),
            "panic" => panic!("poisoned message"),
            _ => {
                self.handled.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
        }
    }
}

fn message(id: &str, body: &str) -> JobMessage {
    JobMessage {
        id: id.into(),
        body: body.into(),
        receive_count: 1,
    }
}

#[tokio::test]
async fn a_poisoned_message_fails_alone_and_its_batch_mates_succeed() {
    let (embedded, _dir) = helpers::embedded(helpers::system_clock());
    let worker = Picky::default();
    let batch = [
        message("1", "ok"),
        message("2", "panic"),
        message("3", "ok"),
        message("4", "fail"),
    ];
    let outcome = process_batch(&embedded.ctx, &worker, &batch).await;
    assert_eq!(outcome.failed, ["2", "4"]);
    assert_eq!(worker.handled.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_loop_acks_successes_and_parks_a_failing_message_in_the_dead_letter_queue() {
    let (embedded, _dir) = helpers::embedded(helpers::system_clock());
    let dir = helpers::temp_dir();
    let queues = EmbeddedQueues::open(&dir.path().join("q.redb"), Arc::new(SystemClock)).unwrap();
    let dlq = queues.queue(
        "dlq",
        QueueConfig {
            visibility_timeout: Duration::from_secs(1),
            redrive: None,
        },
    );
    let jobs = queues.queue(
        "jobs",
        QueueConfig {
            visibility_timeout: Duration::from_millis(200),
            redrive: Some(Redrive {
                dead_letter_queue: "dlq".into(),
                max_receive_count: 2,
            }),
        },
    );
    jobs.send(Outgoing::new("ok")).await.unwrap();
    jobs.send(Outgoing::new("fail")).await.unwrap();
    let worker = Arc::new(Picky::default());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let loop_handle = tokio::spawn(run_queue(
        embedded.ctx.clone(),
        Arc::new(jobs.clone()),
        worker.clone(),
        Duration::from_millis(20),
        stopped,
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while dlq.len().await.unwrap() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the failing message never reached the dead-letter queue"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.send(true).unwrap();
    loop_handle.await.unwrap();
    assert_eq!(
        worker.handled.load(Ordering::SeqCst),
        1,
        "the good message ran once"
    );
    assert_eq!(
        jobs.len().await.unwrap(),
        0,
        "nothing left on the main queue"
    );
    let parked = dlq.receive(10).await.unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].body, "fail");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_server_relays_a_job_from_the_outbox_and_its_worker_runs_it() {
    use storefront::jobs::outbox;
    use storefront::jobs::worker::Job;

    let local = helpers::LocalServer::start().await;
    let ctx = &local.server.embedded().ctx;
    let key = "uploads/ten_01JD0000000000000000000000/img_01JD0000000000000000000000";
    ctx.blobs
        .put(
            key,
            bytes::Bytes::from_static(b"\x89PNG"),
            "image/png",
            None,
        )
        .await
        .unwrap();
    let write = outbox::enqueue(
        &Job::DeleteBlob { key: key.into() },
        "msg_01JD0000000000000000000000",
        "ten_01JD0000000000000000000000",
        ctx.clock.now(),
    )
    .unwrap();
    ctx.table.write(write).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ctx.blobs.head(key).await.unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox job never ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The relay deletes an item just after its send: wait for that, then it is gone for good.
    let outbox = storefront::store::Query::partition(
        storefront::store::Index::Primary,
        format!(
            "OUTBOX#{}",
            outbox::shard_of("ten_01JD0000000000000000000000")
        ),
    );
    while !ctx
        .table
        .query(outbox.clone())
        .await
        .unwrap()
        .items
        .is_empty()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the relay never cleared what it sent"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    local.server.stop().await;
}
