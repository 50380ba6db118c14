//! Lambda `not-found`: API Gateway's `$default` route. Every request no route matches gets a
//! 404 problem, or a 405 with `Allow` when its path exists under other methods, with
//! `X-Request-Id`, exactly as the local router answers it.

use storefront::context::AppContext;
use storefront::lambda::{serve_unmatched, Error};
use storefront::routes::UNMATCHED;

#[tokio::main]
async fn main() -> Result<(), Error> {
    storefront::telemetry::init(UNMATCHED);
    let ctx = AppContext::from_env().await?;
    serve_unmatched(ctx).await
}
