//! Lambda `orders-expire`: every minute, cancels the orders whose payment window has passed
//! unpaid and returns their stock.

use storefront::context::AppContext;
use storefront::lambda::{serve_order_expiry, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    storefront::telemetry::init("orders-expire");
    let ctx = AppContext::from_env().await?;
    serve_order_expiry(ctx).await
}
