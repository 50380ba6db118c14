//! Typed, time-sortable identifiers: a resource prefix and a ULID (`ord_01JD…`).
//!
//! ULIDs sort by creation time as plain strings, which is what the single-table sort keys
//! and "newest first" listings rely on.

use std::sync::Mutex;

use crate::clock::Clock;

/// The kinds of identifier the API hands out, each with its prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdKind {
    Tenant,
    User,
    Session,
    ApiKey,
    Product,
    Image,
    Order,
    WebhookEndpoint,
    Delivery,
    Event,
    Request,
    Message,
    Audit,
}

impl IdKind {
    pub fn prefix(self) -> &'static str {
        match self {
            Self::Tenant => "ten_",
            Self::User => "usr_",
            Self::Session => "ses_",
            Self::ApiKey => "key_",
            Self::Product => "prod_",
            Self::Image => "img_",
            Self::Order => "ord_",
            Self::WebhookEndpoint => "whe_",
            Self::Delivery => "dlv_",
            Self::Event => "evt_",
            Self::Request => "req_",
            Self::Message => "msg_",
            Self::Audit => "aud_",
        }
    }

    /// Whether `s` is a well-formed id of this kind (prefix and a 26-character ULID).
    pub fn matches(self, s: &str) -> bool {
        s.strip_prefix(self.prefix())
            .is_some_and(|rest| ulid::Ulid::from_string(rest).is_ok())
    }
}

/// Makes new ids; injected so tests can predict them.
pub trait IdGenerator: Send + Sync {
    fn next(&self, kind: IdKind) -> String;
}

/// ULIDs from the injected clock, monotonic within a millisecond.
pub struct UlidGenerator {
    clock: std::sync::Arc<dyn Clock>,
    last: Mutex<ulid::Generator>,
}

impl UlidGenerator {
    pub fn new(clock: std::sync::Arc<dyn Clock>) -> Self {
        Self {
            clock,
            last: Mutex::new(ulid::Generator::new()),
        }
    }
}

impl IdGenerator for UlidGenerator {
    fn next(&self, kind: IdKind) -> String {
        let now: std::time::SystemTime = self.clock.now().into();
        let id = match self.last.lock() {
            // Overflow within one millisecond (2^80 ids) falls back to a fresh random ULID.
            Ok(mut g) => g
                .generate_from_datetime(now)
                .unwrap_or_else(|_| ulid::Ulid::from_datetime(now)),
            Err(_) => ulid::Ulid::from_datetime(now),
        };
        format!("{}{}", kind.prefix(), id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;

    #[test]
    fn ids_carry_their_prefix_and_sort_by_creation() {
        let ids = UlidGenerator::new(std::sync::Arc::new(SystemClock));
        let a = ids.next(IdKind::Order);
        let b = ids.next(IdKind::Order);
        assert!(IdKind::Order.matches(&a), "{a}");
        assert!(!IdKind::Product.matches(&a));
        assert!(a < b, "{a} should sort before {b}");
    }
}
