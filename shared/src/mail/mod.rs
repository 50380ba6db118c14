//! The `Mailer` port: sends one email, already composed as a MIME message. On AWS the
//! adapter is SES ([`ses`]); the local server writes each message to a file ([`files`]).

pub mod files;
pub mod ses;

use async_trait::async_trait;

/// One composed email.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Stable for one message however often it is sent (`<event id>.<kind>`), so an
    /// adapter that can be idempotent is.
    pub id: String,
    /// The envelope's sender and recipient (the message's headers name them too).
    pub from: String,
    pub to: String,
    /// The message as RFC 5322 text.
    pub raw: Vec<u8>,
}

#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends the message; answers what the provider calls it (SES's message id, a path).
    async fn send(&self, email: &Outgoing) -> anyhow::Result<String>;
}

/// The mailer of a process that sends no email: every send fails, naming the setting.
pub struct Unconfigured;

#[async_trait]
impl Mailer for Unconfigured {
    async fn send(&self, _: &Outgoing) -> anyhow::Result<String> {
        anyhow::bail!("this process sends no email (STOREFRONT_EMAIL_SENDER is unset)")
    }
}
