//! One attempt to deliver an event to one endpoint: the job [`Job::Deliver`] runs it.
//!
//! The attempt is claimed on its message first (a lease, so a duplicated job sends
//! nothing twice), sent signed through the SSRF guard with a 15 s limit, and recorded in
//! one transaction with what follows from it: the next attempt's job on the retry
//! schedule, or after the last, the job in the dead-letter queue. The endpoint's circuit
//! breaker is kept beside: 5 consecutive failures open it for 30 s, then one trial request
//! goes through (half-open); while it is open, jobs wait without counting as attempts.
//!
//! A 2xx is success; a 3xx (redirects are never followed), a timeout or any other answer
//! is a failure; 410 disables the endpoint; `Retry-After` on a 429 or 503 delays the next
//! attempt at least that long.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http_body_util::{BodyExt as _, Full};

use super::guard::{self, GuardedConnector, Policy};
use crate::context::AppContext;
use crate::domain::{Breaker, DeliveryId, Gate, Job};
use crate::ids::IdKind;
use crate::queue::{Outgoing, MAX_DELAY};
use crate::repo::outbox::Destination;
use crate::repo::webhooks::{
    self as repo, breaker, Attempt, Endpoint, Message, MessageState, Outcome,
};
use crate::store::{Transaction, TransactionError};

/// The longest an attempt may take, answer included.
pub const TIMEOUT: Duration = Duration::from_secs(15);
/// How often an attempt waiting for the breaker's trial looks again (plus as much jitter).
const TRIAL_POLL: Duration = Duration::from_secs(2);
/// How long an attempt holds its message (and a trial its breaker): past the timeout, and
/// inside the jobs queue's visibility timeout, so a crashed attempt's job, coming back
/// after it, finds the lease run out and tries again.
const LEASE: Duration = Duration::from_secs(30);
/// How much of an answer's body is kept.
pub const EXCERPT_BYTES: usize = 256;
/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(86_400);

/// An event's delivery to one endpoint: what every job of it names.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub tenant_id: String,
    pub endpoint_id: String,
    pub event_id: String,
}

impl Delivery {
    /// The job making attempt `attempt`, not before `not_before`.
    pub fn job(&self, attempt: u32, not_before: Option<DateTime<Utc>>, manual: bool) -> Job {
        Job::Deliver {
            tenant_id: self.tenant_id.clone(),
            endpoint_id: self.endpoint_id.clone(),
            event_id: self.event_id.clone(),
            attempt,
            not_before: not_before.map(crate::clock::rfc3339),
            manual,
        }
    }
}

/// One delivery job, as the worker received it.
#[derive(Clone, Debug)]
pub struct Request {
    pub delivery: Delivery,
    pub attempt: u32,
    pub not_before: Option<String>,
    pub manual: bool,
}

/// What an endpoint did with one request.
#[derive(Debug)]
struct Answer {
    status: Option<u16>,
    duration: Duration,
    error: Option<String>,
    excerpt: Option<String>,
    retry_after: Option<Duration>,
}

impl Answer {
    /// No request was made.
    fn unsent(why: &str) -> Self {
        Self {
            status: None,
            duration: Duration::ZERO,
            error: Some(why.to_owned()),
            excerpt: None,
            retry_after: None,
        }
    }

    fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }

    fn gone(&self) -> bool {
        self.status == Some(410)
    }
}

