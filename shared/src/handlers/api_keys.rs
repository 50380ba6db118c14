//! `POST /v1/api-keys`, `GET /v1/api-keys`, `DELETE /v1/api-keys/{id}`: a shop's API keys.
//! A key is shown once, at creation; only its hash is kept.

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::audit::{self, Change};
use crate::auth::{Caller, Principal};
use crate::clock::rfc3339;
use crate::context::AppContext;
use crate::credentials::secrets::{api_key_prefix, ApiKeySecret};
use crate::domain::{ApiKeyId, Invalid, PersonName, Role, UserId};
use crate::http::pagination::{paged, PageBody};
use crate::http::{
    internal, json, no_content, parse_json, path_id, ApiError, HandlerResult, Request,
};
use crate::repo::api_keys::{self, ApiKey, ApiKeyView};
use crate::repo::records;
use crate::validate;

const NO_SUCH_KEY: &str = "This shop has no API key with this id.";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    role: Option<String>,
}

#[derive(Serialize)]
struct CreatedKey {
    #[serde(flatten)]
    view: ApiKeyView,
    key: String,
}

/// A key acts with at most admin rights, and never more than its creator's.
fn key_role(raw: Option<&str>, creator: Role) -> Result<Role, Invalid> {
    let role = raw.map_or(Ok(Role::Admin), Role::parse)?;
    if role == Role::Owner || !creator.includes(role) {
        return Err(Invalid(
            "must be admin, staff or customer, and not above your own role".into(),
        ));
    }
    Ok(role)
}

/// The member whose authority a new key carries: the signed-in user, or for a key made
/// with a key, that key's own creator (so no chain of keys outlives a member's authority).
fn creator_of(caller: &Caller) -> &UserId {
    match &caller.principal {
        Principal::User { user_id, .. } => user_id,
        Principal::ApiKey { created_by, .. } => created_by,
    }
}

/// Creates a key (role `admin` unless narrower) and shows it this once.
#[tracing::instrument(skip_all)]
pub async fn create(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let body: CreateKey = parse_json(&req)?;
    validate! {
        name = PersonName::parse(&body.name) => "name",
        role = key_role(body.role.as_deref(), caller.role) => "role",
    }
    let id = ApiKeyId::generate(ctx.ids.as_ref());
    let secret = ApiKeySecret::generate(&id).map_err(internal)?;
    let api_key = ApiKey {
        id,
        tenant_id: caller.tenant_id.clone(),
        name: name.as_str().to_owned(),
        role,
        prefix: secret.prefix.clone(),
        hash: secret.hash(),
        created_at: rfc3339(ctx.clock.now()),
        last_used_at: None,
        created_by: Some(creator_of(&caller).clone()),
    };
    let audit = audit::recorded(
        ctx,
        &req,
        &caller,
        Change::new("api_key.created", "api_key", &api_key.id)
            .detail(format!("role: {}", role.as_str())),
    )?;
    api_keys::create(ctx.table.as_ref(), &api_key, audit).await?;
    tracing::info!(key_id = %api_key.id, "API key created");
    json(
        StatusCode::CREATED,
        &CreatedKey {
            view: api_key.view(),
            key: secret.expose().to_owned(),
        },
    )
}

/// The shop's keys, newest first, without their secrets.
#[tracing::instrument(skip_all)]
pub async fn list(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let query = paged(&req, api_keys::of_tenant(&caller.tenant_id))?;
    let (keys, next) = records::<ApiKey>(ctx.table.as_ref(), query).await?;
    json(
        StatusCode::OK,
        &PageBody::new(keys.iter().map(ApiKey::view).collect(), next),
    )
}

/// Revokes a key: it stops working at once.
#[tracing::instrument(skip_all)]
pub async fn revoke(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let id: ApiKeyId = path_id(&req, "id", NO_SUCH_KEY)?;
    let prefix = api_key_prefix(id.as_str()).ok_or_else(|| ApiError::not_found(NO_SUCH_KEY))?;
    let audit = audit::recorded(
        ctx,
        &req,
        &caller,
        Change::new("api_key.revoked", "api_key", &id),
    )?;
    if api_keys::revoke(ctx.table.as_ref(), &caller.tenant_id, &prefix, audit).await? {
        tracing::info!(key_id = %id, "API key revoked");
        Ok(no_content())
    } else {
        Err(ApiError::not_found(NO_SUCH_KEY))
    }
}
