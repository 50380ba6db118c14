//! `Currency`: an ISO 4217 code, lower case (`usd`), as the API writes money.

use serde::Serialize;

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

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
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

#[cfg(test)]
mod tests {
    use super::*;

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
