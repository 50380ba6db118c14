//! Lambda `images-worker`: consumes the bucket's upload notifications (through SQS),
//! checks each image and makes its thumbnail, reporting failed messages only.

use std::sync::Arc;

use storefront::context::AppContext;
use storefront::jobs::images::ImageUploads;
use storefront::lambda::{serve_sqs, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    storefront::telemetry::init("images-worker");
    let ctx = AppContext::from_env().await?;
    serve_sqs(ctx, Arc::new(ImageUploads::default())).await
}
