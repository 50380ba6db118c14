//! Money: `Currency` (an ISO 4217 code, lower case, `usd`) and `Money`, an amount in the
//! currency's minor units (cents) that can only be made in range and only be added to or
//! multiplied within one currency, checked for overflow. Never a float.

use serde::{Deserialize, Serialize};

use super::Invalid;

/// The active ISO 4217 currency codes.
const ISO_4217: &[&str] = &[
    "aed", "afn", "all", "amd", "ang", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd", "bdt",
    "bgn", "bhd", "bif", "bmd", "bnd", "bob", "brl", "bsd", "btn", "bwp", "byn", "bzd", "cad",
    "cdf", "chf", "clp", "cny", "cop", "crc", "cup", "cve", "czk", "djf", "dkk", "dop", "dzd",
    "egp", "ern", "etb", "eur", "fjd", "fkp", "gbp", "gel", "ghs", "gip", "gmd", "gnf", "gtq",
    "gyd", "hkd", "hnl", "htg", "huf", "idr", "ils", "inr", "iqd", "irr", "isk", "jmd", "jod",
    "jpy", "kes", "kgs", "khr", "kmf", "kpw", "krw", "kwd", "kyd", "kzt", "lak", "lbp", "lkr",
    "lrd", "lsl", "lyd", "mad", "mdl", "mga", "mkd", "mmk", "mnt", "mop", "mru", "mur", "mvr",
    "mwk", "mxn", "myr", "mzn", "nad", "ngn", "nio", "nok", "npr", "nzd", "omr", "pab", "pen",
    "pgk", "php", "pkr", "pln", "pyg", "qar", "ron", "rsd", "rub", "rwf", "sar", "sbd", "scr",
    "sdg", "sek", "sgd", "shp", "sle", "sos", "srd", "ssp", "stn", "svc", "syp", "szl", "thb",
    "tjs", "tmt", "tnd", "top", "try", "ttd", "twd", "tzs", "uah", "ugx", "usd", "uyu", "uzs",
    "ves", "vnd", "vuv", "wst", "xaf", "xcd", "xof", "xpf", "yer", "zar", "zmw", "zwl",
];

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Currency(String);

