//! Authentication and authorisation in one place: [`authenticate`] turns the
//! `Authorization` header into a [`Caller`] (from an access token or an `sk_` API key), and
//! [`admit`] checks it against a route's declared [`Access`]. The edge does both before a
//! route's handler runs, so a handler that needs a caller cannot forget either.

use http::header::AUTHORIZATION;

use crate::context::AppContext;
use crate::credentials::secrets;
use crate::domain::{ApiKeyId, Role, SessionId, TenantId, TypedId as _, UserId};
use crate::http::router::Access;
use crate::http::{ApiError, Request};
use crate::repo::{api_keys, rate_limits};

pub use crate::domain::{Caller, Principal};

/// Admits a request's caller as a route's declared `access` asks, or answers 401 (no valid
/// credential, or a session that has ended) or 403 (an API key where a session is needed,
/// or a role below the one needed). The edge calls it before the route's handler runs.
pub async fn admit(req: &Request, ctx: &AppContext, access: Access) -> Result<Caller, ApiError> {
    let caller = authenticate(req, ctx).await?;
    match access {
        Access::Anyone | Access::Visitor | Access::Token => Ok(caller),
        Access::Session => {
            session_of(&caller)?;
            current(caller, ctx).await
        }
        Access::Role(role) => {
            let caller = current(caller, ctx).await?;
            if caller.role.includes(role) {
                Ok(caller)
            } else {
                Err(ApiError::Forbidden(format!(
                    "This needs the {} role or above.",
                    role.as_str()
                )))
            }
        }
    }
}

/// The caller of a route for visitors: `None` when the request carries no credential, the
/// caller (checked as [`Access::Token`] is) when it carries one, and 401 when the one it
/// carries is not valid: a typo in a token must not quietly turn into an anonymous read.
pub async fn admit_visitor(req: &Request, ctx: &AppContext) -> Result<Option<Caller>, ApiError> {
    if req.headers().contains_key(AUTHORIZATION) {
        admit(req, ctx, Access::Token).await.map(Some)
    } else {
        Ok(None)
    }
}

/// The signed-in user and session of a caller, or 403 for an API key (which has neither).
pub fn session_of(caller: &Caller) -> Result<(&UserId, &SessionId), ApiError> {
    caller.session().ok_or_else(|| {
        ApiError::Forbidden("API keys have no user or sessions; sign in instead.".into())
    })
}

/// The caller as the store says it is now: its session still live, with the role the
/// user holds now. An access token stays valid for up to 15 minutes after its session
/// ends or its role changes; the routes that say who may do what (members, API keys)
/// and the session routes ask for this, so a logout, a revoked session or a demotion
/// takes effect on them at once: a stolen token of an ended session cannot mint a
/// lasting API key, read the user's devices or sign the user out of them.
/// Two reads, made together. An API key is checked live on every request already.
async fn current(mut caller: Caller, ctx: &AppContext) -> Result<Caller, ApiError> {
    if let Principal::User {
        user_id,
        session_id,
    } = &caller.principal
    {
        let table = ctx.table.as_ref();
        let (user, session) = futures_util::future::join(
            crate::repo::users::get(table, &caller.tenant_id, user_id),
            crate::repo::sessions::get(table, &caller.tenant_id, user_id, session_id),
        )
        .await;
        let user = user?.ok_or_else(|| unauthorized("This account no longer exists."))?;
        let live = session?.is_some_and(|session| {
            ctx.clock.now().timestamp() < session.ends_at(ctx.session_lifetime)
        });
        if !live {
            return Err(unauthorized("This session has ended; sign in again."));
        }
        caller.role = user.role;
    }
    Ok(caller)
}

/// A stored record whose id does not parse: the store was written by something else.
fn stored_id(invalid: crate::domain::Invalid) -> ApiError {
    crate::http::internal(anyhow::anyhow!("stored API key id {invalid}"))
}

