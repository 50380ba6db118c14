//! The work Storefront queues: a [`Job`] travels on the jobs queue as JSON tagged with its
//! `kind`; an [`Event`] is what the outside world is told about a change (webhooks and
//! emails consume it), in the payload shape DESIGN.md gives:
//! `{"id":"evt_…","type","created_at","tenant_id","data":{"object":{…}}}`.

use serde::{Deserialize, Serialize};

/// Every kind of job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Job {
    /// Deletes an object from the blob store (abandoned or replaced uploads).
    DeleteBlob { key: String },
    /// Deletes several objects (a deleted product's images), each as `DeleteBlob` does.
    DeleteBlobs { keys: Vec<String> },
    /// Tells the outside world of a change.
    Event { event: Event },
    /// Asks the payment provider to give back an order's payment (its `refund` says how
    /// much), once: the provider's idempotency key is the order's.
    Refund { tenant_id: String, order_id: String },
    /// Sends a customer the email an event calls for, once.
    Email {
        tenant_id: String,
        event_id: String,
        email: EmailKind,
        to: String,
        customer_name: String,
        shop_name: String,
        /// The order as the event showed it.
        order: serde_json::Value,
    },
    /// Makes attempt `attempt` (1-based) to deliver an event to one webhook endpoint, not
    /// before `not_before` (RFC 3339; absent, at once). The event itself waits in the
    /// table, in the endpoint's message for it; each attempt is claimed there, so a
    /// duplicated job delivers nothing twice.
    Deliver {
        tenant_id: String,
        endpoint_id: String,
        event_id: String,
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        not_before: Option<String>,
        /// Asked for by the shop (`POST …/retry`): a failure schedules no further attempts
        /// and goes to no dead-letter queue.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        manual: bool,
    },
}

/// Which email an event calls for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmailKind {
    /// `order.paid`: the order confirmation.
    Confirmation,
    /// `order.cancelled`.
    Cancellation,
    /// `order.refunded`: the money is on its way back.
    Refund,
}

impl EmailKind {
    pub fn of(event_type: &str) -> Option<Self> {
        match event_type {
            "order.paid" => Some(Self::Confirmation),
            "order.cancelled" => Some(Self::Cancellation),
            "order.refunded" => Some(Self::Refund),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmation => "confirmation",
            Self::Cancellation => "cancellation",
            Self::Refund => "refund",
        }
    }
}

impl Job {
    pub fn to_body(&self) -> anyhow::Result<String> {
        Ok(serde_json::to_string(self)?)
    }
}

/// A change the outside world hears of, with the changed object as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// `evt_…`: consumers apply each event once, by this id.
    pub id: String,
    /// `product.updated`, `order.paid`, …
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: String,
    pub tenant_id: String,
    pub data: EventData,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventData {
    pub object: serde_json::Value,
}
