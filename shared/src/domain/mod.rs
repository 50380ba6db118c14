//! Domain types that can only be built valid ("parse, don't validate"): a handler never
//! holds a raw string it must remember to check. No I/O, no AWS, no HTTP here.

mod caller;
mod catalog;
mod email;
mod identity;
mod ids;
mod jobs;
mod money;
mod orders;
pub mod search;
mod webhooks;

pub use caller::{Caller, Principal};
pub use catalog::{price_in_shop_currency, Description, ProductName, Sku, Stock};
pub use email::Email;
pub use identity::{Password, PersonName, Role, TenantName};
pub use ids::{
    ApiKeyId, DeliveryId, EndpointId, ImageId, OrderId, ProductId, SessionId, TenantId, TypedId,
    UserId,
};
pub use jobs::{EmailKind, Event, EventData, Job};
pub use money::{Currency, Money, MAX_AMOUNT};
pub use orders::{Cart, IllegalMove, Move, OrderStatus, Quantity};
pub use webhooks::{Breaker, EventTypes, Gate, RetrySchedule, EVENT_TYPES};

/// Why a value was refused, worded for the client (it becomes a 422 `errors` entry).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);
