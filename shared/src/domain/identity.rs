//! The values of identity: roles, passwords, and the names of people and shops.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::Invalid;

/// What a caller may do in a shop. Each role may do everything the ones below it may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Staff,
    Admin,
    Owner,
}

impl Role {
    fn rank(self) -> u8 {
        match self {
            Self::Customer => 0,
            Self::Staff => 1,
            Self::Admin => 2,
            Self::Owner => 3,
        }
    }

    /// Whether this role includes `other`'s rights.
    pub fn includes(self, other: Role) -> bool {
        self.rank() >= other.rank()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Staff => "staff",
            Self::Admin => "admin",
            Self::Owner => "owner",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        match raw {
            "customer" => Ok(Self::Customer),
            "staff" => Ok(Self::Staff),
            "admin" => Ok(Self::Admin),
            "owner" => Ok(Self::Owner),
            _ => Err(Invalid(
                "must be one of owner, admin, staff, customer".into(),
            )),
        }
    }
}

/// A password: 8 to 128 characters (Unicode counts characters, not bytes), counted and kept
/// in normalisation form NFKC, the form that is hashed ([`crate::credentials::passwords`]). It is
/// never logged: `Debug` shows nothing of it.
#[derive(Clone)]
pub struct Password(SecretString);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(redacted)")
    }
}

impl Password {
    pub const MIN_CHARS: usize = 8;
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        use unicode_normalization::UnicodeNormalization as _;
        // Counted as it will be hashed: "e" + a combining accent is one character.
        let normalised = zeroize::Zeroizing::new(raw.nfkc().collect::<String>());
        let chars = normalised.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(Invalid(format!(
                "must be at least {} characters",
                Self::MIN_CHARS
            )));
        }
        if chars > Self::MAX_CHARS {
            return Err(Invalid(format!(
                "must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        Ok(Self(SecretString::from(normalised.as_str().to_owned())))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

pub(super) fn bounded_text(raw: &str, max: usize) -> Result<String, Invalid> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(Invalid("must not be empty".into()));
    }
    if text.chars().count() > max {
        return Err(Invalid(format!("must be at most {max} characters")));
    }
    if text.chars().any(char::is_control) {
        return Err(Invalid("must not contain control characters".into()));
    }
    Ok(text.to_owned())
}

/// A person's display name: 1 to 100 characters, trimmed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        bounded_text(raw, 100).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A shop's name: 1 to 100 characters, trimmed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct TenantName(String);

impl TenantName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        bounded_text(raw, 100).map(Self)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_owner_admin_staff_customer() {
        assert!(Role::Owner.includes(Role::Admin));
        assert!(Role::Admin.includes(Role::Staff));
        assert!(Role::Staff.includes(Role::Customer));
        assert!(!Role::Staff.includes(Role::Admin));
        assert!(!Role::Customer.includes(Role::Staff));
        assert_eq!(Role::parse("admin").unwrap(), Role::Admin);
        assert!(Role::parse("root").is_err());
    }

    #[test]
    fn a_password_counts_characters_not_bytes() {
        assert!(Password::parse("short").is_err());
        assert!(
            Password::parse("ééééééé").is_err(),
            "7 characters, 14 bytes"
        );
        assert!(Password::parse("éééééééé").is_ok(), "8 characters");
        assert!(Password::parse(&"x".repeat(128)).is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
        assert_eq!(
            format!("{:?}", Password::parse("correct horse").unwrap()),
            "Password(redacted)"
        );
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            PersonName::parse("  Ada Lovelace ").unwrap().as_str(),
            "Ada Lovelace"
        );
        assert!(PersonName::parse("   ").is_err());
        assert!(TenantName::parse(&"n".repeat(101)).is_err());
        assert!(TenantName::parse("Shop\u{0007}").is_err());
    }
}
