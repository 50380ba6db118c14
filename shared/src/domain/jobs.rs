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
