//! Background jobs: the batch handler every queue consumer uses, the workers it runs, and
//! the [`outbox`] that gets jobs onto the queue in the same transaction as the change
//! that causes them.
//!
//! A batch is processed message by message: each message's failure (an error or a panic)
//! is reported on its own, so a poisoned message never fails its batch-mates. On Lambda the
//! failures become `batchItemFailures` (`ReportBatchItemFailures`); in the local server's
//! worker loop they stay on the queue until the visibility timeout, and after
//! `maxReceiveCount` receives they move to the dead-letter queue, as SQS redrive does.

pub mod images;
pub mod outbox;
pub mod worker;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::FutureExt as _;
use tracing::Instrument as _;

use crate::context::AppContext;
use crate::queue::{Queue, MAX_BATCH};

/// One message of a batch, as both SQS events and the embedded queue deliver it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobMessage {
    pub id: String,
    pub body: String,
    pub receive_count: u32,
}

/// Handles one message. An `Err` (or a panic) leaves the message to be retried.
#[async_trait]
pub trait Worker: Send + Sync {
    async fn handle(&self, ctx: &AppContext, message: &JobMessage) -> anyhow::Result<()>;
}

/// The ids of the messages of a batch that failed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub failed: Vec<String>,
}

/// Runs every message of a batch through `worker`, concurrently and each isolated.
pub async fn process_batch(
    ctx: &AppContext,
    worker: &dyn Worker,
    messages: &[JobMessage],
) -> BatchOutcome {
    let runs = messages.iter().map(|message| {
        let span = tracing::info_span!(
            "job",
            function = crate::telemetry::function(),
            message_id = %message.id,
            receive_count = message.receive_count,
        );
        async move {
            let outcome = AssertUnwindSafe(worker.handle(ctx, message))
                .catch_unwind()
                .await;
            let error = match outcome {
                Ok(Ok(())) => return None,
                Ok(Err(e)) => format!("{e:#}"),
                Err(_) => "the worker panicked".to_owned(),
            };
            tracing::warn!(error, "job failed; it will be retried");
            Some(message.id.clone())
        }
        .instrument(span)
    });
    let failed: Vec<String> = futures_util::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect();
    crate::metrics::jobs(
        crate::telemetry::function(),
        messages.len() - failed.len(),
        failed.len(),
    );
    BatchOutcome { failed }
}

/// The most messages the local server's consumer works on at once.
pub const MAX_IN_FLIGHT: usize = 64;

/// The local server's consumer: receive, process, ack what succeeded, until `shutdown`.
/// What failed is left alone, to come back after the visibility timeout as on SQS.
///
/// Each message runs as its own task, up to [`MAX_IN_FLIGHT`] at once, and the loop goes
/// on receiving while they run: one slow message (a webhook endpoint taking its 15 s)
/// holds back nothing but itself, as Lambda's concurrent batches do on AWS.
pub async fn run_queue(
    ctx: AppContext,
    queue: Arc<dyn Queue>,
    worker: Arc<dyn Worker>,
    idle: Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mut running = tokio::task::JoinSet::new();
    while !*shutdown.borrow() {
        while running.try_join_next().is_some() {}
        let free = slots.available_permits().min(MAX_BATCH);
        if free == 0 {
            tokio::select! {
                _ = running.join_next() => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        let received = match queue.receive(free).await {
            Ok(received) => received,
            Err(e) => {
                tracing::error!(error = %e, "receiving jobs failed");
                Vec::new()
            }
        };
        if received.is_empty() {
            tokio::select! {
                _ = tokio::time::sleep(idle) => {}
                _ = shutdown.changed() => {}
            }
            continue;
        }
        for message in received {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                break;
            };
            let (ctx, queue, worker) = (ctx.clone(), queue.clone(), worker.clone());
            running.spawn(async move {
                let job = JobMessage {
                    id: message.id.clone(),
                    body: message.body.clone(),
                    receive_count: message.receive_count,
                };
                let outcome = process_batch(&ctx, worker.as_ref(), std::slice::from_ref(&job)).await;
                if outcome.failed.is_empty() {
                    if let Err(e) = queue.ack(&message.receipt).await {
                        tracing::warn!(error = %e, message_id = %message.id, "acknowledging a job failed; it may run again");
                    }
                }
                drop(permit);
            });
        }
    }
    // Jobs in flight finish (a delivery within its timeout) before the loop returns.
    while running.join_next().await.is_some() {}
}
