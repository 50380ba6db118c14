//! Users and their per-tenant unique emails.
//!
//! - user: `TENANT#<tid>#USER#<uid>` / `USER`; staff and above are also in `gsi1` under
//!   `TENANT#<tid>#MEMBERS`, sorted by creation.
//! - email lock: `TENANT#<tid>#EMAIL#<email>` / `EMAIL`, written with `NotExists` in the same
//!   transaction as the user, so two signups with one email can never both succeed.

use serde::{Deserialize, Serialize};

use crate::domain::{Email, Role, TenantId, UserId};
use crate::store::{
    Condition, Index, Item, Key, Query, StoreError, Table, Transaction, TransactionError, UpdateOp,
};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub password_hash: String,
    pub created_at: String,
}

/// The user as the API shows it (never the password hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserView {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub created_at: String,
}

impl User {
    pub fn view(&self) -> UserView {
        UserView {
            id: self.id.clone(),
            tenant_id: self.tenant_id.clone(),
            email: self.email.clone(),
            name: self.name.clone(),
            role: self.role,
            created_at: self.created_at.clone(),
        }
    }
}

pub fn key(tenant_id: &str, user_id: &str) -> Key {
    Key::new(format!("TENANT#{tenant_id}#USER#{user_id}"), "USER")
}

pub fn email_key(tenant_id: &str, email: &Email) -> Key {
    Key::new(
        format!("TENANT#{tenant_id}#EMAIL#{}", email.as_str()),
        "EMAIL",
    )
}

pub fn members_partition(tenant_id: &str) -> String {
    format!("TENANT#{tenant_id}#MEMBERS")
}

fn item(user: &User) -> Result<Item, StoreError> {
    let item = Item::new(&key(&user.tenant_id, &user.id)).with_record(user)?;
    Ok(if user.role.includes(Role::Staff) {
        item.with_gsi1(
            members_partition(&user.tenant_id),
            format!("{}#{}", user.created_at, user.id),
        )
    } else {
        item
    })
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("the tenant does not exist")]
    TenantMissing,
    #[error("the email is taken in this tenant")]
    EmailTaken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What else a user's creating transaction holds.
pub struct Alongside {
    /// Fail unless the tenant exists (signup); not for a tenant created in the same call.
    pub tenant_must_exist: bool,
    /// Further writes that land with the user or not at all (its tenant, its first session),
    /// each under its own label.
    pub writes: Transaction<&'static str>,
}

/// The labels of the operations [`create`] adds to its transaction.
const SHOP_EXISTS: &str = "the shop's existence";
const USER: &str = "the user";
const EMAIL_LOCK: &str = "the email lock";

/// Creates a user and its email lock, both only if new, with `alongside` in one
/// transaction, and names which condition failed: the email lock is what makes two
/// simultaneous signups with one email end as one account and one `EmailTaken`.
#[tracing::instrument(skip_all, fields(user_id = %user.id, tenant_id = %user.tenant_id))]
pub async fn create(
    table: &dyn Table,
    user: &User,
    email: &Email,
    alongside: Alongside,
) -> Result<(), CreateError> {
    let mut tx = alongside.writes;
    if alongside.tenant_must_exist {
        tx.add(SHOP_EXISTS, super::tenants::must_exist(&user.tenant_id))?;
    }
    tx.put(USER, item(user)?, Some(Condition::NotExists))?;
    let lock = Item::new(&email_key(&user.tenant_id, email)).with("user_id", user.id.as_str());
    tx.put(EMAIL_LOCK, lock, Some(Condition::NotExists))?;
    match tx.commit(table).await {
        Ok(()) => Ok(()),
        Err(TransactionError::Refused(SHOP_EXISTS)) => Err(CreateError::TenantMissing),
        Err(TransactionError::Refused(EMAIL_LOCK)) => Err(CreateError::EmailTaken),
        Err(other) => Err(CreateError::Store(other.into_store())),
    }
}

pub async fn get(
    table: &dyn Table,
    tenant_id: &str,
    user_id: &str,
) -> Result<Option<User>, StoreError> {
    table
        .get(&key(tenant_id, user_id))
        .await?
        .map(|item| item.record())
        .transpose()
}

/// The id of the user holding `email` in a tenant, from the email lock.
pub async fn owner_of_email(
    table: &dyn Table,
    tenant_id: &str,
    email: &Email,
) -> Result<Option<String>, StoreError> {
    Ok(table
        .get(&email_key(tenant_id, email))
        .await?
        .and_then(|lock| lock.get_str("user_id").map(str::to_owned)))
}

/// Changes a member's role, on condition that it is still the role read before (a
/// concurrent change fails with a condition error). Demoting an owner also requires, in the
/// same transaction, that `by` (the caller) is still an owner: two owners demoting each
/// other at once cannot both succeed, so a shop always keeps an owner.
#[tracing::instrument(skip_all, fields(user_id = %user.id, role = role.as_str()))]
pub async fn set_role(
    table: &dyn Table,
    user: &User,
    role: Role,
    by: &str,
    alongside: Transaction<&'static str>,
) -> Result<User, StoreError> {
    let mut ops = vec![UpdateOp::set("role", role.as_str())];
    if role.includes(Role::Staff) {
        ops.push(UpdateOp::set(
            crate::store::GSI1PK,
            members_partition(&user.tenant_id),
        ));
        ops.push(UpdateOp::set(
            crate::store::GSI1SK,
            format!("{}#{}", user.created_at, user.id),
        ));
    } else {
        ops.push(UpdateOp::remove(crate::store::GSI1PK));
        ops.push(UpdateOp::remove(crate::store::GSI1SK));
    }
    let condition = Condition::And(vec![
        Condition::Exists,
        Condition::eq("role", user.role.as_str()),
    ]);
    let mut tx = alongside;
    tx.update(
        "the member's role",
        key(&user.tenant_id, &user.id),
        ops,
        Some(condition),
    )?;
    if user.role == Role::Owner && role != Role::Owner {
        tx.check(
            "the caller still an owner",
            key(&user.tenant_id, by),
            Condition::eq("role", Role::Owner.as_str()),
        )?;
    }
    tx.commit(table)
        .await
        .map_err(TransactionError::into_store)?;
    // The condition held, so the stored record is the one read, with its new role.
    Ok(User {
        role,
        ..user.clone()
    })
}

/// A tenant's members (staff and above), oldest first; read with [`super::records`].
pub fn members(tenant_id: &str) -> Query {
    Query::partition(Index::Gsi1, members_partition(tenant_id))
}
