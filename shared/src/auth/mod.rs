//! Authentication and authorisation in one place: [`authenticate`] turns the
//! `Authorization` header into a [`Caller`] (from an access token or an `sk_` API key), and
//! [`Caller::require`] checks the role. A handler that needs a caller cannot forget either.

pub mod keys;
pub mod passwords;
pub mod secrets;
pub mod tokens;

use http::header::AUTHORIZATION;

use crate::context::AppContext;
use crate::domain::{ApiKeyId, Role, SessionId, TenantId, TypedId as _, UserId};
use crate::http::{ApiError, Request};
use crate::repo::{api_keys, rate_limits};

/// Who is calling: a signed-in user (through a session) or an API key of a shop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    User {
        user_id: UserId,
        session_id: SessionId,
    },
    ApiKey {
        key_id: ApiKeyId,
    },
}

/// The authenticated caller of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub tenant_id: TenantId,
    pub role: Role,
    pub principal: Principal,
}

impl Caller {
    /// 403 unless the caller's role includes `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role.includes(role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "This needs the {} role or above.",
                role.as_str()
            )))
        }
    }

    pub fn user_id(&self) -> Option<&UserId> {
        match &self.principal {
            Principal::User { user_id, .. } => Some(user_id),
            Principal::ApiKey { .. } => None,
        }
    }

    /// The caller as the store says it is now: its session still live, with the role the
    /// user holds now. An access token stays valid for up to 15 minutes after its session
    /// ends or its role changes; the routes that say who may do what (members, API keys)
    /// and the session routes ask for this, so a logout, a revoked session or a demotion
    /// takes effect on them at once: a stolen token of an ended session cannot mint a
    /// lasting API key, read the user's devices or sign the user out of them.
    /// Two reads, made together. An API key is checked live on every request already.
    pub async fn current(mut self, ctx: &AppContext) -> Result<Self, ApiError> {
        if let Principal::User {
            user_id,
            session_id,
        } = &self.principal
        {
            let table = ctx.table.as_ref();
            let (user, session) = futures_util::future::join(
                crate::repo::users::get(table, &self.tenant_id, user_id),
                crate::repo::sessions::get(table, &self.tenant_id, user_id, session_id),
            )
            .await;
            let user = user?.ok_or_else(|| unauthorized("This account no longer exists."))?;
            if session?.is_none() {
                return Err(unauthorized("This session has ended; sign in again."));
            }
            self.role = user.role;
        }
        Ok(self)
    }

    /// The signed-in user and session, or 403 for an API key (which has neither).
    pub fn user(&self) -> Result<(&UserId, &SessionId), ApiError> {
        match &self.principal {
            Principal::User {
                user_id,
                session_id,
            } => Ok((user_id, session_id)),
            Principal::ApiKey { .. } => Err(ApiError::Forbidden(
                "API keys have no user or sessions; sign in instead.".into(),
            )),
        }
    }
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

/// Authenticates the caller and checks it against the store ([`Caller::current`]): for the
/// routes that decide who may do what.
pub async fn authenticate_current(req: &Request, ctx: &AppContext) -> Result<Caller, ApiError> {
    authenticate(req, ctx).await?.current(ctx).await
}

/// Authenticates the request's caller, or answers 401 (missing, malformed, expired,
/// tampered, revoked or unknown credential) or 429 (an API key over its limit).
pub async fn authenticate(req: &Request, ctx: &AppContext) -> Result<Caller, ApiError> {
    let credential = bearer(req)?;
    let caller = if credential.starts_with(secrets::API_KEY_PREFIX) {
        let key = api_keys::authenticate(ctx, credential)
            .await?
            .ok_or_else(|| unauthorized("The API key is unknown or revoked."))?;
        let limit = rate_limits::Limit {
            scope: "api-key",
            per_minute: ctx.limits.per_api_key,
        };
        rate_limits::hit(ctx.table.as_ref(), limit, &key.id, ctx.clock.now())
            .await?
            .enforce()?;
        Caller {
            tenant_id: TenantId::parse(&key.tenant_id).map_err(stored_id)?,
            role: key.role,
            principal: Principal::ApiKey {
                key_id: ApiKeyId::parse(&key.id).map_err(stored_id)?,
            },
        }
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
