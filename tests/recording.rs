//! A [`Table`] that records every request made through it: the DynamoDB API call it is
//! (`GetItem` … `TransactWriteItems`), and each item it touches as the action IAM
//! authorises (a transaction is authorised item by item), with the table or index and the
//! partition. `bench-requests` counts the calls per operation; the least-privilege test
//! holds each function's policy to the items. [`RecordingQueue`] and [`RecordingBlobs`]
//! record the SQS and S3 actions of the other two ports the same way.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use storefront::blobs::{Blob, BlobError, BlobMeta, Blobs, Presigned};
use storefront::queue::{Outgoing, Queue, QueueError, Received, Sent};
use storefront::store::{
    Condition, Consistency, Index, Item, Key, Page, Query, StoreError, Table, TxOp, UpdateOp,
};

/// One request to the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// What the caller was doing, as last set with [`Recording::label`].
    pub label: String,
    /// The DynamoDB API call.
    pub api: &'static str,
    pub items: Vec<Touch>,
}

/// One item a request touches, as IAM authorises it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Touch {
    /// The IAM action, without `dynamodb:`.
    pub action: &'static str,
    /// `table`, or `table/index/<name>`.
    pub resource: &'static str,
    pub partition: String,
}

/// Records the requests made through it, then passes them on to `inner`.
pub struct Recording {
    inner: Arc<dyn Table>,
    label: Mutex<String>,
    requests: Mutex<Vec<Request>>,
    others: Mutex<Vec<Other>>,
}

/// A request to another service, through [`RecordingQueue`] or [`RecordingBlobs`]: the
/// IAM action it needs and the resource as template.yaml names it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Other {
    pub label: String,
    pub action: &'static str,
    pub resource: &'static str,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Recording {
    pub fn new(inner: Arc<dyn Table>) -> Self {
        Self {
            inner,
            label: Mutex::new(String::new()),
            requests: Mutex::new(Vec::new()),
            others: Mutex::new(Vec::new()),
        }
    }

    /// The requests to other services recorded since the last call, oldest first.
    pub fn take_others(&self) -> Vec<Other> {
        std::mem::take(&mut *locked(&self.others))
    }

    fn note(&self, action: &'static str, resource: &'static str) {
        let label = locked(&self.label).clone();
        locked(&self.others).push(Other {
            label,
            action,
            resource,
        });
    }

    /// Labels the requests recorded from now on (the function making them, say).
    pub fn label(&self, label: &str) {
        *locked(&self.label) = label.to_owned();
    }

    /// The requests recorded since the last call, oldest first.
    pub fn take(&self) -> Vec<Request> {
        std::mem::take(&mut *locked(&self.requests))
    }

    fn record(&self, api: &'static str, items: Vec<Touch>) {
        let label = locked(&self.label).clone();
        locked(&self.requests).push(Request { label, api, items });
    }

    /// A single-item request on the table itself, whose API call is its IAM action.
    fn record_one(&self, action: &'static str, partition: &str) {
        let touch = Touch {
            action,
            resource: "table",
            partition: partition.to_owned(),
        };
        self.record(action, vec![touch]);
    }
}

#[async_trait]
impl Table for Recording {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.record_one("GetItem", &key.pk);
        self.inner.get(key).await
    }
    async fn get_many(
        &self,
        keys: &[Key],
        consistency: Consistency,
    ) -> Result<Vec<Option<Item>>, StoreError> {
        let items = keys
            .iter()
            .map(|key| Touch {
                action: "BatchGetItem",
                resource: "table",
                partition: key.pk.clone(),
            })
            .collect();
        self.record("BatchGetItem", items);
        self.inner.get_many(keys, consistency).await
    }
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), StoreError> {
        self.record_one("PutItem", &item.key()?.pk);
        self.inner.put(item, condition).await
    }
    async fn update(
        &self,
        key: &Key,
        ops: Vec<UpdateOp>,
        condition: Option<Condition>,
    ) -> Result<Item, StoreError> {
        self.record_one("UpdateItem", &key.pk);
        self.inner.update(key, ops, condition).await
    }
    async fn delete(
        &self,
        key: &Key,
        condition: Option<Condition>,
    ) -> Result<Option<Item>, StoreError> {
        self.record_one("DeleteItem", &key.pk);
        self.inner.delete(key, condition).await
    }
    async fn query(&self, query: Query) -> Result<Page, StoreError> {
        let resource = match query.index {
            Index::Primary => "table",
            Index::Gsi1 => "table/index/gsi1",
        };
        let touch = Touch {
            action: "Query",
            resource,
            partition: query.partition.clone(),
        };
        self.record("Query", vec![touch]);
        self.inner.query(query).await
    }
    async fn transact(&self, ops: Vec<TxOp>) -> Result<(), StoreError> {
        let mut items = Vec::with_capacity(ops.len());
        for op in &ops {
            let action = match op {
                TxOp::Put { .. } => "PutItem",
                TxOp::Update { .. } => "UpdateItem",
                TxOp::Delete { .. } => "DeleteItem",
                TxOp::Check { .. } => "ConditionCheckItem",
            };
            items.push(Touch {
                action,
                resource: "table",
                partition: op.key()?.pk,
            });
        }
        self.record("TransactWriteItems", items);
        self.inner.transact(ops).await
    }
}

