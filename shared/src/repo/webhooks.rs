//! A shop's webhook endpoints and what was delivered to them, all in the endpoint's own
//! partition `TENANT#<tid>#WEBHOOK#<wid>`:
//!
//! - `ENDPOINT`: the endpoint (listed through `gsi1` under `TENANT#<tid>#WEBHOOKS`, by id),
//!   with its circuit breaker's state in attributes of their own;
//! - `MESSAGE#<event id>`: one event to deliver there: its payload as sent, how many
//!   attempts were made, and the lease of the attempt in flight;
//! - `DELIVERY#<delivery id>`: one attempt, newest last by id (listed newest first).
//!
//! An event is fanned out once: `TENANT#<tid>#EVENT#<event id>` / `FANOUT` is written in
//! the transaction that creates its messages. Messages and attempts expire after
//! [`RETENTION_DAYS`].

use serde::{Deserialize, Serialize};

use crate::domain::{Breaker, DeliveryId, EndpointId, TenantId};
use crate::store::{
    Condition, Consistency, Index, Item, Key, Query, SortKey, StoreError, Table, Transaction,
    TransactionError, TxOp, UpdateOp,
};

/// How long deliveries are kept: the default schedule spans about three days.
pub const RETENTION_DAYS: i64 = 30;

/// A signing secret as stored: never shown after creation, never printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoredSecret(String);

impl StoredSecret {
    pub fn new(secret: String) -> Self {
        Self(secret)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoredSecret(..)")
    }
}

/// A webhook endpoint as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: EndpointId,
    pub tenant_id: TenantId,
    pub url: String,
    pub events: Vec<String>,
    pub secret: StoredSecret,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub disabled: bool,
    /// Why Storefront disabled it (a 410), when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
    /// The breaker: consecutive failed attempts …
    #[serde(default, skip_serializing)]
    pub failures: u32,
    /// … open until this time (epoch ms), after which one trial request is let through …
    #[serde(default, skip_serializing)]
    pub open_until_ms: Option<i64>,
    /// … which holds the half-open breaker until this time (epoch ms).
    #[serde(default, skip_serializing)]
    pub trial_until_ms: Option<i64>,
}

impl Endpoint {
    pub fn subscribes_to(&self, event_type: &str) -> bool {
        !self.disabled && self.events.iter().any(|e| e == event_type)
    }

    pub fn breaker(&self) -> Breaker {
        Breaker {
            failures: self.failures,
            open_until_ms: self.open_until_ms,
            trial_until_ms: self.trial_until_ms,
        }
    }
}

/// Where an event's delivery to one endpoint stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageState {
    /// Attempts are still to be made.
    Pending,
    Succeeded,
    /// The shop's own retry failed; nothing more is scheduled.
    Failed,
    /// Every scheduled attempt failed; the job is in the dead-letter queue.
    Dead,
}

/// One event to deliver to one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub event_id: String,
    pub event_type: String,
    /// The body every attempt sends, byte for byte (its signature covers these bytes).
    pub payload: String,
    pub created_at: String,
    /// Attempts made and recorded.
    pub completed: u32,
    pub state: MessageState,
    /// The attempt in flight holds the message until then (epoch ms) …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until_ms: Option<i64>,
    /// … under this token, which only it can record its end with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_token: Option<String>,
}

/// What became of an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Succeeded,
    Failed,
    /// It failed and was the last: the delivery went to the dead-letter queue.
    Dead,
}

/// One attempt to deliver an event, as logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub id: DeliveryId,
    pub endpoint_id: EndpointId,
    pub event_id: String,
    pub event_type: String,
    pub attempt: u32,
    pub status_code: Option<u16>,
    pub duration_ms: u64,
    pub outcome: Outcome,
    pub error: Option<String>,
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    /// The start of the endpoint's answer, never more.
    pub response_excerpt: Option<String>,
}

fn partition(tenant_id: &str, endpoint_id: &str) -> String {
    format!("TENANT#{tenant_id}#WEBHOOK#{endpoint_id}")
}

