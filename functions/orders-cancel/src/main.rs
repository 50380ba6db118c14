//! Lambda `orders-cancel`: `POST /v1/orders/{id}/cancel`.

use storefront::context::AppContext;
use storefront::lambda::{serve_http, Error};

const FUNCTION: &str = "orders-cancel";

#[tokio::main]
async fn main() -> Result<(), Error> {
    storefront::telemetry::init(FUNCTION);
    let ctx = AppContext::from_env().await?;
    serve_http(ctx, FUNCTION).await
}
