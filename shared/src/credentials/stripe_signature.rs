//! Stripe's webhook signatures: `Stripe-Signature: t=<unix seconds>,v1=<hex>[,v1=<hex>…]`,
//! each `v1` the HMAC-SHA256, keyed with the endpoint's secret (`whsec_…`, as written), of
//! `"<t>.<the body as received>"`. A request is genuine when one `v1` matches (compared in
//! constant time) and `t` is within the tolerance of now, so a captured request cannot be
//! replayed later. <https://docs.stripe.com/webhooks#verify-manually>
//!
//! [`sign`] makes the header, for the local payment provider and the tests.

use aws_lc_rs::hmac;
use secrecy::{ExposeSecret as _, SecretString};

/// How far `t` may be from now: Stripe's own libraries' default, five minutes.
pub const TOLERANCE_S: i64 = 300;

/// Why a signature was refused (each a 400, and nothing changes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header has no timestamp or no v1 signature")]
    Malformed,
    #[error("no v1 signature matches the body")]
    Mismatch,
    #[error("the signature's timestamp is more than {TOLERANCE_S} s from now")]
    OutsideTolerance,
}

fn key(secret: &SecretString) -> hmac::Key {
    hmac::Key::new(hmac::HMAC_SHA256, secret.expose_secret().as_bytes())
}

fn signed_payload(timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut payload = format!("{timestamp}.").into_bytes();
    payload.extend_from_slice(body);
    payload
}

/// Checks a `Stripe-Signature` header (`None`: it was missing) against the body exactly as
/// received, at `now` (unix seconds); answers the signed timestamp.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secret: &SecretString,
    now: i64,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => signatures.push(value),
            // Other schemes (v0, a test mode's) are not signatures this accepts.
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let key = key(secret);
    let payload = signed_payload(timestamp, body);
    let matches = signatures.iter().any(|signature| {
        hex::decode(signature).is_ok_and(|tag| hmac::verify(&key, &payload, &tag).is_ok())
    });
    if !matches {
        return Err(SignatureError::Mismatch);
    }
    if (now - timestamp).abs() > TOLERANCE_S {
        return Err(SignatureError::OutsideTolerance);
    }
    Ok(timestamp)
}

/// The `Stripe-Signature` header Stripe would send for `body` at `timestamp`.
pub fn sign(body: &[u8], secret: &SecretString, timestamp: i64) -> String {
    let tag = hmac::sign(&key(secret), &signed_payload(timestamp, body));
    format!("t={timestamp},v1={}", hex::encode(tag.as_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
    /// HMAC-SHA256 of `1700000000.` + BODY under `whsec_test_secret`, computed with Python's
    /// `hmac` module (an independent implementation).
    const PYTHON_HMAC: &str = "22d8dc182f5c588077683bd378368e29765bfe5df2560112b4f28fef120f0e31";

    fn secret() -> SecretString {
        SecretString::from("whsec_test_secret")
    }

    #[test]
    fn a_signature_made_by_another_implementation_verifies() {
        let header = format!("t=1700000000,v1={PYTHON_HMAC}");
        assert_eq!(
            verify(Some(&header), BODY, &secret(), 1_700_000_100),
            Ok(1_700_000_000)
        );
        assert_eq!(sign(BODY, &secret(), 1_700_000_000), header);
    }

    #[test]
    fn any_of_several_v1_signatures_may_match_and_other_schemes_are_ignored() {
        let header = format!(
            "t=1700000000, v0=deadbeef, v1={}, v1={PYTHON_HMAC}",
            "00".repeat(32)
        );
        assert!(verify(Some(&header), BODY, &secret(), 1_700_000_000).is_ok());
    }

    #[test]
    fn an_edited_body_another_secret_or_a_bad_header_is_refused() {
        let header = sign(BODY, &secret(), 1_700_000_000);
        let now = 1_700_000_000;
        let edited = br#"{"id":"evt_1","type":"payment_intent.succeeded" }"#;
        assert_eq!(
            verify(Some(&header), edited, &secret(), now),
            Err(SignatureError::Mismatch)
        );
        let other = SecretString::from("whsec_other");
        assert_eq!(
            verify(Some(&header), BODY, &other, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(None, BODY, &secret(), now),
            Err(SignatureError::Missing)
        );
        for malformed in [
            "",
            "t=abc,v1=00",
            "v1=00",
            "t=1700000000",
            "t=1700000000,v0=00",
        ] {
            assert_eq!(
                verify(Some(malformed), BODY, &secret(), now),
                Err(SignatureError::Malformed),
                "{malformed}"
            );
        }
        assert_eq!(
            verify(Some("t=1700000000,v1=zz"), BODY, &secret(), now),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn a_signature_older_or_newer_than_five_minutes_is_refused() {
        let header = sign(BODY, &secret(), 1_700_000_000);
        for (now, ok) in [
            (1_700_000_000 + TOLERANCE_S, true),
            (1_700_000_000 + TOLERANCE_S + 1, false),
            (1_700_000_000 - TOLERANCE_S - 1, false),
        ] {
            assert_eq!(
                verify(Some(&header), BODY, &secret(), now).is_ok(),
                ok,
                "{now}"
            );
        }
    }
}
