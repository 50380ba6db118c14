//! Tenants (shops): `TENANT#<tid>` / `TENANT`.

use serde::{Deserialize, Serialize};

use crate::domain::TenantId;

use crate::store::{Condition, Item, Key, StoreError, Table, TxOp};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub currency: String,
    pub created_at: String,
}

pub fn key(tenant_id: &str) -> Key {
    Key::new(format!("TENANT#{tenant_id}"), "TENANT")
}

/// Creates the tenant; fails the transaction if the id is taken.
pub fn create(tenant: &Tenant) -> Result<TxOp, StoreError> {
    Ok(TxOp::Put {
        item: Item::new(&key(&tenant.id)).with_record(tenant)?,
        condition: Some(Condition::NotExists),
    })
}

/// Fails the transaction unless the tenant exists.
pub fn must_exist(tenant_id: &str) -> TxOp {
    TxOp::Check {
        key: key(tenant_id),
        condition: Condition::Exists,
    }
}

pub async fn get(table: &dyn Table, tenant_id: &str) -> Result<Option<Tenant>, StoreError> {
    table
        .get(&key(tenant_id))
        .await?
        .map(|item| item.record())
        .transpose()
}
