//! Repositories: one file per aggregate, its keys, items and transactions over the `Table`
//! port. Everything here is written once and runs on every adapter.

pub mod api_keys;
pub mod audit;
pub mod emails;
pub mod idempotency;
pub mod orders;
pub mod outbox;
pub mod products;
pub mod rate_limits;
pub mod sessions;
pub mod tenants;
pub mod users;
pub mod webhooks;

use serde::de::DeserializeOwned;

use crate::store::{Position, Query, StoreError, Table};

/// One page of a query, each item read back as a record of type `T`.
pub async fn records<T: DeserializeOwned>(
    table: &dyn Table,
    query: Query,
) -> Result<(Vec<T>, Option<Position>), StoreError> {
    let page = table.query(query).await?;
    let records = page
        .items
        .iter()
        .map(crate::store::Item::record)
        .collect::<Result<_, _>>()?;
    Ok((records, page.next))
}
