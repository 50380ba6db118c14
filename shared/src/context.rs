//! `AppContext`: everything a handler or worker needs, built once per process.
//!
//! This is the composition root: the only place that picks adapters. A Lambda binary builds
//! it from [`AwsConfig`] (SDK clients made once, outside the handler); the local server and
//! the tests build it over a data directory with the embedded adapters.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretString;

use crate::blobs::embedded::EmbeddedBlobs;
use crate::blobs::s3::S3Blobs;
use crate::blobs::Blobs;
use crate::clock::{Clock, SystemClock};
use crate::config::{AwsConfig, RateLimits, WebhookSettings};
use crate::credentials::files::load_or_create_key;
use crate::credentials::tokens::KeyRing;
use crate::ids::{IdGenerator, UlidGenerator};
use crate::mail::files::FileMailer;
use crate::mail::Mailer;
use crate::payments::local::LocalPayments;
use crate::payments::stripe::StripePayments;
use crate::payments::{Payments, Unconfigured};
use crate::queue::embedded::{EmbeddedQueue, EmbeddedQueues, QueueConfig};
use crate::queue::sqs::SqsQueue;
use crate::queue::{Queue, Redrive};
use crate::store::dynamo::DynamoTable;
use crate::store::embedded::{EmbeddedTable, OpenError};
use crate::store::Table;

/// The jobs queue, its dead-letter queue and their redrive rule (template.yaml says the same).
pub const JOBS_QUEUE: &str = "jobs";
pub const JOBS_DLQ: &str = "jobs-dlq";
pub const JOBS_MAX_RECEIVE_COUNT: u32 = 5;
pub const JOBS_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(120);
/// The queue the bucket's upload notifications go to, and its dead-letter queue (the image
/// worker's; template.yaml says the same: visibility 6 x its 60 s timeout).
pub const IMAGE_UPLOADS_QUEUE: &str = "image-uploads";
pub const IMAGE_UPLOADS_DLQ: &str = "image-uploads-dlq";
pub const IMAGE_UPLOADS_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(360);
/// The emails queue and its dead-letter queue (the `emails` function's; template.yaml says
/// the same: visibility 6 x its 20 s timeout).
pub const EMAILS_QUEUE: &str = "emails";
pub const EMAILS_DLQ: &str = "emails-dlq";
pub const EMAILS_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(120);
/// The address the local server's emails come from (`STOREFRONT_EMAIL_SENDER` replaces it).
pub const LOCAL_EMAIL_SENDER: &str = "orders@storefront.localhost";
/// The bucket name local upload notifications give.
pub const LOCAL_BUCKET: &str = "storefront-local";

#[derive(Clone)]
pub struct AppContext {
    pub table: Arc<dyn Table>,
    pub queue: Arc<dyn Queue>,
    /// The jobs queue's dead-letter queue, where a job that failed for good is sent (a
    /// webhook delivery past its last attempt); only the outbox relay sends there.
    pub dead_letters: Arc<dyn Queue>,
    /// The emails queue, which only the outbox relay sends to.
    pub emails: Arc<dyn Queue>,
    /// Where customer emails go out: SES in the `emails` function, `.eml` files in the
    /// local server; nowhere elsewhere.
    pub mailer: Arc<dyn Mailer>,
    /// The address customer emails come from.
    pub email_sender: Option<String>,
    pub blobs: Arc<dyn Blobs>,
    /// The payment provider: Stripe where a secret key is configured (the functions that
    /// call it, on AWS), the local provider in the local server and tests.
    pub payments: Arc<dyn Payments>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn IdGenerator>,
    pub limits: RateLimits,
    /// How long a session lives from sign-in, however often it is refreshed.
    pub session_lifetime: chrono::Duration,
    /// How long audit entries are kept.
    pub audit_retention: chrono::Duration,
    /// How long an order waits for its payment before it is cancelled.
    pub payment_window: chrono::Duration,
    /// How webhook deliveries are retried, and where they may go.
    pub webhooks: WebhookSettings,
    /// The keys that verify access tokens (and sign them, in functions that issue them).
    pub keys: Arc<KeyRing>,
    /// The payment provider's webhook signing secret (`whsec_…`), where this process verifies
    /// its webhooks: the local server sets it (from `STOREFRONT_PAYMENT_WEBHOOK_SECRET`, or
    /// generated in the data directory); on AWS only the payment webhook function will.
    pub payment_webhook_secret: Option<SecretString>,
    /// Where product images are served from (`<this>/images/…`): CloudFront on AWS, the
    /// local server locally. Unset, image answers carry no addresses.
    pub images_url: Option<String>,
    pub started_at: DateTime<Utc>,
}

