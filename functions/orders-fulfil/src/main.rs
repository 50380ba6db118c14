//! Lambda `orders-fulfil`: `POST /v1/orders/{id}/fulfil`.

use storefront::context::AppContext;
use storefront::lambda::{serve_http, Error};

const FUNCTION: &str = "orders-fulfil";

#[tokio::main]
async fn main() -> Result<(), Error> {
    storefront::telemetry::init(FUNCTION);
    let ctx = AppContext::from_env().await?;
    serve_http(ctx, FUNCTION).await
}
