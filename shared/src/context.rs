//! `AppContext`: everything a handler or worker needs, built once per process.
//!
//! This is the composition root: the only place that picks adapters. A Lambda binary builds
//! it from [`AwsConfig`] (SDK clients made once, outside the handler); the local server and
//! the tests build it over a data directory with the embedded adapters.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::auth::tokens::KeyRing;
use crate::blobs::embedded::EmbeddedBlobs;
use crate::blobs::s3::S3Blobs;
use crate::blobs::{Blob, BlobError, BlobMeta, Blobs, Presigned};
use crate::clock::{Clock, SystemClock};
use crate::config::{AwsConfig, RateLimits};
use crate::crypto::SigningKey;
use crate::ids::{IdGenerator, UlidGenerator};
use crate::queue::embedded::{EmbeddedQueue, EmbeddedQueues, QueueConfig};
use crate::queue::sqs::SqsQueue;
use crate::queue::{Outgoing, Queue, QueueError, Received, Redrive, Sent};
use crate::store::dynamo::DynamoTable;
use crate::store::embedded::{EmbeddedTable, OpenError};
use crate::store::Table;

/// The jobs queue, its dead-letter queue and their redrive rule (template.yaml says the same).
pub const JOBS_QUEUE: &str = "jobs";
pub const JOBS_DLQ: &str = "jobs-dlq";
pub const JOBS_MAX_RECEIVE_COUNT: u32 = 5;
pub const JOBS_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub struct AppContext {
    pub table: Arc<dyn Table>,
    pub queue: Arc<dyn Queue>,
    pub blobs: Arc<dyn Blobs>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGenerator>,
    pub limits: RateLimits,
    /// How long a session lives from sign-in, however often it is refreshed.
    pub session_lifetime: chrono::Duration,
    /// How long audit entries are kept.
    pub audit_retention: chrono::Duration,
    /// The keys that verify access tokens (and sign them, in functions that issue them).
    pub keys: Arc<KeyRing>,
    /// The payment provider's webhook signing secret (`whsec_…`), where this process verifies
    /// its webhooks: the local server sets it (from `STOREFRONT_PAYMENT_WEBHOOK_SECRET`, or
    /// generated in the data directory); on AWS only the payment webhook function will.
    pub payment_webhook_secret: Option<SecretString>,
    pub started_at: DateTime<Utc>,
}

/// The embedded adapters of a local data directory, and what only the local server needs.
#[derive(Clone)]
pub struct Embedded {
    pub ctx: AppContext,
    pub blobs: EmbeddedBlobs,
    pub jobs: EmbeddedQueue,
    pub dead_letters: EmbeddedQueue,
    pub data_dir: PathBuf,
}

impl AppContext {
    /// The context of a Lambda function: AWS adapters named by the environment.
    pub async fn from_env() -> anyhow::Result<Self> {
        let config = AwsConfig::from_env()?;
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let mut ctx = Self::aws(&sdk, &config, Arc::new(SystemClock));
        ctx.keys = Arc::new(crate::auth::keys::load_aws(&sdk).await?);
        Ok(ctx)
    }

