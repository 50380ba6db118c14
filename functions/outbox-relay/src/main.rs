//! Lambda `outbox-relay`: woken by the table's stream when an outbox item is written (and by
//! a sweep every minute), sends the waiting jobs to the jobs queue and clears them.

use storefront::context::AppContext;
use storefront::lambda::{serve_outbox_relay, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    storefront::telemetry::init("outbox-relay");
    let ctx = AppContext::from_env().await?;
    serve_outbox_relay(ctx).await
}
