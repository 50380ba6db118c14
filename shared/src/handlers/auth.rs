//! `POST /v1/auth/signup`, `/login`, `/refresh`, `/logout`: customers join a shop, anyone
//! signs in, sessions renew and end.

use http::StatusCode;
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use crate::auth::{session_of, Caller};
use crate::clock::rfc3339;
use crate::context::AppContext;
use crate::credentials::passwords;
use crate::credentials::secrets::RefreshToken;
use crate::domain::{Email, Password, PersonName, Role, TenantId, TypedId as _};
use crate::http::{
    client_ip, enforce, internal, json, no_content, parse_json, ApiError, HandlerResult, Request,
};
use crate::identity::{self, Tokens};
use crate::ids::IdKind;
use crate::repo::rate_limits::{self, Limit};
use crate::repo::sessions;
use crate::repo::tenants;
use crate::repo::users::{self, UserView};
use crate::store::{StoreError, Transaction};
use crate::validate;

fn invalid_credentials() -> ApiError {
    ApiError::Unauthorized("The email or password is wrong.".into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignupBody {
    tenant_id: String,
    email: String,
    /// Never logged: `SecretString` has no `Debug` output of its value.
    password: SecretString,
    name: String,
}

#[derive(Serialize)]
struct SignedUp {
    user: UserView,
    tokens: Tokens,
}

/// `POST /v1/auth/signup`: a customer account in a shop, signed in.
#[tracing::instrument(skip_all)]
pub async fn signup(req: Request, ctx: &AppContext) -> HandlerResult {
    let body: SignupBody = parse_json(&req)?;
    validate! {
        tenant_id = TenantId::parse(&body.tenant_id) => "tenant_id",
        email = Email::parse(&body.email) => "email",
        password = Password::parse(body.password.expose_secret()) => "password",
        name = PersonName::parse(&body.name) => "name",
    }
    crate::http::record_tenant(&req, tenant_id.as_str());
    // Checked before the (deliberately expensive) hash, so requests for unknown shops cost
    // one read; the transaction checks again, against a shop deleted in between.
    if tenants::get(ctx.table.as_ref(), &tenant_id)
        .await?
        .is_none()
    {
        return Err(ApiError::not_found("No shop has this id."));
    }
    let user = identity::new_user(ctx, &tenant_id, &email, &name, &password, Role::Customer)
        .await
        .map_err(internal)?;
    let (session, tokens) = identity::start_session(ctx, &req, &user).map_err(internal)?;
    let mut writes = Transaction::new();
    writes.add("the customer's first session", session)?;
    let alongside = users::Alongside {
        tenant_must_exist: true,
        writes,
    };
    users::create(ctx.table.as_ref(), &user, &email, alongside).await?;
    tracing::info!(user_id = %user.id, tenant_id = %tenant_id, "customer signed up");
    json(
        StatusCode::CREATED,
        &SignedUp {
            user: user.view(),
            tokens,
        },
    )
}

/// Ids that name nothing, read in place of a malformed shop id or an unknown email.
const NO_TENANT: &str = "ten_00000000000000000000000000";
const NO_USER: &str = "usr_00000000000000000000000000";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginBody {
    tenant_id: String,
    email: String,
    /// Never logged: `SecretString` has no `Debug` output of its value.
    password: SecretString,
}

/// Counts a login attempt per client IP and per account; 429 when either is over.
async fn limit_login(
    ctx: &AppContext,
    req: &Request,
    tenant_id: &str,
    email: &str,
) -> Result<(), ApiError> {
    let per_ip = Limit {
        scope: "login-ip",
        per_minute: ctx.limits.login,
    };
    let per_account = Limit {
        scope: "login-account",
        per_minute: ctx.limits.login,
    };
    let now = ctx.clock.now();
    let ip = client_ip(req).unwrap_or("unknown");
    let account = crate::crypto::sha256_hex(format!("{tenant_id}#{email}").as_bytes());
    let (ip_decision, account_decision) = tokio::join!(
        rate_limits::hit(ctx.table.as_ref(), per_ip, ip, now),
        rate_limits::hit(ctx.table.as_ref(), per_account, &account, now),
    );
    enforce(ip_decision?)?;
    enforce(account_decision?)?;
    Ok(())
}

/// `POST /v1/auth/login`: the same 401, in the same time, for a wrong email and a wrong
/// password; 429 after 5 attempts a minute per IP or per account.
#[tracing::instrument(skip_all)]
pub async fn login(req: Request, ctx: &AppContext) -> HandlerResult {
    let body: LoginBody = parse_json(&req)?;
    validate! {
        email = Email::parse(&body.email) => "email",
    }
    if body.password.expose_secret().len() > Password::MAX_CHARS * 4 {
        return Err(ApiError::validation(vec![crate::http::FieldError::new(
            "password",
            "is too long",
        )]));
    }
    limit_login(ctx, &req, &body.tenant_id, email.as_str()).await?;
    // Every path makes the same two reads and one verification, so neither the answer nor
    // its timing tells a wrong shop, an unknown email and a wrong password apart.
    let tenant_id = if IdKind::Tenant.matches(&body.tenant_id) {
        crate::http::record_tenant(&req, &body.tenant_id);
        body.tenant_id.as_str()
    } else {
        NO_TENANT
    };
    let owner = users::owner_of_email(ctx.table.as_ref(), tenant_id, &email).await?;
    let user = users::get(
        ctx.table.as_ref(),
        tenant_id,
        owner.as_deref().unwrap_or(NO_USER),
    )
    .await?;
    let Some(user) = user else {
        passwords::verify_nothing(body.password.expose_secret())
            .await
            .map_err(internal)?;
        return Err(invalid_credentials());
    };
    if !passwords::verify(body.password.expose_secret(), &user.password_hash)
        .await
        .map_err(internal)?
    {
        return Err(invalid_credentials());
    }
    let (session, tokens) = identity::start_session(ctx, &req, &user).map_err(internal)?;
    ctx.table.write(session).await?;
    tracing::info!(user_id = %user.id, tenant_id = %user.tenant_id, "signed in");
    json(StatusCode::OK, &tokens)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    refresh_token: SecretString,
}

fn refresh_refused() -> ApiError {
    ApiError::Unauthorized("The refresh token is invalid, spent or revoked; sign in again.".into())
}

/// `POST /v1/auth/refresh`: spends the refresh token for a new pair. A spent token
/// presented again is taken as theft: the whole session is revoked.
#[tracing::instrument(skip_all)]
pub async fn refresh(req: Request, ctx: &AppContext) -> HandlerResult {
    let body: RefreshBody = parse_json(&req)?;
    let token =
        RefreshToken::parse(body.refresh_token.expose_secret()).ok_or_else(refresh_refused)?;
    crate::http::record_tenant(&req, &token.tenant_id);
    let table = ctx.table.as_ref();
    let session = sessions::get(table, &token.tenant_id, &token.user_id, &token.session_id)
        .await?
        .ok_or_else(refresh_refused)?;
    let presented = token.hash();
    if !crate::crypto::same_secret(&presented, &session.refresh_hash) {
        if sessions::was_spent(table, &session, &presented).await? {
            sessions::end(table, &session).await?;
            tracing::warn!(session_id = %session.id, tenant_id = %session.tenant_id, "spent refresh token reused: session revoked");
        }
        return Err(refresh_refused());
    }
    let now = ctx.clock.now();
    let ends_at = session.ends_at(ctx.session_lifetime);
    if now.timestamp() >= ends_at {
        sessions::end(table, &session).await?;
        tracing::info!(session_id = %session.id, "session reached its lifetime: ended");
        return Err(ApiError::Unauthorized(
            "This session has reached its time limit; sign in again.".into(),
        ));
    }
    let user = users::get(table, &session.tenant_id, &session.user_id)
        .await?
        .ok_or_else(refresh_refused)?;
    let next = RefreshToken::generate(&session.tenant_id, &session.user_id, &session.id)
        .map_err(internal)?;
    match sessions::rotate(
        table,
        &session,
        &next.hash(),
        &rfc3339(now),
        now.timestamp(),
        ends_at,
    )
    .await
    {
        Ok(()) => {}
        // The session changed since we read it (a failed condition), or is changing now (a
        // transaction conflict: DynamoDB cancels one of two transactions on one item): ended
        // meanwhile (logout), or this same token spent by a concurrent request, which is reuse.
        Err(e) if e.is_condition_failed() || matches!(e, StoreError::Conflict) => {
            let now_stored =
                sessions::get(table, &session.tenant_id, &session.user_id, &session.id).await?;
            if now_stored.is_some() {
                sessions::end(table, &session).await?;
                tracing::warn!(session_id = %session.id, "refresh token spent twice concurrently: session revoked");
            }
            return Err(refresh_refused());
        }
        Err(e) => return Err(e.into()),
    }
    let tokens = Tokens::issue(ctx, &user, &session.id, &next).map_err(internal)?;
    json(StatusCode::OK, &tokens)
}

/// `POST /v1/auth/logout`: ends the caller's session; its refresh token stops working.
#[tracing::instrument(skip_all)]
pub async fn logout(_req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let (user_id, session_id) = session_of(&caller)?;
    sessions::revoke(
        ctx.table.as_ref(),
        &caller.tenant_id,
        user_id,
        session_id,
        Transaction::new(),
    )
    .await?;
    Ok(no_content())
}