    /// AWS adapters over clients built from `sdk` (tests point it at moto).
    pub fn aws(sdk: &aws_config::SdkConfig, config: &AwsConfig, clock: Arc<dyn Clock>) -> Self {
        // Every SDK call is a subsegment of the invocation's X-Ray trace (a no-op off Lambda).
        let xray = crate::xray::XRay::from_env();
        let dynamo = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(sdk)
                .interceptor(xray.clone())
                .build(),
        );
        let table = DynamoTable::new(dynamo, &config.table, clock.clone());
        let queue: Arc<dyn Queue> = match &config.queue_url {
            Some(url) => {
                let sqs = aws_sdk_sqs::Client::from_conf(
                    aws_sdk_sqs::config::Builder::from(sdk)
                        .interceptor(xray.clone())
                        .build(),
                );
                Arc::new(SqsQueue::new(sqs, url))
            }
            None => Arc::new(Unconfigured("STOREFRONT_QUEUE_URL")),
        };
        let blobs: Arc<dyn Blobs> = match &config.bucket {
            Some(bucket) => {
                let s3 = aws_sdk_s3::Client::from_conf(
                    aws_sdk_s3::config::Builder::from(sdk)
                        .force_path_style(config.s3_path_style)
                        .interceptor(xray)
                        .build(),
                );
                Arc::new(S3Blobs::new(s3, bucket))
            }
            None => Arc::new(Unconfigured("STOREFRONT_BUCKET")),
        };
        Self {
            table: Arc::new(table),
            queue,
            blobs,
            ids: Arc::new(UlidGenerator::new(clock.clone())),
            started_at: clock.now(),
            clock,
            limits: config.limits,
            session_lifetime: config.session_lifetime,
            audit_retention: config.audit_retention,
            keys: Arc::new(KeyRing::empty()),
            payment_webhook_secret: None,
        }
    }

    /// The embedded adapters over `data_dir`, with blob URLs presigned for `public_url`.
    pub fn embedded(
        data_dir: &Path,
        public_url: &str,
        limits: RateLimits,
        clock: Arc<dyn Clock>,
    ) -> Result<Embedded, EmbeddedError> {
        std::fs::create_dir_all(data_dir).map_err(|source| EmbeddedError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let table = EmbeddedTable::open(&data_dir.join("table.redb"), clock.clone())?;
        let queues = EmbeddedQueues::open(&data_dir.join("queue.redb"), clock.clone())?;
        let dead_letters = queues.queue(
            JOBS_DLQ,
            QueueConfig {
                visibility_timeout: JOBS_VISIBILITY_TIMEOUT,
                redrive: None,
            },
        );
        let jobs = queues.queue(
            JOBS_QUEUE,
            QueueConfig {
                visibility_timeout: JOBS_VISIBILITY_TIMEOUT,
                redrive: Some(Redrive {
                    dead_letter_queue: JOBS_DLQ.into(),
                    max_receive_count: JOBS_MAX_RECEIVE_COUNT,
                }),
            },
        );
        let key = load_or_create_key(&data_dir.join("keys").join("blob-signing.key"))
            .map_err(EmbeddedError::Other)?;
        let blobs = EmbeddedBlobs::open(&data_dir.join("blobs"), public_url, key, clock.clone())
            .map_err(EmbeddedError::Other)?;
        let keys = crate::auth::keys::load_local(data_dir).map_err(EmbeddedError::Other)?;
        let ctx = Self {
            keys: Arc::new(keys),
            payment_webhook_secret: None,
            table: Arc::new(table),
            queue: Arc::new(jobs.clone()),
            blobs: Arc::new(blobs.clone()),
            ids: Arc::new(UlidGenerator::new(clock.clone())),
            started_at: clock.now(),
            clock,
            limits,
            session_lifetime: chrono::Duration::seconds(crate::config::DEFAULT_SESSION_LIFETIME_S),
            audit_retention: chrono::Duration::days(crate::config::DEFAULT_AUDIT_RETENTION_DAYS),
        };
        Ok(Embedded {
            ctx,
            blobs,
            jobs,
            dead_letters,
            data_dir: data_dir.to_owned(),
        })
    }
}

/// Why the embedded adapters could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("{0:#}")]
    Other(anyhow::Error),
}

/// Reads a 32-byte key from `path`, creating it (readable by the owner only) on first start.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<SigningKey> {
    load_or_create(
        path,
        "a 32-byte key",
        |bytes| (bytes.len() == 32).then(|| SigningKey::from_bytes(bytes)),
        || {
            let key = SigningKey::generate()?;
            let bytes = Zeroizing::new(key.expose().to_vec());
            Ok((key, bytes))
        },
    )
}

/// Where a data directory keeps its generated payment webhook secret, under `keys/`.
pub const PAYMENT_WEBHOOK_SECRET_FILE: &str = "payment-webhook.secret";

