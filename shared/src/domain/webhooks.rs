//! Webhooks in the domain's terms: the event types a shop can subscribe to, an endpoint's
//! id, and the retry schedule its deliveries follow.

use std::time::Duration;

use super::Invalid;

/// Every event type Storefront announces (DESIGN.md, "Events and jobs").
pub const EVENT_TYPES: &[&str] = &[
    "order.created",
    "order.paid",
    "order.cancelled",
    "order.fulfilled",
    "order.refunded",
    "product.updated",
    "product.deleted",
];

/// The most event types one endpoint lists (each at most once).
const MAX_EVENT_TYPES: usize = EVENT_TYPES.len();

/// The event types an endpoint subscribes to: at least one, each a known type, no repeats
/// (a repeat is folded away), kept in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventTypes(Vec<String>);

impl EventTypes {
    pub fn parse(raw: &[String]) -> Result<Self, Invalid> {
        if raw.is_empty() {
            return Err(Invalid(format!(
                "must list at least one event type of: {}",
                EVENT_TYPES.join(", ")
            )));
        }
        let mut types: Vec<String> = Vec::with_capacity(raw.len().min(MAX_EVENT_TYPES));
        for kind in raw {
            if !EVENT_TYPES.contains(&kind.as_str()) {
                return Err(Invalid(format!(
                    "`{}` is not an event type; known types: {}",
                    kind.chars().take(64).collect::<String>(),
                    EVENT_TYPES.join(", ")
                )));
            }
            if !types.contains(kind) {
                types.push(kind.clone());
            }
        }
        Ok(Self(types))
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<String> {
        self.0
    }
}

/// When a delivery's attempts are made: entry `i` is the wait before attempt `i + 1`,
/// counted from the attempt before it (the first from the event), each stretched or
/// shrunk by up to 20 % at random so endpoints that failed together do not retry together.
///
/// Standard Webhooks' schedule is the default: attempts at 0, 5 s, 5 min, 30 min, 2 h, 5 h,
/// 10 h, 14 h, 20 h and 24 h after the previous one.
/// <https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

impl Default for RetrySchedule {
    fn default() -> Self {
        Self(
            [
                0, 5, 300, 1800, 7200, 18_000, 36_000, 50_400, 72_000, 86_400,
            ]
            .into_iter()
            .map(Duration::from_secs)
            .collect(),
        )
    }
}

/// The longest wait one entry of a schedule may ask for: a day, the default's longest.
const MAX_WAIT: Duration = Duration::from_secs(86_400);
/// The most attempts a schedule may make.
const MAX_ATTEMPTS: usize = 20;
/// How far each wait is moved at random, either way.
const JITTER: f64 = 0.2;

impl RetrySchedule {
    /// `STOREFRONT_WEBHOOK_RETRY_SCHEDULE`'s form: comma-separated whole seconds. A list that
    /// starts with 0 is the whole schedule (`0,5,300`: three attempts); one that does not
    /// lists the waits before each retry, the first attempt being made at once (`5,300`:
    /// also three attempts).
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let waits = raw
            .split(',')
            .map(|part| {
                part.trim()
                    .parse::<u64>()
                    .ok()
                    .map(Duration::from_secs)
                    .filter(|wait| *wait <= MAX_WAIT)
            })
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                Invalid(format!(
                    "must be comma-separated whole seconds, each at most {}",
                    MAX_WAIT.as_secs()
                ))
            })?;
        let waits = match waits.first() {
            Some(first) if first.is_zero() => waits,
            _ => std::iter::once(Duration::ZERO).chain(waits).collect(),
        };
        if waits.len() > MAX_ATTEMPTS {
            return Err(Invalid(format!("makes at most {MAX_ATTEMPTS} attempts")));
        }
        Ok(Self(waits))
    }

    /// How many attempts a delivery gets before it is dead.
    pub fn attempts(&self) -> u32 {
        u32::try_from(self.0.len()).unwrap_or(u32::MAX)
    }

    /// The wait before attempt `attempt` (1-based) once the previous one failed, with
    /// `spread` (uniform in 0..1) placing it within the jitter; `None` after the last.
    pub fn wait_before(&self, attempt: u32, spread: f64) -> Option<Duration> {
        let index = usize::try_from(attempt.checked_sub(1)?).ok()?;
        let wait = *self.0.get(index)?;
        let factor = 1.0 - JITTER + 2.0 * JITTER * spread.clamp(0.0, 1.0);
        Some(wait.mul_f64(factor))
    }
}

