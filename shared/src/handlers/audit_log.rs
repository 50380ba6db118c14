//! `GET /v1/audit-log`: who did what to which resource, when and from where, newest first;
//! `?resource=<id>` narrows it to one resource's history. For owners and admins.

use http::StatusCode;
use serde::Serialize;

use crate::auth::Caller;
use crate::context::AppContext;
use crate::http::pagination::{paged, PageBody};
use crate::http::{json, query_param, ApiError, FieldError, HandlerResult, Request};
use crate::repo::audit::{self, Actor, Entry, Resource};
use crate::repo::records;

/// An audit entry as the API shows it (DESIGN.md's audit entry).
#[derive(Serialize)]
struct EntryView {
    id: String,
    actor: Actor,
    action: String,
    resource: Resource,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<String>,
    ip: Option<String>,
    at: String,
}

impl From<Entry> for EntryView {
    fn from(entry: Entry) -> Self {
        Self {
            id: entry.id,
            actor: entry.actor,
            action: entry.action,
            resource: entry.resource,
            detail: entry.detail,
            ip: entry.ip,
            at: entry.at,
        }
    }
}

/// A resource id as the API hands them out (`usr_…`, `key_…`): letters, digits and `_`.
fn resource_filter(raw: &str) -> Result<&str, ApiError> {
    let valid = (1..=64).contains(&raw.len())
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Ok(raw)
    } else {
        Err(ApiError::BadRequest {
            detail: "`resource` must be the id of a resource, such as `usr_…` or `key_…`.".into(),
            errors: vec![FieldError::new("resource", "is not a resource id")],
        })
    }
}

/// The shop's audit log, newest first, a page at a time.
#[tracing::instrument(skip_all)]
pub async fn list(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let query = match query_param(&req, "resource") {
        Some(raw) => audit::of_resource(&caller.tenant_id, resource_filter(&raw)?),
        None => audit::of_tenant(&caller.tenant_id),
    };
    let (entries, next) = records::<Entry>(ctx.table.as_ref(), paged(&req, query)?).await?;
    let views: Vec<EntryView> = entries.into_iter().map(EntryView::from).collect();
    json(StatusCode::OK, &PageBody::new(views, next))
}