/// Runs one delivery job.
#[tracing::instrument(skip_all, fields(endpoint_id = %job.delivery.endpoint_id, event_id = %job.delivery.event_id, attempt = job.attempt))]
pub async fn attempt(ctx: &AppContext, job: Request) -> anyhow::Result<()> {
    let now = ctx.clock.now();
    if let Some(due) = job
        .not_before
        .as_deref()
        .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
        .map(|at| at.with_timezone(&Utc))
        .filter(|due| *due > now)
    {
        return wait_until(ctx, &job, due).await;
    }
    let table = ctx.table.as_ref();
    let Delivery {
        tenant_id,
        endpoint_id,
        event_id,
    } = &job.delivery;
    let (endpoint, message) =
        repo::endpoint_and_message(table, tenant_id, endpoint_id, event_id).await?;
    let (Some(endpoint), Some(message)) = (endpoint, message) else {
        tracing::info!("the endpoint or its message is gone; nothing to deliver");
        return Ok(());
    };
    if message.completed >= job.attempt || message.state == MessageState::Succeeded {
        tracing::info!("this attempt was made already; a duplicate job");
        return Ok(());
    }
    let attempt = message.completed + 1;
    let message_key = repo::message_key(tenant_id, endpoint_id, event_id);
    if endpoint.disabled {
        // Nothing is sent, and the log says so: the delivery waits for the shop's retry.
        let answer = Answer::unsent("the endpoint is disabled; nothing was sent");
        let end = End {
            attempt,
            answer: &answer,
            token: None,
            next: None,
            dead: false,
            disable: false,
        };
        return record(ctx, &job, &endpoint, &message, end).await;
    }
    let now_ms = now.timestamp_millis();
    // The breaker: open, wait; past its open time, one trial at a time. Waiting is no
    // attempt and takes no lease.
    let gate = endpoint.breaker().gate(now_ms);
    match gate {
        Gate::Open { until_ms } => {
            tracing::info!("the endpoint's breaker is open; the attempt waits");
            let until = time_of(until_ms, now) + jitter(Duration::from_secs(1));
            return wait_until(ctx, &job, until).await;
        }
        Gate::TrialInFlight { until_ms } => {
            tracing::info!("another attempt is the breaker's trial; this one waits");
            let until =
                time_of(until_ms, now).min(now + chrono_of(TRIAL_POLL)) + jitter(TRIAL_POLL);
            return wait_until(ctx, &job, until).await;
        }
        Gate::Closed | Gate::Trial => {}
    }
    let token = ctx.ids.next(IdKind::Message);
    let lease_until_ms = now_ms + millis(LEASE);
    if !repo::lease(table, &message_key, attempt, &token, now_ms, lease_until_ms).await? {
        tracing::info!("another job holds or made this attempt");
        return Ok(());
    }
    let endpoint_key = repo::endpoint_key(tenant_id, endpoint_id);
    let trial = gate == Gate::Trial;
    if trial {
        let opened_until_ms = endpoint.open_until_ms.unwrap_or(now_ms);
        if !breaker::begin_trial(
            table,
            &endpoint_key,
            opened_until_ms,
            now_ms,
            lease_until_ms,
        )
        .await?
        {
            repo::release(table, &message_key, &token).await?;
            tracing::info!("another attempt became the breaker's trial; this one waits");
            let until = now + chrono_of(TRIAL_POLL) + jitter(TRIAL_POLL);
            return wait_until(ctx, &job, until).await;
        }
    }
    let answer = send(ctx, &endpoint, &message).await;
    let finished = ctx.clock.now();
    // A failure schedules the next attempt, unless it was the shop's own retry of a
    // delivery that had ended; `Retry-After` makes the wait at least that long.
    let next = (!answer.succeeded() && !answer.gone() && !job.manual)
        .then(|| ctx.webhooks.schedule.wait_before(attempt + 1, spread()))
        .flatten()
        .map(|wait| {
            let wait = answer.retry_after.map_or(wait, |floor| wait.max(floor));
            finished + chrono_of(wait)
        });
    let end = End {
        attempt,
        answer: &answer,
        token: Some(&token),
        next,
        dead: !answer.succeeded() && !answer.gone() && next.is_none() && !job.manual,
        disable: answer.gone(),
    };
    record(ctx, &job, &endpoint, &message, end).await?;
    // The breaker follows the attempt: best effort, since the attempt is recorded already.
    let finished_ms = finished.timestamp_millis();
    let moved = if answer.succeeded() {
        breaker::close(table, &endpoint_key).await
    } else if let Some(wait) = answer.retry_after {
        breaker::hold(table, &endpoint_key, finished_ms + millis(wait)).await
    } else if trial {
        breaker::open(table, &endpoint_key, finished_ms + Breaker::OPEN_MS, true).await
    } else {
        match breaker::count_failure(table, &endpoint_key).await {
            Ok(failures) if Breaker::opens_after(failures) => {
                tracing::warn!(failures, "the endpoint's breaker opens");
                let until_ms = finished_ms + Breaker::OPEN_MS;
                breaker::open(table, &endpoint_key, until_ms, false).await
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    };
    if let Err(e) = moved {
        tracing::warn!(error = %e, "the endpoint's breaker could not be updated");
    }
    Ok(())
}

/// How an attempt ended, and what follows it.
struct End<'a> {
    attempt: u32,
    answer: &'a Answer,
    /// The lease it held, if it took one.
    token: Option<&'a str>,
    /// When the next attempt is due, if one is scheduled.
    next: Option<DateTime<Utc>>,
    /// The last attempt failed: the job goes to the dead-letter queue.
    dead: bool,
    /// The endpoint answered 410: it is disabled.
    disable: bool,
}

/// Records an attempt in one transaction with what follows from it: the message, the
/// deliveries log entry, the next attempt's job or the dead letter, and (after a 410) the
/// endpoint disabled.
async fn record(
    ctx: &AppContext,
    job: &Request,
    endpoint: &Endpoint,
    message: &Message,
    end: End<'_>,
) -> anyhow::Result<()> {
    let Delivery {
        tenant_id,
        endpoint_id,
        event_id,
    } = &job.delivery;
    let finished = ctx.clock.now();
    let answer = end.answer;
    let (outcome, state) = if answer.succeeded() {
        (Outcome::Succeeded, MessageState::Succeeded)
    } else if end.dead {
        (Outcome::Dead, MessageState::Dead)
    } else if end.next.is_some() {
        (Outcome::Failed, MessageState::Pending)
    } else {
        (Outcome::Failed, MessageState::Failed)
    };
    let logged = Attempt {
        id: DeliveryId::generate(ctx.ids.as_ref()),
        endpoint_id: endpoint.id.clone(),
        event_id: message.event_id.clone(),
        event_type: message.event_type.clone(),
        attempt: end.attempt,
        status_code: answer.status,
        duration_ms: u64::try_from(answer.duration.as_millis()).unwrap_or(u64::MAX),
        outcome,
        error: answer.error.clone(),
        next_attempt_at: end.next.map(crate::clock::rfc3339),
        created_at: crate::clock::rfc3339(finished),
        response_excerpt: answer.excerpt.clone(),
    };
    let expires_at = (finished + chrono::Duration::days(repo::RETENTION_DAYS)).timestamp();
    let message_key = repo::message_key(tenant_id, endpoint_id, event_id);
    let transaction = |with_endpoint: bool| -> anyhow::Result<Transaction<&'static str>> {
        let mut tx = Transaction::new();
        tx.add(
            "the message",
            repo::record(message_key.clone(), end.attempt, state, end.token)?,
        )?
        .add("the attempt", repo::log(tenant_id, &logged, expires_at)?)?;
        if let Some(at) = end.next {
            let follow_up = job.delivery.job(end.attempt + 1, Some(at), false);
            tx.add(
                "the next attempt",
                crate::events::queue(ctx, tenant_id, &follow_up)?,
            )?;
        }
        if end.dead {
            let parked = job.delivery.job(end.attempt + 1, None, false);
            tx.add(
                "the dead letter",
                crate::repo::outbox::enqueue_to(
                    Destination::DeadLetters,
                    &parked,
                    &ctx.ids.next(IdKind::Message),
                    tenant_id,
                    finished,
                )?,
            )?;
        }
        if with_endpoint {
            tx.add(
                "the endpoint",
                breaker::disable(
                    repo::endpoint_key(tenant_id, endpoint_id),
                    "The endpoint answered 410 Gone.",
                ),
            )?;
        }
        Ok(tx)
    };
    let mut outcome_of = transaction(end.disable)?.commit(ctx.table.as_ref()).await;
    if matches!(outcome_of, Err(TransactionError::Refused("the endpoint"))) {
        // Deleted meanwhile: nothing to disable.
        outcome_of = transaction(false)?.commit(ctx.table.as_ref()).await;
    }
    match outcome_of {
        Ok(()) => {}
        Err(TransactionError::Refused("the message")) => {
            tracing::warn!("the attempt's lease ran out and another attempt was recorded first");
            return Ok(());
        }
        Err(e) => return Err(e.into_store().into()),
    }
    if end.disable {
        tracing::warn!("the endpoint answered 410 Gone; it is disabled");
    }
    tracing::info!(
        status = answer.status,
        outcome = ?outcome,
        duration_ms = logged.duration_ms,
        next_attempt_at = logged.next_attempt_at,
        "delivery attempted"
    );
    Ok(())
}