pub fn endpoint_key(tenant_id: &str, endpoint_id: &str) -> Key {
    Key::new(partition(tenant_id, endpoint_id), "ENDPOINT")
}

pub fn message_key(tenant_id: &str, endpoint_id: &str, event_id: &str) -> Key {
    Key::new(
        partition(tenant_id, endpoint_id),
        format!("MESSAGE#{event_id}"),
    )
}

pub fn attempt_key(tenant_id: &str, endpoint_id: &str, delivery_id: &str) -> Key {
    Key::new(
        partition(tenant_id, endpoint_id),
        format!("DELIVERY#{delivery_id}"),
    )
}

fn fan_out_key(tenant_id: &str, event_id: &str) -> Key {
    Key::new(format!("TENANT#{tenant_id}#EVENT#{event_id}"), "FANOUT")
}

fn tenant_partition(tenant_id: &str) -> String {
    format!("TENANT#{tenant_id}#WEBHOOKS")
}

/// A shop's endpoints, newest first; read with [`super::records`].
pub fn of_tenant(tenant_id: &str) -> Query {
    Query::partition(Index::Gsi1, tenant_partition(tenant_id)).backward()
}

/// An endpoint's attempts, newest first; read with [`super::records`].
pub fn attempts_of(tenant_id: &str, endpoint_id: &str) -> Query {
    Query::partition(Index::Primary, partition(tenant_id, endpoint_id))
        .sort(SortKey::BeginsWith("DELIVERY#".into()))
        .backward()
}

/// Every endpoint of a shop (a shop has at most a few dozen).
pub async fn all_of_tenant(
    table: &dyn Table,
    tenant_id: &str,
    at_most: usize,
) -> Result<Vec<Endpoint>, StoreError> {
    let (endpoints, _) = super::records(table, of_tenant(tenant_id).limit(at_most)).await?;
    Ok(endpoints)
}

fn count_key(tenant_id: &str) -> Key {
    Key::new(tenant_partition(tenant_id), "COUNT")
}

/// The write counting a new endpoint of a shop, refused when it has `at_most` already:
/// in the creation's transaction, so two creations at once cannot pass the limit.
pub fn count_one_more(tenant_id: &str, at_most: u32) -> TxOp {
    TxOp::Update {
        key: count_key(tenant_id),
        ops: vec![UpdateOp::add("endpoints", 1)],
        condition: Some(Condition::Or(vec![
            Condition::AttrNotExists("endpoints".into()),
            Condition::lt("endpoints", at_most),
        ])),
    }
}

/// The write counting a deleted endpoint, in the deletion's transaction.
pub fn count_one_less(tenant_id: &str) -> TxOp {
    TxOp::Update {
        key: count_key(tenant_id),
        ops: vec![UpdateOp::add("endpoints", -1)],
        condition: Some(Condition::Exists),
    }
}

/// The write storing a new endpoint.
pub fn create(endpoint: &Endpoint) -> Result<TxOp, StoreError> {
    let item = Item::new(&endpoint_key(&endpoint.tenant_id, endpoint.id.as_str()))
        .with_record(endpoint)?
        .with_gsi1(tenant_partition(&endpoint.tenant_id), endpoint.id.as_str());
    Ok(TxOp::Put {
        item,
        condition: Some(Condition::NotExists),
    })
}

pub async fn get(
    table: &dyn Table,
    tenant_id: &str,
    endpoint_id: &str,
) -> Result<Option<Endpoint>, StoreError> {
    table
        .get(&endpoint_key(tenant_id, endpoint_id))
        .await?
        .map(|item| item.record())
        .transpose()
}

