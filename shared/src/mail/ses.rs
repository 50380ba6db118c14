//! The SES mailer: SES API v2's `SendEmail` with the raw MIME message, so what SES sends is
//! byte for byte what the local server writes to its `.eml` files.
//! <https://docs.aws.amazon.com/ses/latest/APIReference-V2/API_SendEmail.html>

use anyhow::Context as _;
use async_trait::async_trait;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};
use aws_sdk_sesv2::Client;

use super::{Mailer, Outgoing};

pub struct SesMailer {
    client: Client,
}

impl SesMailer {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// SES from the Lambda's SDK configuration, each call a subsegment of its X-Ray trace.
    pub fn from_sdk(sdk: &aws_config::SdkConfig) -> Self {
        let xray = crate::xray::XRay::from_env();
        Self::new(Client::from_conf(
            aws_sdk_sesv2::config::Builder::from(sdk)
                .interceptor(xray)
                .build(),
        ))
    }
}

#[async_trait]
impl Mailer for SesMailer {
    #[tracing::instrument(skip_all, fields(email = %email.id))]
    async fn send(&self, email: &Outgoing) -> anyhow::Result<String> {
        let raw = RawMessage::builder()
            .data(Blob::new(email.raw.clone()))
            .build()
            .context("building the raw message")?;
        let sent = self
            .client
            .send_email()
            .from_email_address(&email.from)
            .destination(Destination::builder().to_addresses(&email.to).build())
            .content(EmailContent::builder().raw(raw).build())
            .send()
            .await
            .with_context(|| format!("SES SendEmail of {}", email.id))?;
        Ok(sent.message_id().unwrap_or_default().to_owned())
    }
}
