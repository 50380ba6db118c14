//! The SQS `Queue` adapter: background jobs on AWS, and the queue-with-dead-letter-queue
//! setup that the tests and the local tooling create.
//!
//! SQS counts delays and visibility in whole seconds, so a duration with a fraction of a
//! second is rounded up: a message never shows up earlier than asked.

use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use aws_sdk_sqs::error::SdkError;
use aws_sdk_sqs::operation::change_message_visibility::ChangeMessageVisibilityError;
use aws_sdk_sqs::operation::delete_message::DeleteMessageError;
use aws_sdk_sqs::types::{
    Message, MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;

use super::{validate, validate_batch, Outgoing, Queue, QueueError, Received, Sent, MAX_BATCH};

/// The longest a received message can be kept hidden
/// (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-visibility-timeout.html>).
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// How long `receive` waits for a message: long polling, kept short so callers that
/// drain a queue (the worker loop, the tests) are not held up.
const WAIT_SECONDS: i32 = 1;
/// How long a dead-letter queue keeps messages: SQS's longest, so failures can be inspected.
const DLQ_RETENTION_SECONDS: &str = "1209600";

/// One SQS queue, by URL.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            url: queue_url.into(),
        }
    }

    fn failed<E>(&self, err: SdkError<E>, operation: &str) -> QueueError
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        QueueError::Backend(
            anyhow::Error::new(err).context(format!("SQS {operation} on {}", self.url)),
        )
    }
}

/// Whole seconds, rounded up, as SQS's `i32` fields take them.
fn seconds(duration: Duration, max: Duration) -> i32 {
    let whole = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(whole.min(max.as_secs())).unwrap_or(i32::MAX)
}

fn received(message: &Message) -> anyhow::Result<Received> {
    let field = |value: Option<&str>, name: &str| {
        value
            .map(str::to_owned)
            .with_context(|| format!("SQS returned a message without its {name}"))
    };
    let count = message
        .attributes()
        .and_then(|attrs| attrs.get(&MessageSystemAttributeName::ApproximateReceiveCount))
        .context("SQS returned a message without ApproximateReceiveCount")?;
    Ok(Received {
        id: field(message.message_id(), "id")?,
        receipt: field(message.receipt_handle(), "receipt handle")?,
        body: field(message.body(), "body")?,
        receive_count: count
            .parse()
            .with_context(|| format!("SQS receive count `{count}` is not a number"))?,
    })
}

/// Ids of a batch's successful entries, in the order the messages were given.
/// Each entry's outcome, in the batch's order, from SQS's answer (entries are named by
/// their index in the batch).
fn batch_outcomes(
    output: &aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput,
    sent: usize,
) -> anyhow::Result<Vec<Sent>> {
    let mut outcomes = vec![None; sent];
    let slot = |id: &str| {
        id.parse::<usize>()
            .ok()
            .filter(|index| *index < sent)
            .with_context(|| format!("SQS answered for an unknown batch entry `{id}`"))
    };
    for entry in output.successful() {
        outcomes[slot(entry.id())?] = Some(Sent::Accepted(entry.message_id().to_owned()));
    }
    for entry in output.failed() {
        outcomes[slot(entry.id())?] = Some(Sent::Refused {
            reason: format!(
                "{}: {}",
                entry.code(),
                entry.message().unwrap_or("no message")
            ),
            permanent: entry.sender_fault(),
        });
    }
    outcomes
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .context("SQS SendMessageBatch did not answer for every entry")
}

#[async_trait]
impl Queue for SqsQueue {
    #[tracing::instrument(skip_all, fields(queue = %self.url))]
    async fn send(&self, message: Outgoing) -> Result<String, QueueError> {
        validate(&message)?;
        let output = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(message.body)
            .delay_seconds(seconds(message.delay, super::MAX_DELAY))
            .send()
            .await
            .map_err(|e| self.failed(e, "SendMessage"))?;
        let id = output
            .message_id()
            .with_context(|| format!("SQS SendMessage on {} returned no message id", self.url))?;
        Ok(id.to_owned())
    }

    #[tracing::instrument(skip_all, fields(queue = %self.url, messages = messages.len()))]
    async fn send_batch(&self, messages: Vec<Outgoing>) -> Result<Vec<Sent>, QueueError> {
        validate_batch(&messages)?;
        let sent = messages.len();
        let entries = messages
            .into_iter()
            .enumerate()
            .map(|(index, message)| {
                SendMessageBatchRequestEntry::builder()
                    .id(index.to_string())
                    .message_body(message.body)
                    .delay_seconds(seconds(message.delay, super::MAX_DELAY))
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()
            .context("building an SQS batch")?;
        let output = self
            .client
            .send_message_batch()
            .queue_url(&self.url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| self.failed(e, "SendMessageBatch"))?;
        Ok(batch_outcomes(&output, sent)
            .with_context(|| format!("SQS SendMessageBatch on {}", self.url))?)
    }

    #[tracing::instrument(skip_all, fields(queue = %self.url, max))]
    async fn receive(&self, max: usize) -> Result<Vec<Received>, QueueError> {
        let count = match i32::try_from(max) {
            Ok(count) if (1..=MAX_BATCH).contains(&max) => count,
            _ => {
                return Err(QueueError::Invalid(format!(
                    "receive takes 1..={MAX_BATCH} messages"
                )))
            }
        };
        let output = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(count)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .wait_time_seconds(WAIT_SECONDS)
            .send()
            .await
            .map_err(|e| self.failed(e, "ReceiveMessage"))?;
        Ok(output
            .messages()
            .iter()
            .map(received)
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(|| format!("SQS ReceiveMessage on {}", self.url))?)
    }

    #[tracing::instrument(skip_all, fields(queue = %self.url))]
    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        let result = self
            .client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(DeleteMessageError::is_receipt_handle_is_invalid) =>
            {
                Err(QueueError::StaleReceipt)
            }
            Err(err) => Err(self.failed(err, "DeleteMessage")),
        }
    }

