//! Sessions (devices), each a refresh-token family: `TENANT#<tid>#USER#<uid>` / `SESSION#<sid>`.
//!
//! The session stores the hash of its current refresh token. Every refresh swaps it under a
//! condition on the old one, so one token can be spent once, and in the same transaction
//! writes the spent hash as an item of its own (`SPENT#<sid>#<hash>`, kept for
//! [`IDLE_SECONDS`], as long as an unused session lives): every token a session spent in
//! that time is recognised, not just the latest few, and a spent token presented again
//! revokes (deletes) the whole session.

use serde::{Deserialize, Serialize};

use crate::domain::{SessionId, TenantId, UserId};

use crate::store::{
    Condition, Index, Item, Key, Query, SortKey, StoreError, Table, Transaction, TransactionError,
    TxOp, UpdateOp,
};

/// How long a session lives without being used.
pub const IDLE_SECONDS: i64 = 30 * 24 * 3600;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub created_at: String,
    pub last_used_at: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub refresh_hash: String,
}

/// The session as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SessionView {
    pub id: SessionId,
    pub created_at: String,
    pub last_used_at: String,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub current: bool,
}

impl Session {
    /// When the session ends however often it is refreshed: `lifetime` after sign-in (a
    /// malformed stored start counts as already ended).
    pub fn ends_at(&self, lifetime: chrono::Duration) -> i64 {
        chrono::DateTime::parse_from_rfc3339(&self.created_at)
            .map_or(i64::MIN, |start| (start + lifetime).timestamp())
    }

    pub fn view(&self, current_session: Option<&str>) -> SessionView {
        SessionView {
            id: self.id.clone(),
            created_at: self.created_at.clone(),
            last_used_at: self.last_used_at.clone(),
            user_agent: self.user_agent.clone(),
            ip: self.ip.clone(),
            current: current_session == Some(self.id.as_str()),
        }
    }
}

pub fn key(tenant_id: &str, user_id: &str, session_id: &str) -> Key {
    Key::new(
        format!("TENANT#{tenant_id}#USER#{user_id}"),
        format!("SESSION#{session_id}"),
    )
}

/// The record of a refresh token the session has spent: in the user's partition, outside
/// the `SESSION#` range that lists sessions.
fn spent_key(session: &Session, hash: &str) -> Key {
    Key::new(
        user_partition(&session.tenant_id, &session.user_id),
        format!("SPENT#{}#{hash}", session.id),
    )
}

/// Whether the session has spent the refresh token with this hash.
pub async fn was_spent(
    table: &dyn Table,
    session: &Session,
    hash: &str,
) -> Result<bool, StoreError> {
    Ok(table.get(&spent_key(session, hash)).await?.is_some())
}

/// When the store may drop a session used at `now`: after [`IDLE_SECONDS`] unused, and
/// never after its absolute end.
fn expiry(now: i64, ends_at: i64) -> i64 {
    (now + IDLE_SECONDS).min(ends_at)
}

/// Starts a session that expires after [`IDLE_SECONDS`] unused, or at `ends_at`.
pub fn create(session: &Session, now: i64, ends_at: i64) -> Result<TxOp, StoreError> {
    let item = Item::new(&key(&session.tenant_id, &session.user_id, &session.id))
        .with_record(session)?
        .with_ttl(expiry(now, ends_at));
    Ok(TxOp::Put {
        item,
        condition: Some(Condition::NotExists),
    })
}

pub async fn get(
    table: &dyn Table,
    tenant_id: &str,
    user_id: &str,
    session_id: &str,
) -> Result<Option<Session>, StoreError> {
    table
        .get(&key(tenant_id, user_id, session_id))
        .await?
        .map(|i| i.record())
        .transpose()
}

/// Spends the current refresh token for a new one. Fails with a condition error if the
/// session was revoked or its token spent meanwhile.
pub async fn rotate(
    table: &dyn Table,
    session: &Session,
    new_hash: &str,
    now_rfc3339: &str,
    now: i64,
    ends_at: i64,
) -> Result<(), StoreError> {
    let ops = vec![
        UpdateOp::set("refresh_hash", new_hash),
        UpdateOp::set("last_used_at", now_rfc3339),
        UpdateOp::set(crate::store::TTL, expiry(now, ends_at)),
    ];
    // A revoked session no longer exists, so this also fails for one revoked meanwhile.
    let condition = Condition::eq("refresh_hash", session.refresh_hash.as_str());
    // Kept as long as the session could be left idle: a spent token is recognised for as
    // long as the session it belonged to could still be refreshed.
    let spent = Item::new(&spent_key(session, &session.refresh_hash)).with_ttl(now + IDLE_SECONDS);
    let mut tx = Transaction::new();
    tx.update(
        "the session's current token",
        key(&session.tenant_id, &session.user_id, &session.id),
        ops,
        Some(condition),
    )?
    .put("the spent token's record", spent, None)?;
    tx.commit(table).await.map_err(TransactionError::into_store)
}

/// Ends a session by deleting it, with `alongside` (its audit entry, when a person ended
/// it) in the same transaction: its refresh token stops working at once. `false` when
/// there is no such session, and then nothing is written.
#[tracing::instrument(skip(table, alongside))]
pub async fn revoke(
    table: &dyn Table,
    tenant_id: &str,
    user_id: &str,
    session_id: &str,
    alongside: Transaction<&'static str>,
) -> Result<bool, StoreError> {
    let mut tx = alongside;
    tx.delete(
        "the session",
        key(tenant_id, user_id, session_id),
        Some(Condition::Exists),
    )?;
    match tx.commit(table).await {
        Ok(()) => Ok(true),
        Err(TransactionError::Refused("the session")) => Ok(false),
        Err(e) => Err(e.into_store()),
    }
}

/// Ends `session` with nothing alongside (reuse detected, lifetime reached, logout):
/// [`revoke`] without an audit entry, the session's own doing.
pub async fn end(table: &dyn Table, session: &Session) -> Result<bool, StoreError> {
    revoke(
        table,
        &session.tenant_id,
        &session.user_id,
        &session.id,
        Transaction::new(),
    )
    .await
}

/// The partition holding a user and their sessions.
pub fn user_partition(tenant_id: &str, user_id: &str) -> String {
    format!("TENANT#{tenant_id}#USER#{user_id}")
}

/// A user's sessions, newest first (session ids sort by creation); read with
/// [`super::records`].
pub fn of_user(tenant_id: &str, user_id: &str) -> Query {
    Query::partition(Index::Primary, user_partition(tenant_id, user_id))
        .sort(SortKey::BeginsWith("SESSION#".into()))
        .backward()
}
