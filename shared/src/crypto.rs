//! The few cryptographic primitives Storefront uses, all from aws-lc-rs (the library the AWS
//! SDK already links): HMAC-SHA256 signatures, SHA-256 digests and random secrets.

use aws_lc_rs::{digest, hmac, rand};
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretSlice};

/// A key for HMAC-SHA256, kept out of `Debug` output and logs.
#[derive(Clone)]
pub struct SigningKey(SecretSlice<u8>);

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(redacted)")
    }
}

impl SigningKey {
    pub fn from_bytes(bytes: Vec<u8>) -> Self {
        Self(SecretSlice::from(bytes))
    }

    /// A fresh 256-bit key.
    pub fn generate() -> Result<Self, anyhow::Error> {
        Ok(Self::from_bytes(random_bytes(32)?))
    }

    pub fn expose(&self) -> &[u8] {
        self.0.expose_secret()
    }

    fn key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, self.0.expose_secret())
    }

    /// The HMAC-SHA256 tag of `data`.
    pub fn sign(&self, data: &[u8]) -> Vec<u8> {
        hmac::sign(&self.key(), data).as_ref().to_vec()
    }

    /// Checks a tag in constant time.
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        hmac::verify(&self.key(), data, tag).is_ok()
    }

    /// The tag as URL-safe base64 without padding, for URLs and cursors.
    pub fn sign_b64(&self, data: &[u8]) -> String {
        b64url(&self.sign(data))
    }

    pub fn verify_b64(&self, data: &[u8], tag: &str) -> bool {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(tag)
            .is_ok_and(|tag| self.verify(data, &tag))
    }
}

/// `n` bytes from the system's secure random source.
pub fn random_bytes(n: usize) -> Result<Vec<u8>, anyhow::Error> {
    let mut bytes = vec![0u8; n];
    rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    Ok(bytes)
}

/// A random token of `n` bytes as URL-safe base64, for secrets shown to a client once.
pub fn random_token(n: usize) -> Result<String, anyhow::Error> {
    Ok(b64url(&random_bytes(n)?))
}

/// SHA-256 of `data` as lower-case hex (what is stored of a refresh token or API key).
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

/// Compares two stored digests in constant time.
pub fn same_secret(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_verifies_only_for_its_data_and_key() {
        let key = SigningKey::generate().unwrap();
        let tag = key.sign_b64(b"PUT\nimages/a.png");
        assert!(key.verify_b64(b"PUT\nimages/a.png", &tag));
        assert!(!key.verify_b64(b"PUT\nimages/b.png", &tag));
        assert!(!SigningKey::generate()
            .unwrap()
            .verify_b64(b"PUT\nimages/a.png", &tag));
        assert!(!key.verify_b64(b"PUT\nimages/a.png", "not base64!"));
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let key = SigningKey::from_bytes(b"super-secret-bytes".to_vec());
        assert_eq!(format!("{key:?}"), "SigningKey(redacted)");
    }
}
