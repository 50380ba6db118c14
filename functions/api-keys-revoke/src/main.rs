//! Lambda `api-keys-revoke`: `DELETE /v1/api-keys/{id}`.

use storefront::context::AppContext;
use storefront::lambda::{serve_http, Error};

const FUNCTION: &str = "api-keys-revoke";

#[tokio::main]
async fn main() -> Result<(), Error> {
    storefront::telemetry::init(FUNCTION);
    let ctx = AppContext::from_env().await?;
    serve_http(ctx, FUNCTION).await
}
