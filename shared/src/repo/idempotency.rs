//! The idempotency store: `IDEMPOTENCY#<tid>#<principal>#<key>` / `IDEMPOTENCY`.
//!
//! A client that retries a write with the same `Idempotency-Key` gets the first answer
//! back instead of the work done twice, as the IETF draft and Stripe describe:
//! <https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/>.
//!
//! 1. [`begin`] claims the key for one request with a lease (a conditional put).
//! 2. The handler does its work and puts [`Lease::complete`] into the same transaction as
//!    its change, so the change and the stored answer land together or not at all.
//! 3. A retry with the same key and the same request replays the stored answer; with
//!    another request it is refused ([`Refusal::Mismatch`], 422); while the first is still
//!    running it is refused too ([`Refusal::InFlight`], 409).
//! 4. A request that crashed half-way leaves only its lease, which lapses after
//!    [`LEASE_SECONDS`]; a retry then runs afresh. Its change cannot have landed, because
//!    the answer would have landed with it.
//!
//! Keys are scoped to the caller (tenant and principal), so two callers can never see each
//! other's answers, and expire after [`RETENTION_SECONDS`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::TenantId;
use crate::store::{Condition, Item, Key, StoreError, Table, TxOp, UpdateOp};

/// How long a stored answer is replayed.
pub const RETENTION_SECONDS: i64 = 24 * 3600;
/// How long a claim holds the key before a retry may take it over: longer than any request
/// can run (API Gateway gives up after 30 s).
pub const LEASE_SECONDS: i64 = 60;
/// The longest key accepted, as Stripe does.
pub const MAX_KEY_LENGTH: usize = 255;

/// A client's idempotency key: 1 to 255 visible ASCII characters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > MAX_KEY_LENGTH {
            return Err(format!(
                "An idempotency key is 1 to {MAX_KEY_LENGTH} characters long."
            ));
        }
        if !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("An idempotency key is visible ASCII characters, with no spaces.".into());
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whose key it is: a key means something only to the caller that sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scope {
    pub tenant_id: TenantId,
    /// The user id or API key id of the caller.
    pub principal: String,
    pub key: IdempotencyKey,
}

impl Scope {
    fn item_key(&self) -> Key {
        Key::new(
            format!(
                "IDEMPOTENCY#{}#{}#{}",
                self.tenant_id,
                self.principal,
                self.key.as_str()
            ),
            "IDEMPOTENCY",
        )
    }
}

/// The answer kept for replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    pub status: u16,
    /// The headers worth replaying (content type, `ETag`, `Location`), in order.
    #[serde(default)]
    pub headers: Vec<(String, String)>,
    pub body: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum State {
    InFlight,
    Completed,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Record {
    fingerprint: String,
    state: State,
    /// The request holding the key.
    holder: String,
    /// Until when (epoch seconds) the holder's claim stands.
    locked_until: i64,
    created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    response: Option<StoredResponse>,
}

/// The outcome of claiming a key.
#[derive(Debug)]
pub enum Begin {
    /// The key is this request's: do the work, then complete or release the lease.
    Started(Lease),
    /// The work was done before: answer this.
    Replay(StoredResponse),
}

/// Why a key could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// Another request with this key is still running.
    #[error("a request with this idempotency key is still in flight")]
    InFlight,
    /// The key was used for a different request.
    #[error("the idempotency key was used for a different request")]
    Mismatch,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One request's claim on a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    key: Key,
    holder: String,
}

impl Lease {
    fn held(&self) -> Condition {
        Condition::And(vec![
            Condition::eq("holder", self.holder.as_str()),
            Condition::eq("state", "in_flight"),
        ])
    }

