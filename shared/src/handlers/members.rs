//! `POST /v1/members`, `GET /v1/members`, `PATCH /v1/members/{id}`: a shop's staff and admins,
//! managed by its owners and admins. An admin can neither create nor promote an owner, nor
//! change one.

use http::StatusCode;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use crate::audit::{self, Change};
use crate::auth::Caller;
use crate::context::AppContext;
use crate::domain::{Email, Invalid, Password, PersonName, Role, UserId};
use crate::http::pagination::{paged, PageBody};
use crate::http::{internal, json, parse_json, path_id, ApiError, HandlerResult, Request};
use crate::identity;
use crate::repo::{records, users};
use crate::validate;

const NO_SUCH_MEMBER: &str = "This shop has no member with this id.";

/// The roles a member can be given: staff, admin, and (by an owner only) owner.
fn member_role(raw: &str) -> Result<Role, Invalid> {
    match Role::parse(raw)? {
        Role::Customer => Err(Invalid(
            "must be staff, admin or owner; customers sign up themselves".into(),
        )),
        role => Ok(role),
    }
}

fn may_grant(caller: &Caller, role: Role) -> Result<(), ApiError> {
    if role == Role::Owner && caller.role != Role::Owner {
        return Err(ApiError::Forbidden(
            "Only an owner can make an owner.".into(),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateMember {
    email: String,
    name: String,
    /// Never logged: `SecretString` has no `Debug` output of its value.
    password: SecretString,
    role: String,
}

/// Adds a staff member or admin with a password they can sign in with.
#[tracing::instrument(skip_all)]
pub async fn create(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let body: CreateMember = parse_json(&req)?;
    validate! {
        email = Email::parse(&body.email) => "email",
        name = PersonName::parse(&body.name) => "name",
        password = Password::parse(body.password.expose_secret()) => "password",
        role = member_role(&body.role) => "role",
    }
    may_grant(&caller, role)?;
    let user = identity::new_user(ctx, &caller.tenant_id, &email, &name, &password, role)
        .await
        .map_err(internal)?;
    let writes = audit::recorded(
        ctx,
        &req,
        &caller,
        Change::new("member.created", "member", &user.id)
            .detail(format!("role: {}", role.as_str())),
    )?;
    let alongside = users::Alongside {
        tenant_must_exist: false,
        writes,
    };
    users::create(ctx.table.as_ref(), &user, &email, alongside).await?;
    tracing::info!(user_id = %user.id, role = role.as_str(), "member added");
    json(StatusCode::CREATED, &user.view())
}

/// The shop's members (staff and above), oldest first.
#[tracing::instrument(skip_all)]
pub async fn list(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let query = paged(&req, users::members(&caller.tenant_id))?;
    let (members, next) = records::<users::User>(ctx.table.as_ref(), query).await?;
    let views = members.iter().map(users::User::view).collect();
    json(StatusCode::OK, &PageBody::new(views, next))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateMember {
    role: String,
}

/// Changes a member's role. A customer or another shop's user is 404; an admin touching an
/// owner, or making one, is 403; demoting the caller's own last owner seat is 409.
#[tracing::instrument(skip_all)]
pub async fn update(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let id: UserId = path_id(&req, "id", NO_SUCH_MEMBER)?;
    let body: UpdateMember = parse_json(&req)?;
    validate! {
        role = member_role(&body.role) => "role",
    }
    let member = users::get(ctx.table.as_ref(), &caller.tenant_id, &id)
        .await?
        .filter(|u| u.role.includes(Role::Staff))
        .ok_or_else(|| ApiError::not_found(NO_SUCH_MEMBER))?;
    may_grant(&caller, role)?;
    if member.role == Role::Owner && caller.role != Role::Owner {
        return Err(ApiError::Forbidden(
            "Only an owner can change an owner.".into(),
        ));
    }
    if member.role == Role::Owner && role != Role::Owner && caller.user_id() == Some(&member.id) {
        return Err(ApiError::Conflict {
            slug: "last-owner",
            detail: "An owner cannot demote themselves; another owner must.".into(),
        });
    }
    let by = caller.user_id().map_or("", |id| id.as_str());
    let change = Change::new("member.role_changed", "member", &member.id).detail(format!(
        "role: {} -> {}",
        member.role.as_str(),
        role.as_str()
    ));
    let audit = audit::recorded(ctx, &req, &caller, change)?;
    let updated = match users::set_role(ctx.table.as_ref(), &member, role, by, audit).await {
        Ok(user) => user,
        Err(e) if e.is_condition_failed() => {
            return Err(ApiError::Conflict {
                slug: "conflict",
                detail: "The member changed meanwhile; read it again.".into(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(user_id = %updated.id, role = role.as_str(), "member role changed");
    json(StatusCode::OK, &updated.view())
}
