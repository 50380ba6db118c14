//! Typed configuration, read once at start from the environment: a missing or malformed
//! setting stops the process with a message naming it, never the first request.

use std::env;

/// The settings of a Lambda function (template.yaml sets them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AwsConfig {
    /// `STOREFRONT_TABLE`: the DynamoDB table.
    pub table: String,
    /// `STOREFRONT_QUEUE_URL`: the jobs queue, for functions that send jobs.
    pub queue_url: Option<String>,
    /// `STOREFRONT_BUCKET`: the uploads bucket, for functions that touch blobs.
    pub bucket: Option<String>,
    pub limits: RateLimits,
    /// `STOREFRONT_SESSION_LIFETIME_S`: see [`session_lifetime`].
    pub session_lifetime: chrono::Duration,
    /// `STOREFRONT_AUDIT_RETENTION_DAYS`: see [`audit_retention`].
    pub audit_retention: chrono::Duration,
    /// `STOREFRONT_S3_PATH_STYLE=true`: address the bucket in the path, as S3-compatible
    /// stores on one host (moto, MinIO) need; AWS itself wants the default.
    pub s3_path_style: bool,
    /// `STOREFRONT_IMAGES_URL`: where product images are served (the CloudFront
    /// distribution's `https://…` origin), for functions that show products.
    pub images_url: Option<String>,
    /// `STOREFRONT_ORDER_PAYMENT_WINDOW_S`: see [`payment_window`].
    pub payment_window: chrono::Duration,
    /// `STOREFRONT_DEAD_LETTER_QUEUE_URL`: the jobs queue's dead-letter queue, for the
    /// functions that send a job there themselves (the outbox relay).
    pub dead_letter_queue_url: Option<String>,
    /// `STOREFRONT_EMAIL_QUEUE_URL`: the emails queue, for the function that sends to it
    /// (the outbox relay).
    pub email_queue_url: Option<String>,
    /// `STOREFRONT_EMAIL_SENDER`: the address customer emails come from (a verified SES
    /// identity), for the function that sends them.
    pub email_sender: Option<String>,
    /// `STOREFRONT_WEBHOOK_RETRY_SCHEDULE`: see [`webhook_retry_schedule`]. On AWS an
    /// endpoint is never allowed on loopback.
    pub webhooks: WebhookSettings,
}

/// How webhook deliveries are made.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WebhookSettings {
    pub schedule: crate::domain::RetrySchedule,
    /// `STOREFRONT_WEBHOOK_ALLOW_LOOPBACK=true`, honoured by the local server alone:
    /// endpoints may be `http://127.0.0.1:…`.
    pub allow_loopback: bool,
}

/// Requests allowed per minute, shared by every instance through the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// `STOREFRONT_RATE_LIMIT_IP`: all requests from one client IP.
    pub per_ip: u32,
    /// `STOREFRONT_RATE_LIMIT_LOGIN`: login attempts per IP and per account.
    pub login: u32,
    /// `STOREFRONT_RATE_LIMIT_API_KEY`: requests made with one API key.
    pub per_api_key: u32,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            per_ip: 1000,
            login: 5,
            per_api_key: 100,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("environment variable {0} must be set")]
    Missing(&'static str),
    #[error("environment variable {name} is `{value}`, which is not {expected}")]
    Malformed {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
}

fn optional(name: &'static str) -> Option<String> {
    env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn required(name: &'static str) -> Result<String, ConfigError> {
    optional(name).ok_or(ConfigError::Missing(name))
}

fn per_minute(name: &'static str, default: u32) -> Result<u32, ConfigError> {
    match optional(name) {
        None => Ok(default),
        Some(value) => {
            value
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or(ConfigError::Malformed {
                    name,
                    value,
                    expected: "a whole number of requests per minute above 0",
                })
        }
    }
}

impl RateLimits {
    pub fn from_env() -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            per_ip: per_minute("STOREFRONT_RATE_LIMIT_IP", d.per_ip)?,
            login: per_minute("STOREFRONT_RATE_LIMIT_LOGIN", d.login)?,
            per_api_key: per_minute("STOREFRONT_RATE_LIMIT_API_KEY", d.per_api_key)?,
        })
    }
}