/// The embedded adapters of a local data directory, and what only the local server needs.
#[derive(Clone)]
pub struct Embedded {
    pub ctx: AppContext,
    pub blobs: EmbeddedBlobs,
    pub jobs: EmbeddedQueue,
    pub dead_letters: EmbeddedQueue,
    /// The blob store's notifications of uploads, which the image worker consumes.
    pub image_uploads: EmbeddedQueue,
    pub image_dead_letters: EmbeddedQueue,
    /// Customer emails waiting to be written under `<data-dir>/outbox/`.
    pub emails: EmbeddedQueue,
    pub email_dead_letters: EmbeddedQueue,
    /// The local payment provider (the context's, unless a Stripe key replaced it), which
    /// the local server's confirm route and event delivery use.
    pub local_payments: LocalPayments,
    pub data_dir: PathBuf,
}

impl AppContext {
    /// The context of a Lambda function: AWS adapters named by the environment.
    pub async fn from_env() -> anyhow::Result<Self> {
        let config = AwsConfig::from_env()?;
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let mut ctx = Self::aws(&sdk, &config, Arc::new(SystemClock));
        ctx.keys = Arc::new(crate::credentials::keys::load_aws(&sdk).await?);
        ctx.payments = stripe_from_env(&sdk).await?;
        // Only the payment webhook's function is given the provider's signing secret.
        ctx.payment_webhook_secret = std::env::var("STOREFRONT_PAYMENT_WEBHOOK_SECRET")
            .ok()
            .filter(|secret| !secret.trim().is_empty())
            .map(|secret| SecretString::from(secret.trim().to_owned()));
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
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(sdk)
                .interceptor(xray.clone())
                .build(),
        );
        let queue = |url: &Option<String>, setting: &'static str| -> Arc<dyn Queue> {
            match url {
                Some(url) => Arc::new(SqsQueue::new(sqs.clone(), url)),
                None => Arc::new(crate::queue::Unconfigured(setting)),
            }
        };
        let (queue, dead_letters, emails) = (
            queue(&config.queue_url, "STOREFRONT_QUEUE_URL"),
            queue(
                &config.dead_letter_queue_url,
                "STOREFRONT_DEAD_LETTER_QUEUE_URL",
            ),
            queue(&config.email_queue_url, "STOREFRONT_EMAIL_QUEUE_URL"),
        );
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
            None => Arc::new(crate::blobs::Unconfigured("STOREFRONT_BUCKET")),
        };
        Self {
            table: Arc::new(table),
            queue,
            dead_letters,
            emails,
            mailer: Arc::new(crate::mail::Unconfigured),
            email_sender: config.email_sender.clone(),
            blobs,
            payments: Arc::new(Unconfigured),
            ids: Arc::new(UlidGenerator::new(clock.clone())),
            started_at: clock.now(),
            clock,
            limits: config.limits,
            session_lifetime: config.session_lifetime,
            audit_retention: config.audit_retention,
            payment_window: config.payment_window,
            webhooks: config.webhooks.clone(),
            keys: Arc::new(KeyRing::empty()),
            payment_webhook_secret: None,
            images_url: config.images_url.clone(),
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
        let (jobs, dead_letters) =
            with_dead_letters(&queues, JOBS_QUEUE, JOBS_DLQ, JOBS_VISIBILITY_TIMEOUT);
        let (emails, email_dead_letters) =
            with_dead_letters(&queues, EMAILS_QUEUE, EMAILS_DLQ, EMAILS_VISIBILITY_TIMEOUT);
        let (image_uploads, image_dead_letters) = with_dead_letters(
            &queues,
            IMAGE_UPLOADS_QUEUE,
            IMAGE_UPLOADS_DLQ,
            IMAGE_UPLOADS_VISIBILITY_TIMEOUT,
        );
        let key = load_or_create_key(&data_dir.join("keys").join("blob-signing.key"))
            .map_err(EmbeddedError::Other)?;
        let blobs = EmbeddedBlobs::open(&data_dir.join("blobs"), public_url, key, clock.clone())
            .map_err(EmbeddedError::Other)?
            .notify(
                crate::imaging::UPLOADS_PREFIX,
                LOCAL_BUCKET,
                Arc::new(image_uploads.clone()),
            );
        let keys = crate::credentials::keys::load_local(data_dir).map_err(EmbeddedError::Other)?;
        let table: Arc<dyn Table> = Arc::new(table);
        let ids: Arc<dyn IdGenerator> = Arc::new(UlidGenerator::new(clock.clone()));
        let local_payments = LocalPayments::new(table.clone(), ids.clone());
        let ctx = Self {
            keys: Arc::new(keys),
            payment_webhook_secret: None,
            images_url: Some(public_url.trim_end_matches('/').to_owned()),
            payments: Arc::new(local_payments.clone()),
            table,
            queue: Arc::new(jobs.clone()),
            dead_letters: Arc::new(dead_letters.clone()),
            emails: Arc::new(emails.clone()),
            mailer: Arc::new(FileMailer::new(data_dir.join("outbox"))),
            email_sender: Some(LOCAL_EMAIL_SENDER.to_owned()),
            blobs: Arc::new(blobs.clone()),
            ids,
            started_at: clock.now(),
            clock,
            limits,
            session_lifetime: chrono::Duration::seconds(crate::config::DEFAULT_SESSION_LIFETIME_S),
            audit_retention: chrono::Duration::days(crate::config::DEFAULT_AUDIT_RETENTION_DAYS),
            payment_window: chrono::Duration::seconds(crate::config::DEFAULT_PAYMENT_WINDOW_S),
            webhooks: WebhookSettings::default(),
        };
        Ok(Embedded {
            ctx,
            blobs,
            jobs,
            dead_letters,
            image_uploads,
            image_dead_letters,
            emails,
            email_dead_letters,
            local_payments,
            data_dir: data_dir.to_owned(),
        })
    }
}