impl Currency {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        if ISO_4217.contains(&raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(Invalid(
                "must be an ISO 4217 currency code in lower case, such as `usd`".into(),
            ))
        }
    }

    pub fn usd() -> Self {
        Self("usd".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The largest amount Storefront handles, in minor units: 10^12 (ten billion dollars),
/// far inside `i64` and exactly representable in the JSON numbers every client parses
/// (2^53), so no client rounds a total.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// `{"amount": <integer minor units>, "currency": "<iso 4217>"}`, the API's money.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    amount: i64,
    currency: Currency,
}

impl Money {
    /// An amount of minor units, 0 to [`MAX_AMOUNT`].
    pub fn new(amount: i64, currency: Currency) -> Result<Self, Invalid> {
        if (0..=MAX_AMOUNT).contains(&amount) {
            Ok(Self { amount, currency })
        } else {
            Err(Invalid(format!(
                "must be a whole number of minor units from 0 to {MAX_AMOUNT}"
            )))
        }
    }

    pub fn zero(currency: Currency) -> Self {
        Self {
            amount: 0,
            currency,
        }
    }

    pub fn amount(&self) -> i64 {
        self.amount
    }

    pub fn currency(&self) -> &Currency {
        &self.currency
    }

    /// The sum, in the same currency and in range.
    pub fn checked_add(&self, other: &Money) -> Result<Money, Invalid> {
        if self.currency != other.currency {
            return Err(Invalid(format!(
                "cannot add {} to {}",
                other.currency.as_str(),
                self.currency.as_str()
            )));
        }
        let sum = self
            .amount
            .checked_add(other.amount)
            .ok_or_else(|| Invalid("the total is too large".into()))?;
        Money::new(sum, self.currency.clone())
    }

    /// The amount as a customer reads it: the currency's symbol and its minor units
    /// (ISO 4217's exponent: 2 for `eur`, 0 for `jpy`, 3 for `kwd`), thousands grouped:
    /// `€1,234.50`, `¥1,234`, `BRL 12.00` (the code, where the currency's symbol is made of
    /// letters).
    pub fn formatted(&self) -> String {
        let iso = iso_currency::Currency::from_code(&self.currency.as_str().to_ascii_uppercase());
        let exponent = iso.and_then(|c| c.exponent()).unwrap_or(2);
        let divisor = 10_i64.pow(u32::from(exponent));
        let (whole, minor) = (self.amount / divisor, self.amount % divisor);
        let digits = whole.to_string();
        let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        if exponent > 0 {
            grouped.push_str(&format!(".{minor:0width$}", width = usize::from(exponent)));
        }
        let code = self.currency.as_str().to_ascii_uppercase();
        match iso.map(|c| c.symbol().symbol) {
            // A sign (`€`, `$`, `¥`) goes before the amount; a symbol made of letters
            // (`R$`, or `د.ك`, which reads right to left) or none reads as the code.
            Some(symbol)
                if !symbol.is_empty()
                    && symbol != "¤"
                    && !symbol.chars().any(char::is_alphabetic) =>
            {
                format!("{symbol}{grouped}")
            }
            _ => format!("{code} {grouped}"),
        }
    }

    /// This amount `times` times (a line of an order), in range.
    pub fn times(&self, times: u32) -> Result<Money, Invalid> {
        let product = self
            .amount
            .checked_mul(i64::from(times))
            .ok_or_else(|| Invalid("the total is too large".into()))?;
        Money::new(product, self.currency.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eur(amount: i64) -> Money {
        Money::new(amount, Currency::parse("eur").unwrap()).unwrap()
    }

    #[test]
    fn money_is_made_only_in_range_and_adds_only_within_one_currency() {
        assert!(Money::new(-1, Currency::usd()).is_err());
        assert!(Money::new(MAX_AMOUNT + 1, Currency::usd()).is_err());
        assert_eq!(eur(250).checked_add(&eur(100)).unwrap(), eur(350));
        assert!(eur(1).checked_add(&Money::zero(Currency::usd())).is_err());
        assert_eq!(eur(250).times(3).unwrap(), eur(750));
        assert!(eur(MAX_AMOUNT).times(2).is_err());
        assert!(
            eur(MAX_AMOUNT / 2).times(u32::MAX).is_err(),
            "no overflow, a refusal"
        );
        assert_eq!(
            serde_json::to_value(eur(1999)).unwrap(),
            serde_json::json!({"amount": 1999, "currency": "eur"})
        );
    }

    #[test]
    fn money_reads_with_its_currencys_symbol_and_minor_units() {
        let money = |amount, code| Money::new(amount, Currency::parse(code).unwrap()).unwrap();
        assert_eq!(money(123_450, "eur").formatted(), "€1,234.50");
        assert_eq!(money(5, "usd").formatted(), "$0.05");
        assert_eq!(money(1_234, "jpy").formatted(), "¥1,234");
        assert_eq!(money(1_234_567, "kwd").formatted(), "KWD 1,234.567");
        assert_eq!(money(1_200, "brl").formatted(), "BRL 12.00");
        assert_eq!(money(100_000_000, "gbp").formatted(), "£1,000,000.00");
        assert_eq!(money(0, "eur").formatted(), "€0.00");
    }

    #[test]
    fn only_lower_case_iso_codes_are_currencies() {
        assert_eq!(Currency::parse("eur").unwrap().as_str(), "eur");
        for bad in ["EUR", "xyz", "eu", "", "euro"] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
        assert!(
            ISO_4217.windows(2).all(|w| w[0] < w[1]),
            "the list stays sorted and unique"
        );
    }
}