/// How long a session may live from sign-in, however often it is refreshed, unless
/// `STOREFRONT_SESSION_LIFETIME_S` says otherwise: 90 days.
pub const DEFAULT_SESSION_LIFETIME_S: i64 = 90 * 24 * 3600;

/// A whole number from the environment variable `name` within `range` (`default` when
/// unset), or a message saying what was `expected`.
fn whole_number(
    name: &'static str,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
    expected: &'static str,
) -> Result<i64, ConfigError> {
    match optional(name) {
        None => Ok(default),
        Some(value) => value
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or(ConfigError::Malformed {
                name,
                value,
                expected,
            }),
    }
}

/// `STOREFRONT_SESSION_LIFETIME_S`: seconds from sign-in after which a session ends.
pub fn session_lifetime() -> Result<chrono::Duration, ConfigError> {
    whole_number(
        "STOREFRONT_SESSION_LIFETIME_S",
        DEFAULT_SESSION_LIFETIME_S,
        60..=10 * 365 * 24 * 3600,
        "a whole number of seconds from 60 to ten years",
    )
    .map(chrono::Duration::seconds)
}

/// How long audit entries are kept unless `STOREFRONT_AUDIT_RETENTION_DAYS` says otherwise.
pub const DEFAULT_AUDIT_RETENTION_DAYS: i64 = 365;

/// `STOREFRONT_AUDIT_RETENTION_DAYS`: days an audit entry is kept before it expires.
pub fn audit_retention() -> Result<chrono::Duration, ConfigError> {
    whole_number(
        "STOREFRONT_AUDIT_RETENTION_DAYS",
        DEFAULT_AUDIT_RETENTION_DAYS,
        1..=3650,
        "a whole number of days from 1 to 3650",
    )
    .map(chrono::Duration::days)
}

/// How long an order waits for its payment unless `STOREFRONT_ORDER_PAYMENT_WINDOW_S` says
/// otherwise: 30 minutes.
pub const DEFAULT_PAYMENT_WINDOW_S: i64 = 1800;

/// `STOREFRONT_ORDER_PAYMENT_WINDOW_S`: seconds from an order's creation after which, still
/// unpaid, it is cancelled and its stock returned.
pub fn payment_window() -> Result<chrono::Duration, ConfigError> {
    whole_number(
        "STOREFRONT_ORDER_PAYMENT_WINDOW_S",
        DEFAULT_PAYMENT_WINDOW_S,
        1..=7 * 24 * 3600,
        "a whole number of seconds from 1 to a week",
    )
    .map(chrono::Duration::seconds)
}

/// `STOREFRONT_WEBHOOK_RETRY_SCHEDULE`: comma-separated seconds replacing Standard
/// Webhooks' retry schedule (see [`crate::domain::RetrySchedule::parse`]).
pub fn webhook_retry_schedule() -> Result<crate::domain::RetrySchedule, ConfigError> {
    const NAME: &str = "STOREFRONT_WEBHOOK_RETRY_SCHEDULE";
    match optional(NAME) {
        None => Ok(crate::domain::RetrySchedule::default()),
        Some(value) => {
            crate::domain::RetrySchedule::parse(&value).map_err(|_| ConfigError::Malformed {
                name: NAME,
                value,
                expected: "comma-separated whole seconds (at most 86400 each, 20 attempts)",
            })
        }
    }
}

impl AwsConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self {
            table: required("STOREFRONT_TABLE")?,
            queue_url: optional("STOREFRONT_QUEUE_URL"),
            bucket: optional("STOREFRONT_BUCKET"),
            limits: RateLimits::from_env()?,
            session_lifetime: session_lifetime()?,
            audit_retention: audit_retention()?,
            s3_path_style: optional("STOREFRONT_S3_PATH_STYLE").is_some_and(|v| v == "true"),
            images_url: optional("STOREFRONT_IMAGES_URL"),
            payment_window: payment_window()?,
            dead_letter_queue_url: optional("STOREFRONT_DEAD_LETTER_QUEUE_URL"),
            email_queue_url: optional("STOREFRONT_EMAIL_QUEUE_URL"),
            email_sender: optional("STOREFRONT_EMAIL_SENDER"),
            webhooks: WebhookSettings {
                schedule: webhook_retry_schedule()?,
                allow_loopback: false,
            },
        })
    }
}