    /// Stores the answer, for the caller to put into the transaction that makes the
    /// change: if the lease has lapsed and another request took the key, the whole
    /// transaction fails rather than the change landing twice.
    pub fn complete(&self, response: &StoredResponse) -> Result<TxOp, StoreError> {
        let response = serde_json::to_value(response)
            .map_err(|e| StoreError::Invalid(format!("response does not serialise: {e}")))?;
        Ok(TxOp::Update {
            key: self.key.clone(),
            ops: vec![
                UpdateOp::set("state", "completed"),
                UpdateOp::set("response", response),
            ],
            condition: Some(self.held()),
        })
    }

    /// Stores the answer on its own, for work that changed nothing in the table.
    pub async fn finish(
        &self,
        table: &dyn Table,
        response: &StoredResponse,
    ) -> Result<(), StoreError> {
        table.write(self.complete(response)?).await
    }

    /// Gives the key up, so a retry runs afresh: for failures that changed nothing and
    /// that a retry may not meet again (a dependency was down).
    pub async fn release(&self, table: &dyn Table) -> Result<(), StoreError> {
        match table.delete(&self.key, Some(self.held())).await {
            // Someone else holds it now; it is not ours to give up.
            Err(StoreError::ConditionFailed { .. }) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// Claims `scope`'s key for the request `holder` whose fingerprint is `fingerprint`.
#[tracing::instrument(skip(table, scope, fingerprint), fields(tenant_id = %scope.tenant_id))]
pub async fn begin(
    table: &dyn Table,
    scope: &Scope,
    fingerprint: &str,
    holder: &str,
    now: DateTime<Utc>,
) -> Result<Begin, Refusal> {
    if holder.is_empty() {
        // Two claims with one empty holder could complete each other's lease.
        return Err(StoreError::Invalid("an idempotency claim needs a holder id".into()).into());
    }
    let key = scope.item_key();
    let lease = Lease {
        key: key.clone(),
        holder: holder.to_owned(),
    };
    let seconds = now.timestamp();
    let record = Record {
        fingerprint: fingerprint.to_owned(),
        state: State::InFlight,
        holder: holder.to_owned(),
        locked_until: seconds + LEASE_SECONDS,
        created_at: crate::clock::rfc3339(now),
        response: None,
    };
    let item = Item::new(&key)
        .with_record(&record)?
        .with_ttl(seconds + RETENTION_SECONDS);
    // A claim races other claims; each round either claims, answers, or sees a record that
    // changed under it (taken over, or expired) and looks again. Three rounds are plenty.
    for _ in 0..3 {
        match table.put(item.clone(), Some(Condition::NotExists)).await {
            Ok(()) => return Ok(Begin::Started(lease)),
            Err(StoreError::ConditionFailed { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let Some(existing) = table.get(&key).await? else {
            continue;
        };
        let existing: Record = existing.record()?;
        if existing.fingerprint != fingerprint {
            return Err(Refusal::Mismatch);
        }
        match (existing.state, existing.response) {
            (State::Completed, Some(response)) => return Ok(Begin::Replay(response)),
            (State::Completed, None) => {
                return Err(StoreError::Backend(anyhow::anyhow!(
                    "completed idempotency record has no response"
                ))
                .into())
            }
            (State::InFlight, _) if existing.locked_until > seconds => {
                return Err(Refusal::InFlight)
            }
            (State::InFlight, _) => {}
        }
        // The holder's lease lapsed: it crashed, and nothing of its work landed. Take over,
        // unless another retry got there first.
        let taken = table
            .update(
                &key,
                vec![
                    UpdateOp::set("holder", holder),
                    UpdateOp::set("locked_until", seconds + LEASE_SECONDS),
                    // A full retention from now, so the record cannot expire mid-request.
                    UpdateOp::set(crate::store::TTL, seconds + RETENTION_SECONDS),
                ],
                Some(Condition::And(vec![
                    Condition::eq("holder", existing.holder.as_str()),
                    Condition::eq("state", "in_flight"),
                ])),
            )
            .await;
        match taken {
            Ok(_) => return Ok(Begin::Started(lease)),
            Err(StoreError::ConditionFailed { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict.into())
}
