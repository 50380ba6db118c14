//! The audit log's feature module: the entry a change made by a member or an API key
//! writes, in the same transaction as the change (`crate::repo::audit` keeps them). Every
//! feature records its changes through [`entry`]: members, API keys and sessions now;
//! products, orders and webhook endpoints the same way.

use crate::context::AppContext;
use crate::domain::{Caller, Principal, TenantId};
use crate::http::{client_ip, Request};
use crate::ids::IdKind;
use crate::repo::audit::{self, Actor, Entry, Resource};
use crate::store::{StoreError, Transaction, TxOp};

/// The label an audit entry takes in a transaction.
pub const LABEL: &str = "the audit entry";

/// A transaction that starts with the entry recording `change` (see [`entry`]): the
/// change's own operations are added to it, so both land together or not at all.
pub fn recorded(
    ctx: &AppContext,
    req: &Request,
    caller: &Caller,
    change: Change<'_>,
) -> Result<Transaction<&'static str>, StoreError> {
    let mut tx = Transaction::new();
    tx.add(LABEL, entry(ctx, req, caller, change)?)?;
    Ok(tx)
}

/// A transaction that starts with the entry recording `change` made by Storefront itself
/// (a worker's verdict on an upload, an expiry): the actor is `{"type": "system", "id":
/// <the function>}` and there is no client address.
pub fn recorded_by_system(
    ctx: &AppContext,
    tenant_id: &TenantId,
    change: Change<'_>,
) -> Result<Transaction<&'static str>, StoreError> {
    let mut tx = Transaction::new();
    tx.add(LABEL, system_entry(ctx, tenant_id, change)?)?;
    Ok(tx)
}

/// The write recording `change` made by Storefront itself, for a transaction of its own.
pub fn system_entry(
    ctx: &AppContext,
    tenant_id: &TenantId,
    change: Change<'_>,
) -> Result<TxOp, StoreError> {
    let actor = Actor {
        kind: "system".into(),
        id: crate::telemetry::function().to_owned(),
    };
    write(ctx, tenant_id, actor, None, change)
}

/// What an entry says was done: `action` (e.g. `member.created`) to the resource
/// `kind`/`id`, and what changed where the action alone does not say.
pub struct Change<'a> {
    pub action: &'a str,
    pub kind: &'a str,
    pub id: &'a str,
    pub detail: Option<String>,
}

impl<'a> Change<'a> {
    pub fn new(action: &'a str, kind: &'a str, id: &'a str) -> Self {
        Self {
            action,
            kind,
            id,
            detail: None,
        }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// The write recording that `caller`, calling from `req`'s address, made `change`, now;
/// kept for the shop's retention.
pub fn entry(
    ctx: &AppContext,
    req: &Request,
    caller: &Caller,
    change: Change<'_>,
) -> Result<TxOp, StoreError> {
    let actor = match &caller.principal {
        Principal::User { user_id, .. } => Actor {
            kind: "user".into(),
            id: user_id.to_string(),
        },
        Principal::ApiKey { key_id, .. } => Actor {
            kind: "api_key".into(),
            id: key_id.to_string(),
        },
    };
    let ip = client_ip(req).map(str::to_owned);
    write(ctx, &caller.tenant_id, actor, ip, change)
}

/// The write of one entry, kept for the shop's retention.
fn write(
    ctx: &AppContext,
    tenant_id: &TenantId,
    actor: Actor,
    ip: Option<String>,
    change: Change<'_>,
) -> Result<TxOp, StoreError> {
    let now = ctx.clock.now();
    let entry = Entry {
        id: ctx.ids.next(IdKind::Audit),
        tenant_id: tenant_id.clone(),
        actor,
        action: change.action.to_owned(),
        resource: Resource {
            kind: change.kind.to_owned(),
            id: change.id.to_owned(),
        },
        detail: change.detail,
        ip,
        at: crate::clock::rfc3339(now),
    };
    audit::record(&entry, (now + ctx.audit_retention).timestamp())
}
