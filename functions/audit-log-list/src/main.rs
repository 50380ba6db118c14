//! Lambda `audit-log-list`: `GET /v1/audit-log`.

use storefront::context::AppContext;
use storefront::lambda::{serve_http, Error};

const FUNCTION: &str = "audit-log-list";

#[tokio::main]
async fn main() -> Result<(), Error> {
    storefront::telemetry::init(FUNCTION);
    let ctx = AppContext::from_env().await?;
    serve_http(ctx, FUNCTION).await
}
