//! Identity, the feature module of accounts and sessions: the rules more than one route
//! uses, written once. Making a user (its password hashed), starting a session with its
//! first tokens, and signing an access token. It returns values and transaction
//! operations; the handlers (`crate::handlers::{auth, tenants, members}`) parse, call it
//! and answer, and never import each other.

use serde::Serialize;

use crate::clock::rfc3339;
use crate::context::AppContext;
use crate::credentials::passwords;
use crate::credentials::secrets::RefreshToken;
use crate::credentials::tokens::{Claims, ACCESS_TOKEN_SECONDS, AUDIENCE, ISSUER};
use crate::domain::{Email, Password, PersonName, Role, SessionId, TenantId, UserId};
use crate::http::{client_ip, Request};
use crate::repo::sessions::{self, Session};
use crate::repo::users::User;
use crate::store::TxOp;

/// `{"access_token","refresh_token","token_type":"Bearer","expires_in"}`.
#[derive(Serialize)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
}

impl Tokens {
    /// A fresh pair: an access token for `user` in `session_id` and the refresh token given.
    pub fn issue(
        ctx: &AppContext,
        user: &User,
        session_id: &SessionId,
        refresh: &RefreshToken,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            access_token: access_token(ctx, user, session_id)?,
            refresh_token: refresh.expose(),
            token_type: "Bearer",
            expires_in: ACCESS_TOKEN_SECONDS,
        })
    }
}

/// Signs an access token for `user` in session `session_id`, with the role it holds now.
fn access_token(ctx: &AppContext, user: &User, session_id: &SessionId) -> anyhow::Result<String> {
    let now = ctx.clock.now().timestamp();
    let claims = Claims {
        sub: user.id.to_string(),
        tid: user.tenant_id.to_string(),
        role: user.role.as_str().to_owned(),
        sid: session_id.to_string(),
        iat: now,
        exp: now + ACCESS_TOKEN_SECONDS,
        iss: ISSUER.to_owned(),
        aud: AUDIENCE.to_owned(),
    };
    Ok(ctx.keys.issue(&claims)?)
}

/// A new session (device) for `user`, signed in from `req`, and its first tokens; the
/// caller writes the returned operation, alone or in the transaction that creates the user.
/// The session ends [`AppContext::session_lifetime`] after now, however often refreshed.
pub fn start_session(
    ctx: &AppContext,
    req: &Request,
    user: &User,
) -> anyhow::Result<(TxOp, Tokens)> {
    let now = ctx.clock.now();
    let session_id = SessionId::generate(ctx.ids.as_ref());
    let refresh = RefreshToken::generate(&user.tenant_id, &user.id, &session_id)?;
    let user_agent = req
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect());
    let session = Session {
        id: session_id.clone(),
        tenant_id: user.tenant_id.clone(),
        user_id: user.id.clone(),
        created_at: rfc3339(now),
        last_used_at: rfc3339(now),
        user_agent,
        ip: client_ip(req).map(str::to_owned),
        refresh_hash: refresh.hash(),
    };
    let ends_at = session.ends_at(ctx.session_lifetime);
    let op = sessions::create(&session, now.timestamp(), ends_at)?;
    let tokens = Tokens::issue(ctx, user, &session_id, &refresh)?;
    Ok((op, tokens))
}

/// Makes the record of a new account, hashing its password (the deliberately expensive
/// step: callers check what they can before it).
pub async fn new_user(
    ctx: &AppContext,
    tenant_id: &TenantId,
    email: &Email,
    name: &PersonName,
    password: &Password,
    role: Role,
) -> anyhow::Result<User> {
    Ok(User {
        id: UserId::generate(ctx.ids.as_ref()),
        tenant_id: tenant_id.clone(),
        email: email.as_str().to_owned(),
        name: name.as_str().to_owned(),
        role,
        password_hash: passwords::hash(password).await?,
        created_at: rfc3339(ctx.clock.now()),
    })
}
