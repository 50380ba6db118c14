//! `GET /v1/me`: who the caller is.

use http::StatusCode;
use serde::Serialize;

use crate::auth::{Caller, Principal};
use crate::context::AppContext;
use crate::domain::{ApiKeyId, Role, TenantId, UserId};
use crate::http::{json, ApiError, HandlerResult, Request};
use crate::repo::users;

#[derive(Serialize)]
struct Me {
    user_id: Option<UserId>,
    tenant_id: TenantId,
    email: Option<String>,
    name: Option<String>,
    role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key_id: Option<ApiKeyId>,
}

/// The signed-in user (from the store, so a changed name or role shows at once); for an
/// API key, the tenant and the key's role.
#[tracing::instrument(skip_all)]
pub async fn get(_req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let me = match &caller.principal {
        Principal::User { user_id, .. } => {
            let user = users::get(ctx.table.as_ref(), &caller.tenant_id, user_id)
                .await?
                .ok_or_else(|| ApiError::Unauthorized("This account no longer exists.".into()))?;
            Me {
                user_id: Some(user.id),
                tenant_id: user.tenant_id,
                email: Some(user.email),
                name: Some(user.name),
                role: user.role,
                api_key_id: None,
            }
        }
        Principal::ApiKey { key_id, .. } => Me {
            user_id: None,
            tenant_id: caller.tenant_id.clone(),
            email: None,
            name: None,
            role: caller.role,
            api_key_id: Some(key_id.clone()),
        },
    };
    json(StatusCode::OK, &me)
}
