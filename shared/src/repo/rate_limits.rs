//! The rate limiter: fixed one-minute windows counted in the table, so every function
//! instance (and every local worker) shares the count.
//!
//! A check is one atomic `ADD` on `RATE#<scope>#<subject>#<window>` (one DynamoDB request),
//! whose item expires with its window. The answer carries what the IETF RateLimit header
//! fields need: <https://datatracker.ietf.org/doc/draft-ietf-httpapi-ratelimit-headers/>.

use chrono::{DateTime, Utc};

use crate::store::{Key, StoreError, Table, UpdateOp};

/// The window every limit counts over.
pub const WINDOW_SECONDS: i64 = 60;

/// One limit: a name (the policy in the headers) and the requests allowed per window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    pub scope: &'static str,
    pub per_minute: u32,
}

/// The outcome of one counted request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub limit: Limit,
    pub allowed: bool,
    /// Requests left in this window after this one.
    pub remaining: u32,
    /// Seconds until the window resets.
    pub reset_after: u64,
}

impl Decision {
    /// `RateLimit-Policy`: `"<scope>";q=<quota>;w=<window>`.
    pub fn policy_header(&self) -> String {
        format!(
            "\"{}\";q={};w={WINDOW_SECONDS}",
            self.limit.scope, self.limit.per_minute
        )
    }

    /// `RateLimit`: `"<scope>";r=<remaining>;t=<seconds to reset>`.
    pub fn state_header(&self) -> String {
        format!(
            "\"{}\";r={};t={}",
            self.limit.scope, self.remaining, self.reset_after
        )
    }
}

/// Counts one request by `subject` (an IP, an account, a key id) against `limit` at `now`.
#[tracing::instrument(skip(table, subject), fields(scope = limit.scope))]
pub async fn hit(
    table: &dyn Table,
    limit: Limit,
    subject: &str,
    now: DateTime<Utc>,
) -> Result<Decision, StoreError> {
    let now = now.timestamp();
    let window = now.div_euclid(WINDOW_SECONDS);
    let window_end = (window + 1) * WINDOW_SECONDS;
    let key = Key::new(format!("RATE#{}#{subject}#{window}", limit.scope), "RATE");
    let item = table
        .update(
            &key,
            vec![
                UpdateOp::add("count", 1),
                UpdateOp::set(crate::store::TTL, window_end + WINDOW_SECONDS),
            ],
            None,
        )
        .await?;
    let count = u32::try_from(item.get_i64("count").unwrap_or(i64::MAX)).unwrap_or(u32::MAX);
    Ok(Decision {
        limit,
        allowed: count <= limit.per_minute,
        remaining: limit.per_minute.saturating_sub(count),
        reset_after: u64::try_from(window_end - now).unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::{Clock, ManualClock};
    use crate::store::embedded::EmbeddedTable;

    const LOGIN: Limit = Limit {
        scope: "login",
        per_minute: 5,
    };

    #[tokio::test]
    async fn the_sixth_attempt_in_a_minute_is_refused_and_the_next_window_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        // 18 s into a minute (1_800_000_000 is a whole minute), so the window resets in 42 s.
        let start = DateTime::from_timestamp(1_800_000_000 + 18, 0).unwrap();
        let clock = Arc::new(ManualClock::new(start));
        let table =
            EmbeddedTable::open(&dir.path().join("t.redb"), clock.clone() as Arc<dyn Clock>)
                .unwrap();
        for attempt in 1..=5 {
            let d = hit(&table, LOGIN, "203.0.113.7", clock.now())
                .await
                .unwrap();
            assert!(d.allowed, "attempt {attempt}");
            assert_eq!(d.remaining, 5 - attempt);
        }
        let sixth = hit(&table, LOGIN, "203.0.113.7", clock.now())
            .await
            .unwrap();
        assert!(!sixth.allowed);
        assert_eq!(sixth.reset_after, 42);
        assert_eq!(sixth.remaining, 0);
        let other = hit(&table, LOGIN, "198.51.100.1", clock.now())
            .await
            .unwrap();
        assert!(other.allowed, "another subject has its own count");
        clock.advance(std::time::Duration::from_secs(42));
        let next = hit(&table, LOGIN, "203.0.113.7", clock.now())
            .await
            .unwrap();
        assert!(next.allowed, "a new window");
        assert_eq!(next.remaining, 4);
    }

    #[test]
    fn the_headers_follow_the_ietf_draft() {
        let d = Decision {
            limit: LOGIN,
            allowed: false,
            remaining: 0,
            reset_after: 42,
        };
        assert_eq!(d.policy_header(), "\"login\";q=5;w=60");
        assert_eq!(d.state_header(), "\"login\";r=0;t=42");
    }
}
