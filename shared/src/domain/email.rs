//! `Email`: a syntactically valid address, normalised to lower case so that one person has
//! one account per shop whatever case they type.

use serde::Serialize;

use super::Invalid;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Parses an address (RFC 5322 `addr-spec`, via the `email_address` crate), requiring a
    /// dotted domain and no display name or domain literal, and lower-cases it.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let trimmed = raw.trim();
        let options = email_address::Options {
            allow_display_text: false,
            ..email_address::Options::default()
                .with_required_tld()
                .without_domain_literal()
        };
        if trimmed.len() > 254 {
            return Err(Invalid("must be at most 254 characters".into()));
        }
        email_address::EmailAddress::parse_with_options(trimmed, options)
            .map(|address| Self(address.email().to_lowercase()))
            .map_err(|_| Invalid("is not a valid email address".into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_trimmed_and_lower_cased() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").unwrap().as_str(),
            "ada@example.com"
        );
    }

    #[test]
    fn malformed_addresses_are_refused() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "Ada <ada@example.com>",
            "ada@[127.0.0.1]",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&long).is_err());
    }
}
