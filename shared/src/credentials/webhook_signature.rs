//! Standard Webhooks signatures for outbound deliveries: an endpoint's secret is
//! `whsec_<base64 of 32 random bytes>`, and each request carries `webhook-id`,
//! `webhook-timestamp` (unix seconds) and `webhook-signature: v1,<base64 of the
//! HMAC-SHA256, keyed with the decoded secret, of "<id>.<timestamp>.<body>">`.
//! <https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md>
//!
//! [`verify`] is the receiver's side, for the tests and for anyone reading how a shop
//! checks what Storefront sends.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// The prefix every endpoint secret carries.
pub const SECRET_PREFIX: &str = "whsec_";
/// How far a receiver should let `webhook-timestamp` be from now (the spec's suggestion).
pub const TOLERANCE_S: i64 = 300;

/// A new endpoint secret, shown to the shop once.
pub fn generate_secret() -> anyhow::Result<String> {
    Ok(format!(
        "{SECRET_PREFIX}{}",
        STANDARD.encode(crate::crypto::random_bytes(32)?)
    ))
}

fn key(secret: &str) -> anyhow::Result<hmac::Key> {
    let encoded = secret
        .strip_prefix(SECRET_PREFIX)
        .ok_or_else(|| anyhow::anyhow!("a webhook secret starts with {SECRET_PREFIX}"))?;
    let bytes = STANDARD
        .decode(encoded)
        .map_err(|e| anyhow::anyhow!("a webhook secret is base64 after its prefix: {e}"))?;
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &bytes))
}

fn signed_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    content
}

/// The `webhook-signature` header of `body` sent as message `id` at `timestamp`.
pub fn sign(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> anyhow::Result<String> {
    let tag = hmac::sign(&key(secret)?, &signed_content(id, timestamp, body));
    Ok(format!("v1,{}", STANDARD.encode(tag.as_ref())))
}

/// Whether one of the space-separated `v1,<base64>` signatures of `header` is `body`'s,
/// compared in constant time, with the timestamp within [`TOLERANCE_S`] of `now`.
pub fn verify(secret: &str, id: &str, timestamp: i64, header: &str, body: &[u8], now: i64) -> bool {
    let Ok(key) = key(secret) else {
        return false;
    };
    if (now - timestamp).abs() > TOLERANCE_S {
        return false;
    }
    let content = signed_content(id, timestamp, body);
    header
        .split(' ')
        .filter_map(|signature| signature.strip_prefix("v1,"))
        .filter_map(|tag| STANDARD.decode(tag).ok())
        .any(|tag| hmac::verify(&key, &content, &tag).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks reference libraries' own tests.
    #[test]
    fn a_signature_matches_the_reference_implementations_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let signature = sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body).unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(
            secret,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            &format!("v1,bm9wZQ== {signature}"),
            body,
            1614265330 + 10,
        ));
    }

    #[test]
    fn a_changed_body_an_old_timestamp_or_another_secret_fails() {
        let secret = generate_secret().unwrap();
        assert!(secret.starts_with("whsec_"));
        let signature = sign(&secret, "evt_1", 100, b"{}").unwrap();
        assert!(verify(&secret, "evt_1", 100, &signature, b"{}", 100));
        assert!(!verify(&secret, "evt_1", 100, &signature, b"{ }", 100));
        assert!(!verify(&secret, "evt_2", 100, &signature, b"{}", 100));
        assert!(!verify(
            &secret,
            "evt_1",
            100,
            &signature,
            b"{}",
            100 + TOLERANCE_S + 1
        ));
        let other = generate_secret().unwrap();
        assert!(!verify(&other, "evt_1", 100, &signature, b"{}", 100));
        assert!(sign("not-a-secret", "evt_1", 100, b"{}").is_err());
    }
}
