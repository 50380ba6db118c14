//! `POST /v1/api-keys`, `GET /v1/api-keys`, `DELETE /v1/api-keys/{id}`: a shop's API keys.
//! A key is shown once, at creation; only its hash is kept.

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::auth::authenticate_current;
use crate::auth::secrets::ApiKeySecret;
use crate::clock::rfc3339;
use crate::context::AppContext;
use crate::domain::{ApiKeyId, Invalid, PersonName, Role};
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

/// Creates a key (role `admin` unless narrower) and shows it this once.
#[tracing::instrument(skip_all)]
pub async fn create(req: Request, ctx: &AppContext) -> HandlerResult {
    let caller = authenticate_current(&req, ctx).await?;
    caller.require(Role::Admin)?;
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
    };
    api_keys::create(ctx.table.as_ref(), &api_key).await?;
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
pub async fn list(req: Request, ctx: &AppContext) -> HandlerResult {
    let caller = authenticate_current(&req, ctx).await?;
    caller.require(Role::Admin)?;
    let query = paged(&req, api_keys::of_tenant(&caller.tenant_id))?;
    let (keys, next) = records::<ApiKey>(ctx.table.as_ref(), query).await?;
    json(
        StatusCode::OK,
        &PageBody::new(keys.iter().map(ApiKey::view).collect(), next),
    )
}

/// Revokes a key: it stops working at once.
#[tracing::instrument(skip_all)]
pub async fn revoke(req: Request, ctx: &AppContext) -> HandlerResult {
    let caller = authenticate_current(&req, ctx).await?;
    caller.require(Role::Admin)?;
    let id: ApiKeyId = path_id(&req, "id", NO_SUCH_KEY)?;
    if api_keys::revoke(ctx.table.as_ref(), &caller.tenant_id, &id).await? {
        tracing::info!(key_id = %id, "API key revoked");
        Ok(no_content())
    } else {
        Err(ApiError::not_found(NO_SUCH_KEY))
    }
}
