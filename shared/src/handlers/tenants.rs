//! `POST /v1/tenants`: a new shop and its owner, signed in, in one transaction.

use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::auth::{new_user, start_session, user_conflict, Tokens};
use crate::clock::rfc3339;
use crate::context::AppContext;
use crate::domain::{Currency, Email, Password, PersonName, Role, TenantName};
use crate::http::{json, parse_json, ApiError, HandlerResult, Request};
use crate::ids::IdKind;
use crate::repo::tenants::{self, Tenant};
use crate::repo::users::{self, UserView};
use crate::validate;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Owner {
    email: String,
    password: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
    currency: Option<String>,
    owner: Owner,
}

#[derive(Serialize)]
struct Created {
    tenant: Tenant,
    user: UserView,
    tokens: Tokens,
}

/// Creates the tenant, its owner (with the email lock) and the owner's first session.
#[tracing::instrument(skip_all)]
pub async fn create(req: Request, ctx: &AppContext) -> HandlerResult {
    let body: CreateTenant = parse_json(&req)?;
    validate! {
        name = TenantName::parse(&body.name) => "name",
        currency = body.currency.as_deref().map_or(Ok(Currency::usd()), Currency::parse) => "currency",
        email = Email::parse(&body.owner.email) => "owner.email",
        password = Password::parse(&body.owner.password) => "owner.password",
        owner_name = PersonName::parse(&body.owner.name) => "owner.name",
    }
    let tenant = Tenant {
        id: ctx.ids.next(IdKind::Tenant),
        name: name.as_str().to_owned(),
        currency: currency.as_str().to_owned(),
        created_at: rfc3339(ctx.clock.now()),
    };
    let owner = new_user(ctx, &tenant.id, &email, &owner_name, &password, Role::Owner).await?;
    let (session, tokens) = start_session(ctx, &req, &owner)?;
    let [create_owner, lock_email] =
        users::create(&owner, &email).map_err(|e| ApiError::Internal(e.into()))?;
    let create_tenant = tenants::create(&tenant).map_err(|e| ApiError::Internal(e.into()))?;
    ctx.table
        .transact(vec![create_tenant, create_owner, lock_email, session])
        .await
        .map_err(|e| user_conflict(e, 2))?;
    tracing::info!(tenant_id = %tenant.id, "shop created");
    json(
        StatusCode::CREATED,
        &Created {
            tenant,
            user: owner.view(),
            tokens,
        },
    )
}
