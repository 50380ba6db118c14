//! What a Lambda binary's `main` hands to the runtime: an HTTP function serving its rows of
//! the route table, an SQS consumer running the batch handler, or the outbox relay woken by
//! the table's stream.

use std::sync::Arc;

use aws_lambda_events::dynamodb::Event as StreamEvent;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use aws_lambda_events::streams::{DynamoDbBatchItemFailure, DynamoDbEventResponse};
use lambda_runtime::LambdaEvent;

use crate::context::AppContext;
use crate::jobs::outbox::{relay_all, relay_shard, shard_of_partition};
use crate::jobs::{process_batch, JobMessage, Worker};
use crate::routes;
use crate::store::Key;

pub type Error = lambda_runtime::Error;

/// Serves the routes of `function` (its rows of [`routes::ROUTES`]) until the sandbox ends.
pub async fn serve_http(ctx: AppContext, function: &'static str) -> Result<(), Error> {
    let routes = routes::of_function(function);
    if routes.is_empty() {
        return Err(format!("no route in the route table is served by `{function}`").into());
    }
    if ctx.keys.verifies_nothing() {
        tracing::warn!("no token verification keys (STOREFRONT_JWKS is unset): every bearer token will get 401");
    }
    serve_routes(ctx, routes).await
}

/// Serves API Gateway's `$default` route ([`routes::UNMATCHED`]): 404 and 405 problems.
pub async fn serve_unmatched(ctx: AppContext) -> Result<(), Error> {
    serve_routes(ctx, routes::unmatched()).await
}

async fn serve_routes<R>(ctx: AppContext, routes: Vec<R>) -> Result<(), Error>
where
    R: std::borrow::Borrow<crate::http::router::Route> + Send + Sync + 'static,
{
    let ctx = Arc::new(ctx);
    let routes: Arc<[R]> = routes.into();
    lambda_http::run(lambda_http::service_fn(move |req| {
        let (ctx, routes) = (ctx.clone(), routes.clone());
        async move { Ok::<_, std::convert::Infallible>(crate::edge::dispatch(&ctx, &routes, req).await) }
    }))
    .await
}

/// Turns an SQS event into the batch handler's messages.
pub fn messages_of(event: &SqsEvent) -> Vec<JobMessage> {
    event
        .records
        .iter()
        .map(|record| JobMessage {
            id: record.message_id.clone().unwrap_or_default(),
            body: record.body.clone().unwrap_or_default(),
            receive_count: record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|n| n.parse().ok())
                .unwrap_or(1),
        })
        .collect()
}

/// Handles one SQS event: the response names only the messages that failed.
pub async fn handle_sqs(
    ctx: &AppContext,
    worker: &dyn Worker,
    event: SqsEvent,
) -> SqsBatchResponse {
    let outcome = process_batch(ctx, worker, &messages_of(&event)).await;
    let mut response = SqsBatchResponse::default();
    response.set_failures(outcome.failed);
    response
}

/// Consumes SQS batches with `worker` until the sandbox ends.
pub async fn serve_sqs(ctx: AppContext, worker: Arc<dyn Worker>) -> Result<(), Error> {
    let ctx = Arc::new(ctx);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<SqsEvent>| {
            let (ctx, worker) = (ctx.clone(), worker.clone());
            async move { Ok::<_, Error>(handle_sqs(&ctx, worker.as_ref(), event.payload).await) }
        },
    ))
    .await
}

/// Handles one batch of the table's stream: drains every outbox shard a new item woke.
///
/// A shard that fails is reported by the sequence number of the first record that named
/// it, so Lambda retries the stream from there (`ReportBatchItemFailures`); its items stay
/// in the table meanwhile, and nothing is lost.
/// <https://docs.aws.amazon.com/lambda/latest/dg/services-ddb-batchfailurereporting.html>
pub async fn handle_outbox_stream(ctx: &AppContext, event: StreamEvent) -> DynamoDbEventResponse {
    let mut woken = std::collections::BTreeMap::new();
    for record in &event.records {
        let shard = serde_dynamo::from_item::<_, Key>(record.change.keys.clone())
            .ok()
            .and_then(|key| shard_of_partition(&key.pk));
        if let Some(shard) = shard {
            woken
                .entry(shard)
                .or_insert_with(|| record.change.sequence_number.clone());
        }
    }
    let mut response = DynamoDbEventResponse::default();
    for (shard, first_record) in woken {
        if let Err(e) = relay_shard(ctx.table.as_ref(), ctx, shard).await {
            tracing::warn!(
                shard,
                error = format!("{e:#}"),
                "outbox relay failed; the stream will retry"
            );
            let mut failure = DynamoDbBatchItemFailure::default();
            failure.item_identifier = first_record;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// What wakes the outbox relay: the table's stream, or the sweep EventBridge sends every
/// minute (any event without stream records).
#[derive(Debug, serde::Deserialize)]
#[serde(untagged)]
pub enum RelayEvent {
    Stream(StreamEvent),
    Sweep(serde_json::Value),
}

/// Handles one wake-up of the relay. A sweep drains every shard, and fails (so the
/// failure shows in the function's error metrics) when a shard cannot be sent.
pub async fn handle_relay(
    ctx: &AppContext,
    event: RelayEvent,
) -> Result<DynamoDbEventResponse, Error> {
    match event {
        RelayEvent::Stream(event) => Ok(handle_outbox_stream(ctx, event).await),
        RelayEvent::Sweep(_) => {
            // With its causes: the runtime reports only the error's own message.
            let sent = relay_all(ctx.table.as_ref(), ctx)
                .await
                .map_err(|e| Error::from(format!("{e:#}")))?;
            if sent > 0 {
                tracing::warn!(sent, "the sweep sent jobs the stream had not");
            }
            Ok(DynamoDbEventResponse::default())
        }
    }
}

/// Relays the outbox, woken by the table's stream and the sweep, until the sandbox ends.
pub async fn serve_outbox_relay(ctx: AppContext) -> Result<(), Error> {
    let ctx = Arc::new(ctx);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: LambdaEvent<RelayEvent>| {
            let ctx = ctx.clone();
            async move { handle_relay(&ctx, event.payload).await }
        },
    ))
    .await
}

/// Handles one tick of the order expiry schedule: cancels and restocks every order whose
/// payment window has passed unpaid. Fails (so it shows in the function's error metrics,
/// and the next tick tries again) when the due index cannot be read.
pub async fn handle_order_expiry(ctx: &AppContext) -> Result<crate::orders::Sweep, Error> {
    crate::orders::expire_overdue(ctx)
        .await
        .map_err(|e| Error::from(format!("{e:#}")))
}

/// Runs the order expiry sweep on each EventBridge schedule tick until the sandbox ends.
pub async fn serve_order_expiry(ctx: AppContext) -> Result<(), Error> {
    let ctx = Arc::new(ctx);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |_: LambdaEvent<serde_json::Value>| {
            let ctx = ctx.clone();
            async move { handle_order_expiry(&ctx).await }
        },
    ))
    .await
}
