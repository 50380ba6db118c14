//! `Caller`: who is acting on a request, as the edge authenticated it. A plain value: the
//! edge (`crate::edge`) makes it from a credential and checks it against the route's
//! declared access before any handler runs; handlers receive it and never authenticate.

use super::{ApiKeyId, Role, SessionId, TenantId, UserId};

/// Who is calling: a signed-in user (through a session) or an API key of a shop.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    User {
        user_id: UserId,
        session_id: SessionId,
    },
    ApiKey {
        key_id: ApiKeyId,
        /// The member whose authority the key carries (its role caps the key's).
        created_by: UserId,
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
    /// The signed-in user, or `None` for an API key.
    pub fn user_id(&self) -> Option<&UserId> {
        self.session().map(|(user_id, _)| user_id)
    }

    /// The id of who acts: the user, or the API key (each has its own idempotency keys).
    pub fn principal_id(&self) -> &str {
        match &self.principal {
            Principal::User { user_id, .. } => user_id.as_str(),
            Principal::ApiKey { key_id, .. } => key_id.as_str(),
        }
    }

    /// The signed-in user and their session, or `None` for an API key (which has neither).
    pub fn session(&self) -> Option<(&UserId, &SessionId)> {
        match &self.principal {
            Principal::User {
                user_id,
                session_id,
            } => Some((user_id, session_id)),
            Principal::ApiKey { .. } => None,
        }
    }
}