/// Reads a webhook secret (`whsec_…`) from `path`, creating it (readable by the owner only)
/// on first start, so the payment provider stays configured across restarts.
pub fn load_or_create_webhook_secret(path: &Path) -> anyhow::Result<SecretString> {
    load_or_create(
        path,
        "a `whsec_` secret",
        |bytes| {
            let text = String::from_utf8(bytes).ok()?;
            let secret = text.trim();
            secret
                .starts_with("whsec_")
                .then(|| SecretString::from(secret.to_owned()))
        },
        || {
            let secret = Zeroizing::new(format!("whsec_{}", crate::crypto::random_token(32)?));
            let bytes = Zeroizing::new(secret.as_bytes().to_vec());
            Ok((SecretString::from(secret.as_str().to_owned()), bytes))
        },
    )
}

/// Reads the private file at `path` with `decode` (`None`: it does not hold `what`), or, on
/// first start, makes a value with `make` and writes its bytes there, owner-readable only.
fn load_or_create<T>(
    path: &Path,
    what: &str,
    decode: impl FnOnce(Vec<u8>) -> Option<T>,
    make: impl FnOnce() -> anyhow::Result<(T, Zeroizing<Vec<u8>>)>,
) -> anyhow::Result<T> {
    match std::fs::read(path) {
        Ok(bytes) => {
            return decode(bytes).with_context(|| {
                format!(
                    "{} does not hold {what}; delete it to make a new one",
                    path.display()
                )
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let (value, bytes) = make()?;
    write_private(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(value)
}

/// Writes a new file readable by its owner only (keys), whole or not at all: the bytes go
/// to a temporary file that is synced and then linked into place, so a crash half-way
/// leaves no truncated key to stop the next start. Like `create_new`, it refuses to
/// replace a file that exists: a key is never overwritten.
#[cfg(unix)]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    // Left by a crash of an earlier process with this id: never a file anyone reads.
    let _ = std::fs::remove_file(&partial);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    // A hard link fails if `path` exists, where a rename would silently replace it.
    let linked = std::fs::hard_link(&partial, path);
    let _ = std::fs::remove_file(&partial);
    linked?;
    // The link is durable once the directory holding it is.
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// The adapter of a port this function was not given (its template grants no access):
/// every call fails with a message naming the missing setting.
struct Unconfigured(&'static str);

impl Unconfigured {
    fn error(&self) -> anyhow::Error {
        anyhow::anyhow!(
            "this function is not configured for this dependency ({} is unset)",
            self.0
        )
    }
}

#[async_trait]
impl Queue for Unconfigured {
    async fn send(&self, _: Outgoing) -> Result<String, QueueError> {
        Err(self.error().into())
    }
    async fn send_batch(&self, _: Vec<Outgoing>) -> Result<Vec<Sent>, QueueError> {
        Err(self.error().into())
    }
    async fn receive(&self, _: usize) -> Result<Vec<Received>, QueueError> {
        Err(self.error().into())
    }
    async fn ack(&self, _: &str) -> Result<(), QueueError> {
        Err(self.error().into())
    }
    async fn retry_after(&self, _: &str, _: Duration) -> Result<(), QueueError> {
        Err(self.error().into())
    }
}

#[async_trait]
impl Blobs for Unconfigured {
    async fn presign_put(
        &self,
        _: &str,
        _: &str,
        _: u64,
        _: Duration,
    ) -> Result<Presigned, BlobError> {
        Err(self.error().into())
    }
    async fn presign_get(&self, _: &str, _: Duration) -> Result<Presigned, BlobError> {
        Err(self.error().into())
    }
    async fn head(&self, _: &str) -> Result<Option<BlobMeta>, BlobError> {
        Err(self.error().into())
    }
    async fn get(&self, _: &str) -> Result<Option<Blob>, BlobError> {
        Err(self.error().into())
    }
    async fn put(&self, _: &str, _: bytes::Bytes, _: &str) -> Result<(), BlobError> {
        Err(self.error().into())
    }
    async fn delete(&self, _: &str) -> Result<(), BlobError> {
        Err(self.error().into())
    }
}
