//! Lambda `webhook-deliveries-retry`: `POST /v1/webhook-endpoints/{id}/deliveries/{delivery_id}/retry`.

use storefront::context::AppContext;
use storefront::lambda::{serve_http, Error};

const FUNCTION: &str = "webhook-deliveries-retry";

#[tokio::main]
async fn main() -> Result<(), Error> {
    storefront::telemetry::init(FUNCTION);
    let ctx = AppContext::from_env().await?;
    serve_http(ctx, FUNCTION).await
}
