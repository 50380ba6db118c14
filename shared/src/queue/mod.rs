//! The `Queue` port: at-least-once background jobs in SQS's shape.
//!
//! Producers `send` (with an optional delay of up to 15 minutes). Consumers `receive` a
//! batch, which hides each message for the queue's visibility timeout and counts the
//! receive; a message not `ack`ed reappears, and one received more than `max_receive_count`
//! times moves to the dead-letter queue instead, exactly as SQS redrive does. On AWS the
//! consumer side is Lambda's SQS event source; `receive` is used by the local server's
//! worker loop and by the conformance suite.

pub mod embedded;
pub mod sqs;

use std::time::Duration;

use async_trait::async_trait;

/// SQS's longest delay.
pub const MAX_DELAY: Duration = Duration::from_secs(15 * 60);
/// SQS's largest batch, for sends and receives.
pub const MAX_BATCH: usize = 10;
/// SQS's largest message body.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A message to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub body: String,
    pub delay: Duration,
}

impl Outgoing {
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// What became of one message of a batch: SQS has no all-or-nothing batch, so each
/// entry is accepted or refused on its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sent {
    /// Accepted, with the message's id.
    Accepted(String),
    /// Refused. `permanent` when the fault is the message's own (SQS's `SenderFault`), so
    /// sending it again cannot help; otherwise it may be sent again later.
    Refused { reason: String, permanent: bool },
}

/// A received message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub id: String,
    /// Names this receive; `ack` and `retry_after` take it.
    pub receipt: String,
    pub body: String,
    /// How many times the message has been received, this time included.
    pub receive_count: u32,
}

/// Where failed messages go and after how many receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redrive {
    pub dead_letter_queue: String,
    pub max_receive_count: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The message or batch breaks a limit (a bug in the caller).
    #[error("invalid queue request: {0}")]
    Invalid(String),
    /// The receipt is unknown or has expired (the message was received again since).
    #[error("receipt is no longer valid")]
    StaleReceipt,
    #[error(transparent)]
    Backend(#[from] anyhow::Error),
}

/// Whether SQS accepts `c` in a message body: #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to
/// #xFFFD | #x10000 to #x10FFFF (a Rust string holds no surrogates).
/// <https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_SendMessage.html>
fn sqs_allows(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// A JSON text made safe for SQS: the characters SQS refuses can only stand inside JSON
/// strings there (serde_json already escapes every control character), so each is written
/// as its `\uXXXX` escape, which means the same JSON.
pub fn json_for_sqs(json: String) -> String {
    if json.chars().all(sqs_allows) {
        return json;
    }
    json.chars()
        .fold(String::with_capacity(json.len() + 12), |mut out, c| {
            if sqs_allows(c) {
                out.push(c);
            } else {
                out.push_str(&format!("\\u{:04x}", u32::from(c)));
            }
            out
        })
}

pub(crate) fn validate(message: &Outgoing) -> Result<(), QueueError> {
    if let Some(c) = message.body.chars().find(|c| !sqs_allows(*c)) {
        return Err(QueueError::Invalid(format!(
            "a message body cannot hold U+{:04X}, which SQS refuses",
            u32::from(c)
        )));
    }
    if message.delay > MAX_DELAY {
        return Err(QueueError::Invalid(format!(
            "delay {:?} is over SQS's 15 minutes",
            message.delay
        )));
    }
    if message.body.is_empty() || message.body.len() > MAX_BODY_BYTES {
        return Err(QueueError::Invalid(format!(
            "a message body holds 1..={MAX_BODY_BYTES} bytes, not {}",
            message.body.len()
        )));
    }
    Ok(())
}

pub(crate) fn validate_batch(messages: &[Outgoing]) -> Result<(), QueueError> {
    if messages.is_empty() || messages.len() > MAX_BATCH {
        return Err(QueueError::Invalid(format!(
            "a batch holds 1..={MAX_BATCH} messages, not {}",
            messages.len()
        )));
    }
    messages.iter().try_for_each(validate)
}

/// One queue.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends one message and returns its id.
    async fn send(&self, message: Outgoing) -> Result<String, QueueError>;
    /// Sends up to ten messages at once and says what became of each, in order; the call
    /// fails as a whole only when nothing could be sent (or the batch breaks a limit).
    async fn send_batch(&self, messages: Vec<Outgoing>) -> Result<Vec<Sent>, QueueError>;
    /// Receives up to `max` (1..=10) visible messages, hiding them for the visibility timeout.
    async fn receive(&self, max: usize) -> Result<Vec<Received>, QueueError>;
    /// Deletes a received message: it was handled.
    async fn ack(&self, receipt: &str) -> Result<(), QueueError>;
    /// Makes a received message visible again after `delay` instead of the full timeout.
    async fn retry_after(&self, receipt: &str, delay: Duration) -> Result<(), QueueError>;
}

/// The queue of a function its template gives none (no `STOREFRONT_QUEUE_URL`): every
/// call fails with a message naming the missing setting.
pub struct Unconfigured(pub &'static str);

impl Unconfigured {
    fn error(&self) -> QueueError {
        QueueError::Backend(anyhow::anyhow!(
            "this function is not configured for a queue ({} is unset)",
            self.0
        ))
    }
}

#[async_trait]
impl Queue for Unconfigured {
    async fn send(&self, _: Outgoing) -> Result<String, QueueError> {
        Err(self.error())
    }
    async fn send_batch(&self, _: Vec<Outgoing>) -> Result<Vec<Sent>, QueueError> {
        Err(self.error())
    }
    async fn receive(&self, _: usize) -> Result<Vec<Received>, QueueError> {
        Err(self.error())
    }
    async fn ack(&self, _: &str) -> Result<(), QueueError> {
        Err(self.error())
    }
    async fn retry_after(&self, _: &str, _: Duration) -> Result<(), QueueError> {
        Err(self.error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_made_safe_for_sqs_without_changing_its_meaning() {
        let raw = serde_json::to_string(&serde_json::json!({"k": "a\u{FFFF}b\u{FFFE}\u{0001}é"}))
            .unwrap();
        assert!(validate(&Outgoing::new(raw.as_str())).is_err());
        let safe = json_for_sqs(raw.clone());
        assert!(validate(&Outgoing::new(safe.as_str())).is_ok(), "{safe}");
        let (before, after): (serde_json::Value, serde_json::Value) = (
            serde_json::from_str(&raw).unwrap(),
            serde_json::from_str(&safe).unwrap(),
        );
        assert_eq!(before, after);
        assert_eq!(json_for_sqs("{\"k\":\"é\"}".into()), "{\"k\":\"é\"}");
    }
}
