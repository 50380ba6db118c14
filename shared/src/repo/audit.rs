//! The audit log: who did what to which resource, when and from where, written in the same
//! transaction as the change it records, so there is never a change without its entry nor
//! an entry without its change.
//!
//! `AUDIT#<tid>` / `<audit id>` lists a shop's entries (ids are ULIDs: newest first read
//! backwards); `gsi1` holds `AUDIT#<tid>#<resource id>` / `<audit id>` for one resource's
//! history. An entry expires (TTL) after the shop's retention. The partition starts with
//! `AUDIT#` so IAM can grant a function the writing of entries and nothing else.

use serde::{Deserialize, Serialize};

use crate::domain::TenantId;
use crate::store::{Condition, Index, Item, Key, Query, StoreError, TxOp};

/// Who acted: `{"type": "user" | "api_key" | "system", "id"}` (a system actor is the function
/// that acted, such as `images-worker`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// What was acted on: `{"type": "member" | "api_key" | "session" | …, "id"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resource {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
}

/// One entry as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub tenant_id: TenantId,
    pub actor: Actor,
    /// `<resource type>.<what happened>`, e.g. `member.role_changed`.
    pub action: String,
    pub resource: Resource,
    /// What changed, where the action alone does not say (`role: staff -> admin`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub ip: Option<String>,
    pub at: String,
}

fn partition(tenant_id: &str) -> String {
    format!("AUDIT#{tenant_id}")
}

fn resource_partition(tenant_id: &str, resource_id: &str) -> String {
    format!("AUDIT#{tenant_id}#{resource_id}")
}

/// The write that records `entry`, kept until `expires_at` (epoch seconds), for the
/// transaction of the change it records.
pub fn record(entry: &Entry, expires_at: i64) -> Result<TxOp, StoreError> {
    let item = Item::new(&Key::new(partition(&entry.tenant_id), entry.id.as_str()))
        .with_record(entry)?
        .with_gsi1(
            resource_partition(&entry.tenant_id, &entry.resource.id),
            entry.id.as_str(),
        )
        .with_ttl(expires_at);
    Ok(TxOp::Put {
        item,
        condition: Some(Condition::NotExists),
    })
}

/// A shop's entries, newest first; read with [`super::records`].
pub fn of_tenant(tenant_id: &str) -> Query {
    Query::partition(Index::Primary, partition(tenant_id)).backward()
}

/// A shop's entries about one resource, newest first; read with [`super::records`].
pub fn of_resource(tenant_id: &str, resource_id: &str) -> Query {
    Query::partition(Index::Gsi1, resource_partition(tenant_id, resource_id)).backward()
}
