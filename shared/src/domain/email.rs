//! `Email`: a syntactically valid address, normalised (Unicode NFC, lower case) so that one
//! person has one account per shop whatever case, keyboard or input method they type with,
//! and refused when it holds characters that do not show (zero-width, bidi controls, …) or
//! control characters, which would let one address pose as another.

use serde::Serialize;
use unicode_normalization::UnicodeNormalization as _;

use super::Invalid;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Parses an address (RFC 5322 `addr-spec`, via the `email_address` crate), requiring a
    /// dotted domain and no display name or domain literal, and lower-cases it.
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let trimmed = raw.trim();
        if trimmed.chars().any(|c| c.is_control() || is_invisible(c)) {
            return Err(Invalid(
                "must not contain invisible or control characters".into(),
            ));
        }
        // "é" typed as one code point or as "e" and a combining accent is one address.
        let composed: String = trimmed.nfc().collect();
        let trimmed = composed.as_str();
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
            .map(|address| Self(address.email().to_lowercase().nfc().collect()))
            .map_err(|_| Invalid("is not a valid email address".into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Unicode's Default_Ignorable_Code_Point characters (DerivedCoreProperties.txt, Unicode
/// 15.1): what renderers draw as nothing, such as U+200B ZERO WIDTH SPACE, the bidi controls,
/// variation selectors and U+FEFF; plus every space other than ASCII's, which the address
/// grammar refuses only in its ASCII form.
/// <https://www.unicode.org/reports/tr44/#Default_Ignorable_Code_Point>
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}'..='\u{1160}' | '\u{17B4}'..='\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{1BCA0}'..='\u{1BCA3}'
        | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
        || (c.is_whitespace() && !c.is_ascii())
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
    fn composed_and_decomposed_accents_are_one_address() {
        let composed = Email::parse("Ren\u{00E9}@example.com").unwrap();
        let decomposed = Email::parse("RENE\u{0301}@example.com").unwrap();
        assert_eq!(composed, decomposed);
        assert_eq!(composed.as_str(), "ren\u{00E9}@example.com");
    }

    #[test]
    fn invisible_and_control_characters_are_refused() {
        for bad in [
            "ada\u{200B}@example.com",
            "ada@exa\u{200D}mple.com",
            "\u{FEFF}ada@example.com",
            "ada\u{202E}@example.com",
            "ada\u{00AD}@example.com",
            "ada\u{0007}@example.com",
            "ada\u{00A0}@example.com",
            "ada\u{E0041}@example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
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
