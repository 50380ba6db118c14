//! `GET /v1/sessions` and `DELETE /v1/sessions/{id}`: the caller's devices, and ending one.

use http::StatusCode;

use crate::audit::{self, Change};
use crate::auth::{session_of, Caller};
use crate::context::AppContext;
use crate::domain::SessionId;
use crate::http::pagination::{paged, PageBody};
use crate::http::{json, no_content, path_id, ApiError, HandlerResult, Request};
use crate::repo::{records, sessions};

const NO_SUCH_SESSION: &str = "You have no live session with this id.";

/// The caller's live sessions, newest first, the current one marked; `limit`/`cursor` page.
#[tracing::instrument(skip_all)]
pub async fn list(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let (user_id, session_id) = session_of(&caller)?;
    let query = paged(&req, sessions::of_user(&caller.tenant_id, user_id))?;
    let (found, next) = records::<sessions::Session>(ctx.table.as_ref(), query).await?;
    let views = found.iter().map(|s| s.view(Some(session_id))).collect();
    json(StatusCode::OK, &PageBody::new(views, next))
}

/// Revokes one of the caller's sessions: its refresh token stops working at once. Another
/// user's session is 404, as if it did not exist.
#[tracing::instrument(skip_all)]
pub async fn revoke(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let (user_id, _) = session_of(&caller)?;
    let id: SessionId = path_id(&req, "id", NO_SUCH_SESSION)?;
    let audit = audit::recorded(
        ctx,
        &req,
        &caller,
        Change::new("session.revoked", "session", &id),
    )?;
    let revoked =
        sessions::revoke(ctx.table.as_ref(), &caller.tenant_id, user_id, &id, audit).await?;
    if revoked {
        Ok(no_content())
    } else {
        Err(ApiError::not_found(NO_SUCH_SESSION))
    }
}