/// Stripe, for a function given its secret key: from the SSM SecureString
/// `STOREFRONT_STRIPE_SECRET_KEY_PARAMETER` names (on AWS, only the functions that call
/// Stripe may read it), or from `STOREFRONT_STRIPE_SECRET_KEY` itself (`sam local`, a
/// test); at `STOREFRONT_STRIPE_API_BASE` (Stripe's API unless set). Neither set: no
/// provider, and a payment route answers 503.
async fn stripe_from_env(sdk: &aws_config::SdkConfig) -> anyhow::Result<Arc<dyn Payments>> {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let secret = match (
        set("STOREFRONT_STRIPE_SECRET_KEY_PARAMETER"),
        set("STOREFRONT_STRIPE_SECRET_KEY"),
    ) {
        (Some(parameter), _) => {
            match crate::credentials::keys::read_secure_string(sdk, &parameter).await {
                Ok(secret) => secret,
                // A stack deployed before its Stripe key was stored: payments answer 503
                // and refund jobs wait in the dead-letter queue; every other job still runs.
                Err(e) => {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "no Stripe secret key: payments are unavailable"
                    );
                    return Ok(Arc::new(Unconfigured));
                }
            }
        }
        (None, Some(key)) => SecretString::from(key.trim().to_owned()),
        (None, None) => return Ok(Arc::new(Unconfigured)),
    };
    let base = set("STOREFRONT_STRIPE_API_BASE")
        .unwrap_or_else(|| crate::payments::stripe::DEFAULT_API_BASE.to_owned());
    Ok(Arc::new(StripePayments::new(&base, secret)?))
}

/// A queue whose messages move to its dead-letter queue after
/// [`JOBS_MAX_RECEIVE_COUNT`] receives, as SQS redrive does; and that dead-letter queue.
fn with_dead_letters(
    queues: &EmbeddedQueues,
    name: &str,
    dead_letter_queue: &str,
    visibility_timeout: Duration,
) -> (EmbeddedQueue, EmbeddedQueue) {
    let dead_letters = queues.queue(
        dead_letter_queue,
        QueueConfig {
            visibility_timeout,
            redrive: None,
        },
    );
    let queue = queues.queue(
        name,
        QueueConfig {
            visibility_timeout,
            redrive: Some(Redrive {
                dead_letter_queue: dead_letter_queue.into(),
                max_receive_count: JOBS_MAX_RECEIVE_COUNT,
            }),
        },
    );
    (queue, dead_letters)
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
