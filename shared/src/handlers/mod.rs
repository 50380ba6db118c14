//! The handlers: one file per resource, each route an `async fn(Request, &AppContext)`.

pub mod api_keys;
pub mod audit_log;
pub mod auth;
pub mod health;
pub mod jwks;
pub mod me;
pub mod members;
pub mod product_images;
pub mod products;
pub mod sessions;
pub mod tenants;
