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