/// Applies `ops` to an endpoint, with `alongside` (its audit entry) in the same
/// transaction; `false` when the shop has no such endpoint, and then nothing is written.
pub async fn change(
    table: &dyn Table,
    tenant_id: &str,
    endpoint_id: &str,
    ops: Vec<UpdateOp>,
    alongside: Transaction<&'static str>,
) -> Result<bool, StoreError> {
    let mut tx = alongside;
    tx.update(
        "the endpoint",
        endpoint_key(tenant_id, endpoint_id),
        ops,
        Some(Condition::Exists),
    )?;
    committed(tx.commit(table).await)
}

/// Deletes an endpoint, with `alongside` in the same transaction; `false` when the shop
/// has no such endpoint. Its messages and attempts expire on their own.
pub async fn delete(
    table: &dyn Table,
    tenant_id: &str,
    endpoint_id: &str,
    alongside: Transaction<&'static str>,
) -> Result<bool, StoreError> {
    let mut tx = alongside;
    tx.delete(
        "the endpoint",
        endpoint_key(tenant_id, endpoint_id),
        Some(Condition::Exists),
    )?
    .add("the count", count_one_less(tenant_id))?;
    committed(tx.commit(table).await)
}

fn committed(result: Result<(), TransactionError<&'static str>>) -> Result<bool, StoreError> {
    match result {
        Ok(()) => Ok(true),
        Err(TransactionError::Refused("the endpoint")) => Ok(false),
        Err(e) => Err(e.into_store()),
    }
}

/// The endpoint and its message for one event, read together and strongly: what an
/// attempt decides on.
pub async fn endpoint_and_message(
    table: &dyn Table,
    tenant_id: &str,
    endpoint_id: &str,
    event_id: &str,
) -> Result<(Option<Endpoint>, Option<Message>), StoreError> {
    let keys = [
        endpoint_key(tenant_id, endpoint_id),
        message_key(tenant_id, endpoint_id, event_id),
    ];
    let mut found = table
        .get_many(&keys, Consistency::Strong)
        .await?
        .into_iter();
    let endpoint = found.next().flatten().map(|i| i.record()).transpose()?;
    let message = found.next().flatten().map(|i| i.record()).transpose()?;
    Ok((endpoint, message))
}

pub async fn attempt(
    table: &dyn Table,
    tenant_id: &str,
    endpoint_id: &str,
    delivery_id: &str,
) -> Result<Option<Attempt>, StoreError> {
    table
        .get(&attempt_key(tenant_id, endpoint_id, delivery_id))
        .await?
        .map(|item| item.record())
        .transpose()
}

/// The writes of an event's fan-out: the marker that it happened (so a repeat finds it
/// and writes nothing), to which the caller adds each endpoint's [`new_message`].
pub fn fan_out_marker(tenant_id: &str, event_id: &str, expires_at: i64) -> TxOp {
    TxOp::Put {
        item: Item::new(&fan_out_key(tenant_id, event_id)).with_ttl(expires_at),
        condition: Some(Condition::NotExists),
    }
}

/// The write creating one endpoint's message for an event.
pub fn new_message(
    tenant_id: &str,
    endpoint_id: &str,
    message: &Message,
    expires_at: i64,
) -> Result<TxOp, StoreError> {
    let item = Item::new(&message_key(tenant_id, endpoint_id, &message.event_id))
        .with_record(message)?
        .with_ttl(expires_at);
    Ok(TxOp::Put {
        item,
        condition: Some(Condition::NotExists),
    })
}

/// Takes the lease of attempt `attempt` of a message, until `lease_until_ms`, under
/// `token`: it holds when the attempt before it is the last recorded, the message still
/// wants attempts, and no other attempt holds an unexpired lease. `false` when another
/// has it or made it.
pub async fn lease(
    table: &dyn Table,
    key: &Key,
    attempt: u32,
    token: &str,
    now_ms: i64,
    lease_until_ms: i64,
) -> Result<bool, StoreError> {
    let condition = Condition::And(vec![
        Condition::eq("completed", attempt.saturating_sub(1)),
        Condition::Or(vec![
            Condition::eq("state", "pending"),
            Condition::eq("state", "dead"),
        ]),
        lease_free(now_ms),
    ]);
    let ops = vec![
        UpdateOp::set("lease_until_ms", lease_until_ms),
        UpdateOp::set("lease_token", token),
    ];
    conditional(table.update(key, ops, Some(condition)).await.map(drop))
}