/// An endpoint's circuit breaker: consecutive failures, and (once they reach
/// [`Breaker::THRESHOLD`]) the time it is open until, then the trial request let through
/// once that time has passed (half-open): its success closes the breaker, its failure
/// opens it again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Breaker {
    pub failures: u32,
    pub open_until_ms: Option<i64>,
    pub trial_until_ms: Option<i64>,
}

/// What the breaker lets an attempt do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Closed: go.
    Closed,
    /// Open: wait until then (not an attempt).
    Open { until_ms: i64 },
    /// Half-open, and no trial in flight: go, as the trial.
    Trial,
    /// Half-open, and another attempt is the trial until then: wait for it.
    TrialInFlight { until_ms: i64 },
}

impl Breaker {
    /// Consecutive failures that open the breaker.
    pub const THRESHOLD: u32 = 5;
    /// How long it stays open.
    pub const OPEN_MS: i64 = 30_000;

    pub fn gate(&self, now_ms: i64) -> Gate {
        match (self.open_until_ms, self.trial_until_ms) {
            (None, _) => Gate::Closed,
            (Some(until_ms), _) if until_ms > now_ms => Gate::Open { until_ms },
            (Some(_), Some(until_ms)) if until_ms > now_ms => Gate::TrialInFlight { until_ms },
            (Some(_), _) => Gate::Trial,
        }
    }

    /// Whether `failures` in a row open it.
    pub fn opens_after(failures: u32) -> bool {
        failures >= Self::THRESHOLD
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_schedule_is_standard_webhooks_ten_attempts() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.attempts(), 10);
        assert_eq!(schedule.wait_before(1, 0.5), Some(Duration::ZERO));
        assert_eq!(schedule.wait_before(2, 0.5), Some(Duration::from_secs(5)));
        assert_eq!(
            schedule.wait_before(10, 0.5),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(schedule.wait_before(11, 0.5), None);
        assert_eq!(schedule.wait_before(0, 0.5), None);
    }

    #[test]
    fn every_wait_moves_at_most_twenty_percent_either_way() {
        let schedule = RetrySchedule::default();
        assert_eq!(schedule.wait_before(3, 0.0), Some(Duration::from_secs(240)));
        assert_eq!(schedule.wait_before(3, 1.0), Some(Duration::from_secs(360)));
        assert_eq!(schedule.wait_before(3, 7.0), Some(Duration::from_secs(360)));
    }

    #[test]
    fn a_schedule_from_the_environment_is_whole_or_lists_the_retries() {
        let whole = RetrySchedule::parse("0, 1,2").unwrap();
        let retries = RetrySchedule::parse("1,2").unwrap();
        assert_eq!(whole, retries);
        assert_eq!(whole.attempts(), 3);
        assert_eq!(RetrySchedule::parse("0").unwrap().attempts(), 1);
        for bad in ["", "1,,2", "-1", "1.5", "86401", "x"] {
            assert!(RetrySchedule::parse(bad).is_err(), "{bad:?}");
        }
        assert!(RetrySchedule::parse(&vec!["1"; 20].join(",")).is_err());
    }

    #[test]
    fn the_breaker_is_closed_then_open_then_lets_one_trial_through() {
        let closed = Breaker::default();
        assert_eq!(closed.gate(1_000), Gate::Closed);
        assert!(!Breaker::opens_after(4));
        assert!(Breaker::opens_after(5));
        let open = Breaker {
            failures: 5,
            open_until_ms: Some(31_000),
            trial_until_ms: None,
        };
        assert_eq!(open.gate(1_000), Gate::Open { until_ms: 31_000 });
        assert_eq!(open.gate(31_000), Gate::Trial);
        let trying = Breaker {
            trial_until_ms: Some(61_000),
            ..open
        };
        assert_eq!(
            trying.gate(40_000),
            Gate::TrialInFlight { until_ms: 61_000 }
        );
        // A trial that never reported (its worker died) gives way to the next one.
        assert_eq!(trying.gate(61_001), Gate::Trial);
    }

    #[test]
    fn event_types_are_known_ones_listed_once() {
        let types = EventTypes::parse(&[
            "order.paid".to_owned(),
            "order.created".to_owned(),
            "order.paid".to_owned(),
        ])
        .unwrap();
        assert_eq!(types.as_slice(), ["order.paid", "order.created"]);
        assert!(EventTypes::parse(&[]).is_err());
        let unknown = EventTypes::parse(&["order.shipped".to_owned()]).unwrap_err();
        assert!(unknown.0.contains("order.shipped"), "{unknown}");
    }
}