/// Sends the job back to the queue to come again at `until` (SQS delays at most 15
/// minutes: a longer wait takes several hops). Not an attempt.
async fn wait_until(ctx: &AppContext, job: &Request, until: DateTime<Utc>) -> anyhow::Result<()> {
    let wait = (until - ctx.clock.now())
        .to_std()
        .unwrap_or_default()
        .min(MAX_DELAY);
    let body = job
        .delivery
        .job(job.attempt, Some(until), job.manual)
        .to_body()?;
    ctx.queue
        .send(Outgoing::new(crate::queue::json_for_sqs(body)).delayed(wait))
        .await?;
    Ok(())
}

/// The HTTPS client deliveries share, made on first use (only the worker delivers).
fn client(
    policy: Policy,
) -> anyhow::Result<
    &'static hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<GuardedConnector>,
        Full<Bytes>,
    >,
> {
    type Client = hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<GuardedConnector>,
        Full<Bytes>,
    >;
    static STRICT: OnceLock<Client> = OnceLock::new();
    static LOOPBACK: OnceLock<Client> = OnceLock::new();
    let cell = if policy.allow_loopback {
        &LOOPBACK
    } else {
        &STRICT
    };
    if let Some(client) = cell.get() {
        return Ok(client);
    }
    let made = guard::client(policy)?;
    Ok(cell.get_or_init(|| made))
}