/// Gives a lease back unused (the attempt had to wait after all).
pub async fn release(table: &dyn Table, key: &Key, token: &str) -> Result<(), StoreError> {
    let ops = vec![
        UpdateOp::remove("lease_until_ms"),
        UpdateOp::remove("lease_token"),
    ];
    conditional(
        table
            .update(key, ops, Some(Condition::eq("lease_token", token)))
            .await
            .map(drop),
    )
    .map(drop)
}

/// No attempt holds the message now.
fn lease_free(now_ms: i64) -> Condition {
    Condition::Or(vec![
        Condition::AttrNotExists("lease_until_ms".into()),
        Condition::lt("lease_until_ms", now_ms),
    ])
}

/// `Ok(false)` for a write whose condition did not hold.
fn conditional(result: Result<(), StoreError>) -> Result<bool, StoreError> {
    match result {
        Ok(()) => Ok(true),
        Err(e) if e.is_condition_failed() => Ok(false),
        Err(e) => Err(e),
    }
}

/// The write recording the end of attempt `attempt` on its message, by the holder of the
/// lease `token` (`None`: an attempt that sent nothing and took no lease), conditioned on no
/// other attempt having been recorded meanwhile.
pub fn record(
    key: Key,
    attempt: u32,
    state: MessageState,
    token: Option<&str>,
) -> Result<TxOp, StoreError> {
    let state = serde_json::to_value(state)
        .map_err(|e| StoreError::Invalid(format!("a message state does not serialise: {e}")))?;
    let mut condition = vec![Condition::eq("completed", attempt.saturating_sub(1))];
    if let Some(token) = token {
        condition.push(Condition::eq("lease_token", token));
    }
    Ok(TxOp::Update {
        key,
        ops: vec![
            UpdateOp::set("completed", attempt),
            UpdateOp::Set("state".into(), state),
            UpdateOp::remove("lease_until_ms"),
            UpdateOp::remove("lease_token"),
        ],
        condition: Some(Condition::And(condition)),
    })
}

/// The write logging one attempt.
pub fn log(tenant_id: &str, attempt: &Attempt, expires_at: i64) -> Result<TxOp, StoreError> {
    let item = Item::new(&attempt_key(
        tenant_id,
        attempt.endpoint_id.as_str(),
        attempt.id.as_str(),
    ))
    .with_record(attempt)?
    .with_ttl(expires_at);
    Ok(TxOp::Put {
        item,
        condition: Some(Condition::NotExists),
    })
}

/// The write reopening a message for one more attempt (the shop's retry): conditioned on
/// nothing having been recorded since it was read, and no attempt holding it.
pub fn reopen(key: Key, completed: u32, now_ms: i64) -> TxOp {
    TxOp::Update {
        key,
        ops: vec![UpdateOp::set("state", "pending")],
        condition: Some(Condition::And(vec![
            Condition::eq("completed", completed),
            lease_free(now_ms),
        ])),
    }
}

/// The breaker's moves, each one conditional update of the endpoint.
pub mod breaker {
    use super::*;

    /// Closes it after a success: no failures, not open (a write only when it was not so).
    pub async fn close(table: &dyn Table, key: &Key) -> Result<(), StoreError> {
        let condition = Condition::And(vec![
            Condition::Exists,
            Condition::Or(vec![
                Condition::Gt("failures".into(), 0.into()),
                Condition::AttrExists("open_until_ms".into()),
            ]),
        ]);
        ignore_gone(
            table
                .update(
                    key,
                    vec![
                        UpdateOp::set("failures", 0),
                        UpdateOp::remove("open_until_ms"),
                        UpdateOp::remove("trial_until_ms"),
                    ],
                    Some(condition),
                )
                .await
                .map(drop),
        )
    }

