//! The handlers: one file per resource, each route an `async fn(Request, &AppContext)`.

pub mod health;
