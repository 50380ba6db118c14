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

pub(crate) fn validate(message: &Outgoing) -> Result<(), QueueError> {
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
    /// Sends up to ten messages at once; all are accepted or the call fails.
    async fn send_batch(&self, messages: Vec<Outgoing>) -> Result<Vec<String>, QueueError>;
    /// Receives up to `max` (1..=10) visible messages, hiding them for the visibility timeout.
    async fn receive(&self, max: usize) -> Result<Vec<Received>, QueueError>;
    /// Deletes a received message: it was handled.
    async fn ack(&self, receipt: &str) -> Result<(), QueueError>;
    /// Makes a received message visible again after `delay` instead of the full timeout.
    async fn retry_after(&self, receipt: &str, delay: Duration) -> Result<(), QueueError>;
}
