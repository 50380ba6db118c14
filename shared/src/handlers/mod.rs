//! The handlers: one file per resource, each route an `async fn(Request, &AppContext)`;
//! and how the feature modules' failures become HTTP answers.

pub mod api_keys;
pub mod audit_log;
pub mod auth;
pub mod health;
pub mod jwks;
pub mod me;
pub mod members;
pub mod orders;
pub mod payments;
pub mod product_images;
pub mod products;
pub mod sessions;
pub mod tenants;
pub mod webhook_endpoints;

use crate::catalog::{CatalogError, MAX_IMAGES};
use crate::http::{ApiError, FieldError};
use crate::orders::OrderError;

pub(crate) const NO_SUCH_PRODUCT: &str = "This shop has no product with this id.";
pub(crate) const NO_SUCH_IMAGE: &str = "This product has no image with this id.";
pub(crate) const NO_SUCH_ORDER: &str = "This shop has no order of yours with this id.";

/// The one place a catalogue failure becomes HTTP.
impl From<CatalogError> for ApiError {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::NoSuchProduct => ApiError::not_found(NO_SUCH_PRODUCT),
            CatalogError::SkuTaken => ApiError::Conflict {
                slug: "sku-taken",
                detail: "Another product of this shop has this sku.".into(),
            },
            CatalogError::Stale => ApiError::PreconditionFailed(
                "The product has changed since the version `If-Match` names; read it again.".into(),
            ),
            CatalogError::Contended => ApiError::Conflict {
                slug: "conflict",
                detail: "The product kept changing while it was being written; try again.".into(),
            },
            CatalogError::NoSuchImage => ApiError::not_found(NO_SUCH_IMAGE),
            CatalogError::TooManyImages => ApiError::Conflict {
                slug: "too-many-images",
                detail: format!(
                    "A product has at most {MAX_IMAGES} images; delete one before adding another."
                ),
            },
            CatalogError::Store(e) => e.into(),
        }
    }
}

/// The one place an order's failure becomes HTTP.
impl From<OrderError> for ApiError {
    fn from(error: OrderError) -> Self {
        match error {
            OrderError::UnknownProducts(ids) => ApiError::Unprocessable {
                slug: "unknown-product",
                detail: "The order names a product this shop does not sell; see `errors`.".into(),
                errors: ids
                    .iter()
                    .map(|id| FieldError::new("items", format!("{id} is no product of this shop")))
                    .collect(),
            },
            OrderError::OutOfStock {
                product_id,
                sku,
                available,
            } => ApiError::Conflict {
                slug: "out-of-stock",
                detail: format!(
                    "Not enough stock of {sku} ({product_id}): {available} left. Nothing was ordered."
                ),
            },
            OrderError::Total(message) => {
                ApiError::validation(vec![FieldError::new("items", message)])
            }
            OrderError::NoSuchOrder => ApiError::not_found(NO_SUCH_ORDER),
            OrderError::Illegal(illegal) => ApiError::Conflict {
                slug: "order-status",
                detail: format!("{}.", capitalised(&illegal.to_string())),
            },
            OrderError::Contended => ApiError::Conflict {
                slug: "conflict",
                detail: "The order kept changing while it was being written; try again.".into(),
            },
            OrderError::Payment(crate::payments::PaymentError::Unavailable(e)) => {
                ApiError::Unavailable(e.context("the payment provider"))
            }
            OrderError::Payment(e) => crate::http::internal(e),
            OrderError::Store(e) => e.into(),
        }
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}