    #[tracing::instrument(skip_all, fields(queue = %self.url, delay = ?delay))]
    async fn retry_after(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        let result = self
            .client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds(delay, MAX_VISIBILITY))
            .send()
            .await;
        let stale = |e: &ChangeMessageVisibilityError| {
            e.is_receipt_handle_is_invalid() || e.is_message_not_inflight()
        };
        match result {
            Ok(_) => Ok(()),
            Err(err) if err.as_service_error().is_some_and(stale) => Err(QueueError::StaleReceipt),
            Err(err) => Err(self.failed(err, "ChangeMessageVisibility")),
        }
    }
}

/// Creates `<name>-dlq` and `<name>`, whose messages move to the former after
/// `max_receive_count` receives, and returns their URLs: `(queue, dead-letter queue)`.
#[tracing::instrument(skip(client))]
pub async fn create_queue_with_dlq(
    client: &Client,
    name: &str,
    max_receive_count: u32,
    visibility_timeout_secs: u32,
) -> anyhow::Result<(String, String)> {
    let dlq_name = format!("{name}-dlq");
    let dlq_url = create_queue(
        client,
        &dlq_name,
        &[(
            QueueAttributeName::MessageRetentionPeriod,
            DLQ_RETENTION_SECONDS.to_owned(),
        )],
    )
    .await?;
    let dlq_arn = queue_arn(client, &dlq_url).await?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": max_receive_count,
    });
    let url = create_queue(
        client,
        name,
        &[
            (QueueAttributeName::RedrivePolicy, redrive.to_string()),
            (
                QueueAttributeName::VisibilityTimeout,
                visibility_timeout_secs.to_string(),
            ),
        ],
    )
    .await?;
    Ok((url, dlq_url))
}

async fn create_queue(
    client: &Client,
    name: &str,
    attributes: &[(QueueAttributeName, String)],
) -> anyhow::Result<String> {
    let request = attributes.iter().fold(
        client.create_queue().queue_name(name),
        |request, (attribute, value)| request.attributes(attribute.clone(), value),
    );
    let output = request
        .send()
        .await
        .with_context(|| format!("SQS CreateQueue {name}"))?;
    output
        .queue_url()
        .map(str::to_owned)
        .with_context(|| format!("SQS CreateQueue {name} returned no URL"))
}

async fn queue_arn(client: &Client, url: &str) -> anyhow::Result<String> {
    let output = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .with_context(|| format!("SQS GetQueueAttributes on {url}"))?;
    output
        .attributes()
        .and_then(|attrs| attrs.get(&QueueAttributeName::QueueArn))
        .cloned()
        .with_context(|| format!("SQS GetQueueAttributes on {url} returned no QueueArn"))
}

#[cfg(test)]
mod tests {
    use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchOutput;
    use aws_sdk_sqs::types::{BatchResultErrorEntry, SendMessageBatchResultEntry};

    use super::*;

    #[test]
    fn a_partly_failed_batch_is_read_entry_by_entry_in_the_order_sent() {
        let output = SendMessageBatchOutput::builder()
            .successful(
                SendMessageBatchResultEntry::builder()
                    .id("2")
                    .message_id("m-2")
                    .md5_of_message_body("x")
                    .build()
                    .unwrap(),
            )
            .successful(
                SendMessageBatchResultEntry::builder()
                    .id("0")
                    .message_id("m-0")
                    .md5_of_message_body("x")
                    .build()
                    .unwrap(),
            )
            .failed(
                BatchResultErrorEntry::builder()
                    .id("1")
                    .code("InternalError")
                    .sender_fault(false)
                    .build()
                    .unwrap(),
            )
            .failed(
                BatchResultErrorEntry::builder()
                    .id("3")
                    .code("InvalidMessageContents")
                    .sender_fault(true)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let outcomes = batch_outcomes(&output, 4).unwrap();
        assert_eq!(outcomes[0], Sent::Accepted("m-0".into()));
        assert!(matches!(
            &outcomes[1],
            Sent::Refused {
                permanent: false,
                ..
            }
        ));
        assert_eq!(outcomes[2], Sent::Accepted("m-2".into()));
        assert!(
            matches!(&outcomes[3], Sent::Refused { permanent: true, reason } if reason.starts_with("InvalidMessageContents"))
        );
        assert!(
            batch_outcomes(&output, 3).is_err(),
            "an entry outside the batch is an error"
        );
    }
}
