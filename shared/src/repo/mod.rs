//! Repositories: one file per aggregate, its keys, items and transactions over the `Table`
//! port. Everything here is written once and runs on every adapter.

pub mod api_keys;
pub mod rate_limits;
pub mod sessions;
pub mod tenants;
pub mod users;
