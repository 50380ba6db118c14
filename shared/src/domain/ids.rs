//! Typed identifiers: a `TenantId` is a `ten_` ULID and nothing else, so an id that came
//! from a path, a body or a token has been checked once, where it entered, and a function
//! that takes a `UserId` cannot be handed a session id.

use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize};

use super::Invalid;
use crate::ids::{IdGenerator, IdKind};

/// What every typed id offers, so edges can parse any of them the same way.
pub trait TypedId: Sized + fmt::Display {
    const KIND: IdKind;
    /// What the id names, for messages ("a shop id").
    const WHAT: &'static str;

    /// The id, if `s` is one of this kind (its prefix and a ULID).
    fn parse(s: &str) -> Result<Self, Invalid>;
}

macro_rules! typed_id {
    ($(#[$doc:meta])* $name:ident, $kind:expr, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A new id from the injected generator.
            pub fn generate(ids: &dyn IdGenerator) -> Self {
                Self(ids.next(<Self as TypedId>::KIND))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TypedId for $name {
            const KIND: IdKind = $kind;
            const WHAT: &'static str = $what;

            fn parse(s: &str) -> Result<Self, Invalid> {
                if Self::KIND.matches(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(Invalid(format!("is not {} (`{}…`)", Self::WHAT, Self::KIND.prefix())))
                }
            }
        }

        // Read-only access as a string: keys and log fields are built from it.
        impl Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        // Stored records and request bodies are checked as they are read.
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                <Self as TypedId>::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

typed_id!(
    /// A shop: `ten_…`.
    TenantId,
    IdKind::Tenant,
    "a shop id"
);
typed_id!(
    /// An account of a shop (owner, staff or customer): `usr_…`.
    UserId,
    IdKind::User,
    "a user id"
);
typed_id!(
    /// A signed-in device, the family of its refresh tokens: `ses_…`.
    SessionId,
    IdKind::Session,
    "a session id"
);
typed_id!(
    /// A shop's API key: `key_…`.
    ApiKeyId,
    IdKind::ApiKey,
    "an API key id"
);
typed_id!(
    /// A product of a shop's catalogue: `prod_…`.
    ProductId,
    IdKind::Product,
    "a product id"
);
typed_id!(
    /// An order of a shop's customer: `ord_…`.
    OrderId,
    IdKind::Order,
    "an order id"
);
typed_id!(
    /// An image of a product: `img_…`.
    ImageId,
    IdKind::Image,
    "an image id"
);
typed_id!(
    /// A shop's webhook endpoint: `whe_…`.
    EndpointId,
    IdKind::WebhookEndpoint,
    "a webhook endpoint id"
);
typed_id!(
    /// One attempt to deliver an event to a webhook endpoint: `dlv_…`.
    DeliveryId,
    IdKind::Delivery,
    "a delivery id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_parses_only_with_its_own_prefix_and_a_ulid() {
        let tenant = TenantId::parse("ten_01JD0000000000000000000000").unwrap();
        assert_eq!(tenant.as_str(), "ten_01JD0000000000000000000000");
        assert!(TenantId::parse("usr_01JD0000000000000000000000").is_err());
        assert!(TenantId::parse("ten_not-a-ulid").is_err());
        assert!(TenantId::parse("ten_01JD0000000000000000000000#USER").is_err());
        let error = UserId::parse("x").unwrap_err();
        assert_eq!(error.to_string(), "is not a user id (`usr_…`)");
    }

    #[test]
    fn a_malformed_id_in_json_is_refused_while_reading() {
        let ok: SessionId = serde_json::from_str("\"ses_01JD0000000000000000000000\"").unwrap();
        assert_eq!(
            serde_json::to_string(&ok).unwrap(),
            "\"ses_01JD0000000000000000000000\""
        );
        assert!(serde_json::from_str::<SessionId>("\"ses_#TENANT\"").is_err());
    }
}
