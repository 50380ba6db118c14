//! Customer emails, one record per event that sends one: `TENANT#<tid>#EMAIL#<event id>` /
//! `EMAIL`. Written `queued` with the email's job (so an event queues its email once),
//! leased while it is sent (so a duplicated job sends nothing twice), then `sent`. Kept
//! [`RETENTION_DAYS`].

use crate::store::{Condition, Item, Key, StoreError, Table, TxOp, UpdateOp};

pub const RETENTION_DAYS: i64 = 30;

pub fn key(tenant_id: &str, event_id: &str) -> Key {
    Key::new(format!("TENANT#{tenant_id}#EMAIL#{event_id}"), "EMAIL")
}

/// The write recording an email queued, refused when the event queued one before.
pub fn queued(tenant_id: &str, event_id: &str, kind: &str, expires_at: i64) -> TxOp {
    TxOp::Put {
        item: Item::new(&key(tenant_id, event_id))
            .with("state", "queued")
            .with("kind", kind)
            .with_ttl(expires_at),
        condition: Some(Condition::NotExists),
    }
}

/// What taking the lease found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lease {
    Taken,
    /// The email was sent already.
    Sent,
    /// Another job is sending it now (or its record is gone).
    Busy,
}

/// Takes the lease to send the email until `until_ms`, under `token`.
pub async fn lease(
    table: &dyn Table,
    key: &Key,
    token: &str,
    now_ms: i64,
    until_ms: i64,
) -> Result<Lease, StoreError> {
    let condition = Condition::Or(vec![
        Condition::eq("state", "queued"),
        Condition::And(vec![
            Condition::eq("state", "sending"),
            Condition::lt("lease_until_ms", now_ms),
        ]),
    ]);
    let ops = vec![
        UpdateOp::set("state", "sending"),
        UpdateOp::set("lease_until_ms", until_ms),
        UpdateOp::set("lease_token", token),
    ];
    match table.update(key, ops, Some(condition)).await {
        Ok(_) => Ok(Lease::Taken),
        Err(e) if e.is_condition_failed() => match table.get(key).await? {
            Some(item) if item.get_str("state") == Some("sent") => Ok(Lease::Sent),
            _ => Ok(Lease::Busy),
        },
        Err(e) => Err(e),
    }
}

/// Records the email sent by the lease's holder, with what the provider called it.
pub async fn sent(
    table: &dyn Table,
    key: &Key,
    token: &str,
    provider_id: &str,
    at: &str,
) -> Result<(), StoreError> {
    let ops = vec![
        UpdateOp::set("state", "sent"),
        UpdateOp::set("provider_id", provider_id),
        UpdateOp::set("sent_at", at),
        UpdateOp::remove("lease_until_ms"),
        UpdateOp::remove("lease_token"),
    ];
    match table
        .update(key, ops, Some(Condition::eq("lease_token", token)))
        .await
    {
        Ok(_) => Ok(()),
        // Its lease ran out and another job sent it too: already recorded.
        Err(e) if e.is_condition_failed() => Ok(()),
        Err(e) => Err(e),
    }
}