fn unauthorized(detail: &str) -> ApiError {
    ApiError::Unauthorized(detail.to_owned())
}

/// The bearer credential of a request, or 401.
fn bearer(req: &Request) -> Result<&str, ApiError> {
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .ok_or_else(|| unauthorized("Send `Authorization: Bearer <access token or API key>`."))?;
    let value = header
        .to_str()
        .map_err(|_| unauthorized("The Authorization header is not valid text."))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(unauthorized(
            "The Authorization header must be `Bearer <credential>`.",
        )),
    }
}

/// The caller an `sk_…` API key stands for, or 401 (unknown, revoked, or its creator no
/// longer a member) or 429 (over the key's limit). The key acts with its own role capped by
/// its creator's role as it is now: a key outlives no member's authority.
async fn authenticate_key(ctx: &AppContext, credential: &str) -> Result<Caller, ApiError> {
    let unknown = || unauthorized("The API key is unknown or revoked.");
    let secret = secrets::ApiKeySecret::parse(credential).ok_or_else(unknown)?;
    let table = ctx.table.as_ref();
    let key = api_keys::find(table, &secret.prefix)
        .await?
        .filter(|key| crate::crypto::same_secret(&key.hash, &secret.hash()))
        .ok_or_else(unknown)?;
    let Some(created_by) = key.created_by.clone() else {
        return Err(unauthorized(
            "This API key records no creator and cannot act; make a new one.",
        ));
    };
    let limit = rate_limits::Limit {
        scope: "api-key",
        per_minute: ctx.limits.per_api_key,
    };
    let now = ctx.clock.now();
    let (counted, creator, used) = tokio::join!(
        rate_limits::hit(table, limit, &key.id, now),
        crate::repo::users::get(table, &key.tenant_id, &created_by),
        api_keys::record_use(table, &key, now),
    );
    crate::http::enforce(counted?)?;
    if let Err(e) = used {
        tracing::warn!(error = %e, key_id = %key.id, "recording an API key's last use failed");
    }
    let creator_role = creator?
        .map(|user| user.role)
        .filter(|role| role.includes(Role::Staff))
        .ok_or_else(|| unauthorized("The member who made this API key is no longer a member."))?;
    let role = if creator_role.includes(key.role) {
        key.role
    } else {
        creator_role
    };
    Ok(Caller {
        tenant_id: TenantId::parse(&key.tenant_id).map_err(stored_id)?,
        role,
        principal: Principal::ApiKey {
            key_id: ApiKeyId::parse(&key.id).map_err(stored_id)?,
            created_by,
        },
    })
}

/// Authenticates the request's caller, or answers 401 (missing, malformed, expired,
/// tampered, revoked or unknown credential) or 429 (an API key over its limit).
pub async fn authenticate(req: &Request, ctx: &AppContext) -> Result<Caller, ApiError> {
    let credential = bearer(req)?;
    let caller = if credential.starts_with(secrets::API_KEY_PREFIX) {
        authenticate_key(ctx, credential).await?
    } else {
        let claims = ctx
            .keys
            .verify(credential, ctx.clock.now().timestamp())
            .map_err(|_| unauthorized("The access token is invalid or has expired."))?;
        let role = Role::parse(&claims.role)
            .map_err(|_| unauthorized("The access token names no known role."))?;
        // A token verified by our key carries our ids; checking them costs nothing and
        // keeps the rule that every id is typed where it enters.
        let malformed = |_| unauthorized("The access token names malformed ids.");
        Caller {
            tenant_id: TenantId::parse(&claims.tid).map_err(malformed)?,
            role,
            principal: Principal::User {
                user_id: UserId::parse(&claims.sub).map_err(malformed)?,
                session_id: SessionId::parse(&claims.sid).map_err(malformed)?,
            },
        }
    };
    crate::http::record_tenant(req, caller.tenant_id.as_str());
    Ok(caller)
}
