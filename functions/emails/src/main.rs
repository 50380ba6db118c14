//! Lambda `emails`: consumes the emails queue and sends each customer email with SES (the
//! only function that may), reporting only failed messages.

use std::sync::Arc;

use storefront::context::AppContext;
use storefront::jobs::worker::Dispatcher;
use storefront::lambda::{serve_sqs, Error};
use storefront::mail::ses::SesMailer;

#[tokio::main]
async fn main() -> Result<(), Error> {
    storefront::telemetry::init("emails");
    let mut ctx = AppContext::from_env().await?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    ctx.mailer = Arc::new(SesMailer::from_sdk(&sdk));
    serve_sqs(ctx, Arc::new(Dispatcher)).await
}