    /// Holds every delivery to the endpoint until `until_ms` (its `Retry-After`), unless
    /// it is held longer already; then one trial goes through, as after the breaker opens.
    pub async fn hold(table: &dyn Table, key: &Key, until_ms: i64) -> Result<(), StoreError> {
        let later = Condition::Or(vec![
            Condition::AttrNotExists("open_until_ms".into()),
            Condition::lt("open_until_ms", until_ms),
        ]);
        open_until(table, key, until_ms, Some(later)).await
    }

    /// Counts a failure; answers the consecutive failures now counted.
    pub async fn count_failure(table: &dyn Table, key: &Key) -> Result<u32, StoreError> {
        match table
            .update(
                key,
                vec![UpdateOp::add("failures", 1)],
                Some(Condition::Exists),
            )
            .await
        {
            Ok(item) => Ok(item
                .get_i64("failures")
                .and_then(|n| u32::try_from(n).ok())
                .unwrap_or(u32::MAX)),
            Err(e) if e.is_condition_failed() => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Opens it until `until_ms`, unless it is open already (`reopen` after a failed trial
    /// opens it again regardless).
    pub async fn open(
        table: &dyn Table,
        key: &Key,
        until_ms: i64,
        reopen: bool,
    ) -> Result<(), StoreError> {
        let closed = (!reopen).then(|| Condition::AttrNotExists("open_until_ms".into()));
        open_until(table, key, until_ms, closed).await
    }

    /// Sets the time the breaker is open until (no trial in flight), when the endpoint
    /// still exists and `also` holds.
    async fn open_until(
        table: &dyn Table,
        key: &Key,
        until_ms: i64,
        also: Option<Condition>,
    ) -> Result<(), StoreError> {
        let condition = match also {
            Some(also) => Condition::And(vec![Condition::Exists, also]),
            None => Condition::Exists,
        };
        ignore_gone(
            table
                .update(
                    key,
                    vec![
                        UpdateOp::set("open_until_ms", until_ms),
                        UpdateOp::remove("trial_until_ms"),
                    ],
                    Some(condition),
                )
                .await
                .map(drop),
        )
    }

    /// Lets one trial request through a breaker whose open time has passed, holding it
    /// until `trial_until_ms`: `false` when another attempt is the trial.
    pub async fn begin_trial(
        table: &dyn Table,
        key: &Key,
        opened_until_ms: i64,
        now_ms: i64,
        trial_until_ms: i64,
    ) -> Result<bool, StoreError> {
        let condition = Condition::And(vec![
            Condition::eq("open_until_ms", opened_until_ms),
            Condition::Or(vec![
                Condition::AttrNotExists("trial_until_ms".into()),
                Condition::lt("trial_until_ms", now_ms),
            ]),
        ]);
        match table
            .update(
                key,
                vec![UpdateOp::set("trial_until_ms", trial_until_ms)],
                Some(condition),
            )
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.is_condition_failed() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The write disabling the endpoint (it answered 410 Gone), for the attempt's
    /// transaction.
    pub fn disable(key: Key, reason: &str) -> TxOp {
        TxOp::Update {
            key,
            ops: vec![
                UpdateOp::set("disabled", true),
                UpdateOp::set("disabled_reason", reason),
            ],
            condition: Some(Condition::Exists),
        }
    }

    /// The endpoint may have been deleted meanwhile: then there is nothing to change.
    fn ignore_gone(result: Result<(), StoreError>) -> Result<(), StoreError> {
        match result {
            Err(e) if e.is_condition_failed() => Ok(()),
            other => other,
        }
    }
}

/// The updates that re-enable an endpoint: enabled, and its breaker reset.
pub fn enable_ops() -> Vec<UpdateOp> {
    vec![
        UpdateOp::set("disabled", false),
        UpdateOp::remove("disabled_reason"),
        UpdateOp::set("failures", 0),
        UpdateOp::remove("open_until_ms"),
        UpdateOp::remove("trial_until_ms"),
    ]
}