/// Makes the request, signed, and reads what came back, all within [`TIMEOUT`].
async fn send(ctx: &AppContext, endpoint: &Endpoint, message: &Message) -> Answer {
    let started = Instant::now();
    let outcome = tokio::time::timeout(TIMEOUT, request(ctx, endpoint, message)).await;
    let duration = started.elapsed();
    match outcome {
        Ok(Ok((status, retry_after, excerpt))) => Answer {
            status: Some(status),
            duration,
            error: (!(200..300).contains(&status)).then(|| match status {
                300..=399 => format!("the endpoint answered {status}; redirects are not followed"),
                _ => format!("the endpoint answered {status}"),
            }),
            excerpt,
            retry_after,
        },
        Ok(Err(error)) => Answer {
            status: None,
            duration,
            error: Some(error),
            excerpt: None,
            retry_after: None,
        },
        Err(_) => Answer {
            status: None,
            duration,
            error: Some(format!("no answer within {} s", TIMEOUT.as_secs())),
            excerpt: None,
            retry_after: None,
        },
    }
}

type Received = (u16, Option<Duration>, Option<String>);

async fn request(
    ctx: &AppContext,
    endpoint: &Endpoint,
    message: &Message,
) -> Result<Received, String> {
    let policy = super::policy(&ctx.webhooks);
    let url = url::Url::parse(&endpoint.url)
        .map_err(|e| format!("the endpoint URL is malformed: {e}"))?;
    guard::check_url(&url, policy).map_err(|e| e.to_string())?;
    let client = client(policy).map_err(|e| format!("{e:#}"))?;
    let timestamp = ctx.clock.now().timestamp();
    let signature = crate::credentials::webhook_signature::sign(
        endpoint.secret.expose(),
        &message.event_id,
        timestamp,
        message.payload.as_bytes(),
    )
    .map_err(|e| format!("{e:#}"))?;
    let request = http::Request::post(url.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::USER_AGENT, "Storefront-Webhooks/1")
        .header("webhook-id", &message.event_id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(Full::new(Bytes::from(message.payload.clone())))
        .map_err(|e| format!("the request does not build: {e}"))?;
    let response = client.request(request).await.map_err(|e| describe(&e))?;
    let status = response.status().as_u16();
    let retry_after = matches!(status, 429 | 503)
        .then(|| retry_after(response.headers(), ctx.clock.now()))
        .flatten();
    let excerpt = excerpt(response.into_body()).await;
    Ok((status, retry_after, excerpt))
}

/// A client error with its causes (the guard's refusal is a cause of the connect error).
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The start of a body, read no further than [`EXCERPT_BYTES`].
async fn excerpt(mut body: hyper::body::Incoming) -> Option<String> {
    let mut bytes = Vec::new();
    while bytes.len() < EXCERPT_BYTES {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    bytes.extend_from_slice(data);
                }
            }
            _ => break,
        }
    }
    bytes.truncate(EXCERPT_BYTES);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    (!text.is_empty()).then_some(text)
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3), at most a day.
fn retry_after(headers: &http::HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let value = headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => {
            let at: DateTime<Utc> = httpdate::parse_http_date(value).ok()?.into();
            (at - now).to_std().unwrap_or_default()
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The time `ms` (epoch milliseconds) names, or `now` for one out of range.
fn time_of(ms: i64, now: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or(now)
}

fn chrono_of(duration: Duration) -> chrono::Duration {
    chrono::Duration::from_std(duration).unwrap_or(chrono::Duration::MAX)
}

/// A uniform number in 0..1, for the retry schedule's jitter.
fn spread() -> f64 {
    let bytes = crate::crypto::random_bytes(4).unwrap_or_else(|_| vec![0x80, 0, 0, 0]);
    let n = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    f64::from(n) / f64::from(u32::MAX)
}

/// A random wait up to `max`, so jobs held together do not come back together.
fn jitter(max: Duration) -> chrono::Duration {
    chrono_of(max.mul_f64(spread()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date_and_capped_at_a_day() {
        let now = DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let header = |v: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::RETRY_AFTER, v.parse().unwrap());
            headers
        };
        assert_eq!(
            retry_after(&header("120"), now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            retry_after(&header("Wed, 02 Dec 2026 12:01:00 GMT"), now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(retry_after(&header("999999"), now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(&header("soon"), now), None);
        assert_eq!(retry_after(&http::HeaderMap::new(), now), None);
    }

    #[test]
    fn the_spread_stays_within_zero_and_one() {
        for _ in 0..100 {
            let s = spread();
            assert!((0.0..=1.0).contains(&s), "{s}");
        }
    }
}
