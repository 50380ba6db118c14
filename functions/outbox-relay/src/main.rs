//! Lambda `outbox-relay`: woken by the table's stream when an outbox item is written, sends
//! the waiting jobs of its shard to the jobs queue and clears them.

use storefront::context::AppContext;
use storefront::lambda::{serve_outbox_stream, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    storefront::telemetry::init("outbox-relay");
    let ctx = AppContext::from_env().await?;
    serve_outbox_stream(ctx).await
}
