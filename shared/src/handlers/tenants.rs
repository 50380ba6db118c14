//! `POST /v1/tenants`: a new shop and its owner, signed in, in one transaction.

use http::StatusCode;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use crate::clock::rfc3339;
use crate::context::AppContext;
use crate::domain::{Currency, Email, Password, PersonName, Role, TenantId, TenantName};
use crate::http::{internal, json, parse_json, HandlerResult, Request};
use crate::identity::{self, Tokens};
use crate::repo::tenants::{self, Tenant};
use crate::repo::users::{self, UserView};
use crate::store::Transaction;
use crate::validate;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Owner {
    email: String,
    /// Never logged: `SecretString` has no `Debug` output of its value.
    password: SecretString,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    name: String,
    currency: Option<String>,
    owner: Owner,
}

/// A shop as the API shows it (DESIGN.md's tenant): never the stored record itself, so a
/// field added to what is stored is not published by accident.
#[derive(Serialize)]
struct TenantView {
    id: TenantId,
    name: String,
    currency: String,
    created_at: String,
}

impl From<&Tenant> for TenantView {
    fn from(tenant: &Tenant) -> Self {
        Self {
            id: tenant.id.clone(),
            name: tenant.name.clone(),
            currency: tenant.currency.clone(),
            created_at: tenant.created_at.clone(),
        }
    }
}

#[derive(Serialize)]
struct Created {
    tenant: TenantView,
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
        password = Password::parse(body.owner.password.expose_secret()) => "owner.password",
        owner_name = PersonName::parse(&body.owner.name) => "owner.name",
    }
    let tenant = Tenant {
        id: TenantId::generate(ctx.ids.as_ref()),
        name: name.as_str().to_owned(),
        currency: currency.as_str().to_owned(),
        created_at: rfc3339(ctx.clock.now()),
    };
    crate::http::record_tenant(&req, &tenant.id);
    let owner = identity::new_user(ctx, &tenant.id, &email, &owner_name, &password, Role::Owner)
        .await
        .map_err(internal)?;
    let (session, tokens) = identity::start_session(ctx, &req, &owner).map_err(internal)?;
    let mut writes = Transaction::new();
    writes
        .add("the shop", tenants::create(&tenant)?)?
        .add("the owner's first session", session)?;
    let alongside = users::Alongside {
        tenant_must_exist: false,
        writes,
    };
    users::create(ctx.table.as_ref(), &owner, &email, alongside).await?;
    tracing::info!(tenant_id = %tenant.id, "shop created");
    json(
        StatusCode::CREATED,
        &Created {
            tenant: TenantView::from(&tenant),
            user: owner.view(),
            tokens,
        },
    )
}
