//! API keys of a tenant: `APIKEY#<prefix>` / `APIKEY`, listed through `gsi1` under
//! `TENANT#<tid>#APIKEYS` with the key id (time-sortable) as sort key. Only the SHA-256 of
//! a key is stored; the key itself is shown once, at creation.

use serde::{Deserialize, Serialize};

use chrono::{DateTime, Utc};

use crate::domain::{ApiKeyId, Role, TenantId, UserId};
use crate::store::{
    Condition, Index, Item, Key, Query, StoreError, Table, Transaction, TransactionError, UpdateOp,
};

/// How stale `last_used_at` may get before a use writes it again (one write a minute at most).
const LAST_USED_GRANULARITY_SECONDS: i64 = 60;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub tenant_id: TenantId,
    pub name: String,
    pub role: Role,
    pub prefix: String,
    pub hash: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    /// The member whose authority the key carries: it acts at most with that member's role
    /// as it is now, and stops when the member is gone. Keys stored without one (made
    /// before keys recorded their creator) are refused.
    #[serde(default)]
    pub created_by: Option<UserId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ApiKeyView {
    pub id: ApiKeyId,
    pub name: String,
    pub role: Role,
    pub prefix: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
}

impl ApiKey {
    pub fn view(&self) -> ApiKeyView {
        ApiKeyView {
            id: self.id.clone(),
            name: self.name.clone(),
            role: self.role,
            prefix: self.prefix.clone(),
            created_at: self.created_at.clone(),
            last_used_at: self.last_used_at.clone(),
        }
    }
}

pub fn key(prefix: &str) -> Key {
    Key::new(format!("APIKEY#{prefix}"), "APIKEY")
}

pub fn tenant_partition(tenant_id: &str) -> String {
    format!("TENANT#{tenant_id}#APIKEYS")
}

/// Stores a new key, with `alongside` (its audit entry) in the same transaction.
#[tracing::instrument(skip_all, fields(key_id = %api_key.id))]
pub async fn create(
    table: &dyn Table,
    api_key: &ApiKey,
    alongside: Transaction<&'static str>,
) -> Result<(), StoreError> {
    let item = Item::new(&key(&api_key.prefix))
        .with_record(api_key)?
        .with_gsi1(tenant_partition(&api_key.tenant_id), api_key.id.as_str());
    let mut tx = alongside;
    tx.put("the key", item, Some(Condition::NotExists))?;
    tx.commit(table).await.map_err(TransactionError::into_store)
}

/// The key stored under `prefix`, if any (the caller compares the presented key's hash).
#[tracing::instrument(skip_all)]
pub async fn find(table: &dyn Table, prefix: &str) -> Result<Option<ApiKey>, StoreError> {
    table
        .get(&key(prefix))
        .await?
        .map(|item| item.record())
        .transpose()
}

/// Records a use of the key at `now`, unless one was recorded within the last minute: at
/// most one write a minute per key, however busy it is.
#[tracing::instrument(skip_all, fields(key_id = %api_key.id))]
pub async fn record_use(
    table: &dyn Table,
    api_key: &ApiKey,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let stale = api_key
        .last_used_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .is_none_or(|t| {
            (now - t.with_timezone(&Utc)).num_seconds() >= LAST_USED_GRANULARITY_SECONDS
        });
    if !stale {
        return Ok(());
    }
    let used = crate::clock::rfc3339(now);
    table
        .update(
            &key(&api_key.prefix),
            vec![UpdateOp::set("last_used_at", used)],
            Some(Condition::Exists),
        )
        .await
        .map(drop)
}

/// A tenant's keys, newest first; read with [`super::records`].
pub fn of_tenant(tenant_id: &str) -> Query {
    Query::partition(Index::Gsi1, tenant_partition(tenant_id)).backward()
}

/// Deletes a tenant's key by its prefix (which its id names), with `alongside` (its audit
/// entry) in the same transaction; `false` when the tenant has no such key, and then
/// nothing is written. No index read that may lag.
#[tracing::instrument(skip(table, alongside))]
pub async fn revoke(
    table: &dyn Table,
    tenant_id: &str,
    prefix: &str,
    alongside: Transaction<&'static str>,
) -> Result<bool, StoreError> {
    let mut tx = alongside;
    tx.delete(
        "the key",
        key(prefix),
        Some(Condition::eq("tenant_id", tenant_id)),
    )?;
    match tx.commit(table).await {
        Ok(()) => Ok(true),
        Err(TransactionError::Refused("the key")) => Ok(false),
        Err(e) => Err(e.into_store()),
    }
}