/// A queue, recorded as `sqs:*` requests on `queue` (`JobsQueue.Arn`, as template.yaml
/// names it) under the [`Recording`]'s label.
pub struct RecordingQueue {
    pub recording: Arc<Recording>,
    pub inner: Arc<dyn Queue>,
    pub queue: &'static str,
}

#[async_trait]
impl Queue for RecordingQueue {
    async fn send(&self, message: Outgoing) -> Result<String, QueueError> {
        self.recording.note("sqs:SendMessage", self.queue);
        self.inner.send(message).await
    }
    async fn send_batch(&self, messages: Vec<Outgoing>) -> Result<Vec<Sent>, QueueError> {
        // SendMessageBatch is authorised as SendMessage.
        self.recording.note("sqs:SendMessage", self.queue);
        self.inner.send_batch(messages).await
    }
    async fn receive(&self, max: usize) -> Result<Vec<Received>, QueueError> {
        self.recording.note("sqs:ReceiveMessage", self.queue);
        self.inner.receive(max).await
    }
    async fn ack(&self, receipt: &str) -> Result<(), QueueError> {
        self.recording.note("sqs:DeleteMessage", self.queue);
        self.inner.ack(receipt).await
    }
    async fn retry_after(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        self.recording
            .note("sqs:ChangeMessageVisibility", self.queue);
        self.inner.retry_after(receipt, delay).await
    }
}

/// A mailer, recorded as `ses:SendEmail` on the stack's identities under the
/// [`Recording`]'s label; it sends nothing.
pub struct RecordingMailer {
    pub recording: Arc<Recording>,
}

#[async_trait]
impl storefront::mail::Mailer for RecordingMailer {
    async fn send(&self, _: &storefront::mail::Outgoing) -> anyhow::Result<String> {
        self.recording.note(
            "ses:SendEmail",
            "arn:${AWS::Partition}:ses:${AWS::Region}:${AWS::AccountId}:identity/*",
        );
        Ok("recorded".into())
    }
}

/// The uploads bucket, recorded as `s3:*` requests on its objects under the
/// [`Recording`]'s label (a presigned URL is authorised as the request it signs).
pub struct RecordingBlobs {
    pub recording: Arc<Recording>,
    pub inner: Arc<dyn Blobs>,
}

/// The objects a key is among, as template.yaml's statements name them: by the key's first
/// segment (`uploads/`, `images/`).
fn objects(key: &str) -> &'static str {
    match key.split('/').next() {
        Some("uploads") => "${UploadsBucket.Arn}/uploads/*",
        Some("images") => "${UploadsBucket.Arn}/images/*",
        _ => "${UploadsBucket.Arn}/*",
    }
}

#[async_trait]
impl Blobs for RecordingBlobs {
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        length: u64,
        ttl: Duration,
    ) -> Result<Presigned, BlobError> {
        self.recording.note("s3:PutObject", objects(key));
        self.inner.presign_put(key, content_type, length, ttl).await
    }
    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<Presigned, BlobError> {
        self.recording.note("s3:GetObject", objects(key));
        self.inner.presign_get(key, ttl).await
    }
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        self.recording.note("s3:GetObject", objects(key));
        self.inner.head(key).await
    }
    async fn get(&self, key: &str) -> Result<Option<Blob>, BlobError> {
        self.recording.note("s3:GetObject", objects(key));
        self.inner.get(key).await
    }
    async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
        cache_control: Option<&str>,
    ) -> Result<(), BlobError> {
        self.recording.note("s3:PutObject", objects(key));
        self.inner
            .put(key, bytes, content_type, cache_control)
            .await
    }
    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        self.recording.note("s3:DeleteObject", objects(key));
        self.inner.delete(key).await
    }
}
