//! Lambda `auth-refresh`: `POST /v1/auth/refresh`.

use storefront::context::AppContext;
use storefront::lambda::{serve_http, Error};

const FUNCTION: &str = "auth-refresh";

#[tokio::main]
async fn main() -> Result<(), Error> {
    storefront::telemetry::init(FUNCTION);
    let ctx = AppContext::from_env().await?;
    serve_http(ctx, FUNCTION).await
}
