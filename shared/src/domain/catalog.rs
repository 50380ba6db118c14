//! The catalogue's values, valid by construction: a product's sku, name, description,
//! stock and price. A handler never holds a raw string or number it must remember to check.

use serde::Serialize;

use super::identity::bounded_text;
use super::{Currency, Invalid, Money};

/// A stock-keeping unit: 1 to 64 letters, digits, `.`, `_` or `-`, as the shop writes it.
/// Two skus that differ only in case are one sku ([`Sku::unique_key`]), so a shop cannot
/// hold `MUG-1` and `mug-1` as two products.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Sku(String);

impl Sku {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let sku = raw.trim();
        let valid = (1..=64).contains(&sku.len())
            && sku
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if valid {
            Ok(Self(sku.to_owned()))
        } else {
            Err(Invalid(
                "must be 1 to 64 letters, digits, '.', '_' or '-'".into(),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What uniqueness is judged on: the sku in upper case.
    pub fn unique_key(&self) -> String {
        Self::unique_key_of(&self.0)
    }

    /// The unique key of a sku as stored (valid when it was written).
    pub fn unique_key_of(stored: &str) -> String {
        stored.to_ascii_uppercase()
    }
}

/// A product's name: 1 to 200 characters, trimmed, no control characters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ProductName(String);

impl ProductName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        bounded_text(raw, 200).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A product's description: up to 5000 characters; lines and tabs allowed, other control
/// characters refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Description(String);

impl Description {
    pub const MAX_CHARS: usize = 5000;

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let text = raw.trim();
        if text.chars().count() > Self::MAX_CHARS {
            return Err(Invalid(format!(
                "must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        if text
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\t'))
        {
            return Err(Invalid(
                "must not contain control characters other than line breaks and tabs".into(),
            ));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Units in stock: a whole number from 0 to a billion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Stock(u32);

impl Stock {
    pub const MAX: i64 = 1_000_000_000;

    pub fn parse(raw: i64) -> Result<Self, Invalid> {
        u32::try_from(raw)
            .ok()
            .filter(|units| i64::from(*units) <= Self::MAX)
            .map(Self)
            .ok_or_else(|| Invalid(format!("must be a whole number from 0 to {}", Self::MAX)))
    }

    pub fn units(self) -> u32 {
        self.0
    }
}

/// A price: `amount` minor units in `currency`, which must be the shop's own (one currency
/// per shop).
pub fn price_in_shop_currency(
    amount: i64,
    currency: &str,
    shop: &Currency,
) -> Result<Money, Invalid> {
    let currency = Currency::parse(currency)?;
    if &currency != shop {
        return Err(Invalid(format!(
            "must be in the shop's currency, {}",
            shop.as_str()
        )));
    }
    Money::new(amount, currency)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sku_is_letters_digits_and_a_few_marks_and_unique_whatever_its_case() {
        assert_eq!(
            Sku::parse(" MUG-1.blue_2 ").unwrap().as_str(),
            "MUG-1.blue_2"
        );
        assert_eq!(
            Sku::parse("mug-1").unwrap().unique_key(),
            Sku::parse("MUG-1").unwrap().unique_key()
        );
        for bad in ["", "a b", "é", "mug/1", &"x".repeat(65)] {
            assert!(Sku::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn names_and_descriptions_are_bounded_and_free_of_control_characters() {
        assert!(ProductName::parse("Blue Mug").is_ok());
        assert!(ProductName::parse("  ").is_err());
        assert!(ProductName::parse(&"n".repeat(201)).is_err());
        assert!(ProductName::parse("Mug\u{0}").is_err());
        assert!(Description::parse("Two lines\nand a\ttab").is_ok());
        assert!(Description::parse("").is_ok());
        assert!(Description::parse("bell\u{7}").is_err());
        assert!(Description::parse(&"d".repeat(5001)).is_err());
    }

    #[test]
    fn stock_is_a_whole_number_in_range() {
        assert_eq!(Stock::parse(0).unwrap().units(), 0);
        assert_eq!(Stock::parse(Stock::MAX).unwrap().units(), 1_000_000_000);
        assert!(Stock::parse(-1).is_err());
        assert!(Stock::parse(Stock::MAX + 1).is_err());
    }

    #[test]
    fn a_price_is_in_the_shops_currency_and_in_range() {
        let eur = Currency::parse("eur").unwrap();
        assert_eq!(
            price_in_shop_currency(1999, "eur", &eur).unwrap().amount(),
            1999
        );
        assert!(price_in_shop_currency(1999, "usd", &eur).is_err());
        assert!(price_in_shop_currency(1999, "xyz", &eur).is_err());
        assert!(price_in_shop_currency(-1, "eur", &eur).is_err());
        assert!(price_in_shop_currency(i64::MAX, "eur", &eur).is_err());
    }
}
