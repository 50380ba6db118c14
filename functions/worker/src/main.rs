//! Lambda `worker`: consumes the jobs queue in batches, reporting only failed messages.

use std::sync::Arc;

use storefront::context::AppContext;
use storefront::jobs::worker::Dispatcher;
use storefront::lambda::{serve_sqs, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    storefront::telemetry::init("worker");
    let ctx = AppContext::from_env().await?;
    serve_sqs(ctx, Arc::new(Dispatcher)).await
}
