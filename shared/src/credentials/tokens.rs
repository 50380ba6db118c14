//! Access tokens: short-lived JWTs signed with Ed25519 (EdDSA), the signing key named by
//! `kid` in the header and published at `/.well-known/jwks.json`, so any standard JWT
//! library can verify them. Two keys can be live at once: the newest signs, every live one
//! verifies, which is how keys rotate without logging anyone out.
//! <https://www.rfc-editor.org/rfc/rfc8037> (EdDSA in JOSE), <https://www.rfc-editor.org/rfc/rfc7517> (JWK)

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::crypto::b64url;

pub const ISSUER: &str = "storefront";
pub const AUDIENCE: &str = "storefront-api";
/// Access tokens live 15 minutes.
pub const ACCESS_TOKEN_SECONDS: i64 = 15 * 60;
/// How many keys verify at once: the active one and the one before it.
pub const LIVE_KEYS: usize = 2;

/// The claims of an access token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub tid: String,
    pub role: String,
    pub sid: String,
    pub exp: i64,
    pub iat: i64,
    pub iss: String,
    pub aud: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed, expired, or not signed by a live key")]
    Invalid,
    #[error("this function holds no signing key")]
    CannotSign,
    #[error("signing failed: {0}")]
    Signing(String),
}

struct Signer {
    kid: String,
    key: EncodingKey,
}

/// The live keys: the private one that signs (only in functions that issue tokens) and the
/// public ones that verify.
pub struct KeyRing {
    signer: Option<Signer>,
    verifiers: Vec<(String, DecodingKey)>,
    jwks: serde_json::Value,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field("signs_with", &self.signer.as_ref().map(|s| s.kid.as_str()))
            .field(
                "verifies",
                &self
                    .verifiers
                    .iter()
                    .map(|(kid, _)| kid)
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// A JWK of an Ed25519 public key.
fn jwk(kid: &str, public: &[u8]) -> serde_json::Value {
    serde_json::json!({ "kty": "OKP", "crv": "Ed25519", "x": b64url(public), "kid": kid, "alg": "EdDSA", "use": "sig" })
}

impl KeyRing {
    /// A ring from PKCS#8 Ed25519 keys, oldest first: the last one signs, the last
    /// [`LIVE_KEYS`] verify.
    pub fn from_private_keys(keys: &[(String, Vec<u8>)]) -> anyhow::Result<Self> {
        let live = &keys[keys.len().saturating_sub(LIVE_KEYS)..];
        let mut verifiers = Vec::new();
        let mut jwks = Vec::new();
        for (kid, pkcs8) in live {
            let pair = Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| {
                anyhow::anyhow!("signing key {kid} is not an Ed25519 PKCS#8 key: {e}")
            })?;
            let public = pair.public_key().as_ref().to_vec();
            verifiers.push((kid.clone(), DecodingKey::from_ed_der(&public)));
            jwks.push(jwk(kid, &public));
        }
        let signer = live.last().map(|(kid, pkcs8)| Signer {
            kid: kid.clone(),
            key: EncodingKey::from_ed_der(pkcs8),
        });
        anyhow::ensure!(signer.is_some(), "no signing key");
        Ok(Self {
            signer,
            verifiers,
            jwks: serde_json::json!({ "keys": jwks }),
        })
    }

    /// As [`Self::from_private_keys`], but only keys already published (named in
    /// `published`, the JWKS every function was deployed with) may sign: after a rotation
    /// the new key signs only once a deploy has told every verifier about it.
    pub fn from_published_private_keys(
        keys: &[(String, Vec<u8>)],
        published: &[String],
    ) -> anyhow::Result<Self> {
        let signable: Vec<_> = keys
            .iter()
            .filter(|(kid, _)| published.contains(kid))
            .cloned()
            .collect();
        anyhow::ensure!(
            !signable.is_empty(),
            "no signing key is in the published JWKS; run `sam deploy` after `rotate-keys --aws`"
        );
        Self::from_private_keys(&signable)
    }

    /// Whether this ring verifies no token at all (a function given no keys).
    pub fn verifies_nothing(&self) -> bool {
        self.verifiers.is_empty()
    }

    /// The key ids of a JWKS document.
    pub fn kids_of(jwks: &str) -> Vec<String> {
        serde_json::from_str::<serde_json::Value>(jwks)
            .ok()
            .and_then(|d| {
                d["keys"].as_array().map(|keys| {
                    keys.iter()
                        .filter_map(|k| k["kid"].as_str().map(str::to_owned))
                        .collect()
                })
            })
            .unwrap_or_default()
    }

    /// A ring that can only verify, from a published JWKS document.
    pub fn from_jwks(jwks: &str) -> anyhow::Result<Self> {
        let document: serde_json::Value =
            serde_json::from_str(jwks).map_err(|e| anyhow::anyhow!("JWKS is not JSON: {e}"))?;
        let mut verifiers = Vec::new();
        for key in document["keys"].as_array().into_iter().flatten() {
            let (Some(kid), Some(x)) = (key["kid"].as_str(), key["x"].as_str()) else {
                anyhow::bail!("a JWKS key lacks `kid` or `x`");
            };
            anyhow::ensure!(
                key["crv"] == "Ed25519" && key["kty"] == "OKP",
                "JWKS key {kid} is not Ed25519"
            );
            let decoding = DecodingKey::from_ed_components(x)
                .map_err(|e| anyhow::anyhow!("JWKS key {kid}: {e}"))?;
            verifiers.push((kid.to_owned(), decoding));
        }
        anyhow::ensure!(!verifiers.is_empty(), "the JWKS holds no key");
        Ok(Self {
            signer: None,
            verifiers,
            jwks: document,
        })
    }

    /// A ring that verifies nothing: for functions that take no tokens (health, workers).
    pub fn empty() -> Self {
        Self {
            signer: None,
            verifiers: Vec::new(),
            jwks: serde_json::json!({ "keys": [] }),
        }
    }

    /// A new Ed25519 key as PKCS#8 DER.
    pub fn generate_key() -> anyhow::Result<Vec<u8>> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let document = Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| anyhow::anyhow!("generating an Ed25519 key failed"))?;
        Ok(document.as_ref().to_vec())
    }

    /// The public keys as a JWKS document.
    pub fn jwks(&self) -> &serde_json::Value {
        &self.jwks
    }

    /// Signs an access token.
    pub fn issue(&self, claims: &Claims) -> Result<String, TokenError> {
        let signer = self.signer.as_ref().ok_or(TokenError::CannotSign)?;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(signer.kid.clone());
        jsonwebtoken::encode(&header, claims, &signer.key)
            .map_err(|e| TokenError::Signing(e.to_string()))
    }

    /// Verifies a token's signature (EdDSA only, by a live `kid`), issuer, audience and expiry.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        if header.alg != Algorithm::EdDSA {
            return Err(TokenError::Invalid);
        }
        let kid = header.kid.ok_or(TokenError::Invalid)?;
        let (_, key) = self
            .verifiers
            .iter()
            .find(|(k, _)| *k == kid)
            .ok_or(TokenError::Invalid)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        // Expiry is checked below against the injected clock, not the wall clock.
        validation.validate_exp = false;
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation)
            .map_err(|_| TokenError::Invalid)?;
        if data.claims.exp <= now || data.claims.iat > now + 60 {
            return Err(TokenError::Invalid);
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{b64url_decode, SigningKey};

    fn claims(now: i64) -> Claims {
        Claims {
            sub: "usr_1".into(),
            tid: "ten_1".into(),
            role: "owner".into(),
            sid: "ses_1".into(),
            iat: now,
            exp: now + ACCESS_TOKEN_SECONDS,
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
        }
    }

    fn ring(kids: &[&str]) -> KeyRing {
        let keys: Vec<_> = kids
            .iter()
            .map(|k| (k.to_string(), KeyRing::generate_key().unwrap()))
            .collect();
        KeyRing::from_private_keys(&keys).unwrap()
    }

    /// A fresh key and the ring it alone makes under `kid`, so a test can sign with the
    /// live key outside [`KeyRing::issue`].
    fn key_and_ring(kid: &str) -> (Vec<u8>, KeyRing) {
        let pkcs8 = KeyRing::generate_key().unwrap();
        let ring = KeyRing::from_private_keys(&[(kid.to_owned(), pkcs8.clone())]).unwrap();
        (pkcs8, ring)
    }

    /// An EdDSA token signed with `pkcs8` whose header names `kid` (or no kid at all).
    fn signed_with(pkcs8: &[u8], kid: Option<&str>, claims: &Claims) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_ed_der(pkcs8)).unwrap()
    }

    /// An HS256 token naming `kid`, its MAC computed by hand over `header.payload` with
    /// `secret`: what anyone who has read the JWKS can make.
    fn hs256(secret: &[u8], kid: &str, claims: &Claims) -> String {
        let header = serde_json::json!({ "alg": "HS256", "typ": "JWT", "kid": kid });
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(serde_json::to_string(claims).unwrap().as_bytes())
        );
        let tag = SigningKey::from_bytes(secret.to_vec()).sign_b64(input.as_bytes());
        format!("{input}.{tag}")
    }

    #[track_caller]
    fn assert_refused(ring: &KeyRing, token: &str, now: i64, what: &str) {
        let verdict = ring.verify(token, now);
        assert!(
            matches!(verdict, Err(TokenError::Invalid)),
            "{what} should be refused as invalid, got {verdict:?}"
        );
    }

    #[test]
    fn a_token_verifies_until_it_expires() {
        let ring = ring(&["k1"]);
        let token = ring.issue(&claims(1000)).unwrap();
        assert_eq!(ring.verify(&token, 1001).unwrap(), claims(1000));
        assert_refused(
            &ring,
            &token,
            1000 + ACCESS_TOKEN_SECONDS,
            "a token at its expiry",
        );
    }

    #[test]
    fn a_token_issued_more_than_a_minute_ahead_of_the_clock_is_refused() {
        let ring = ring(&["k1"]);
        let token = ring.issue(&claims(1000)).unwrap();
        assert!(
            ring.verify(&token, 940).is_ok(),
            "a minute of clock skew is allowed"
        );
        assert_refused(&ring, &token, 939, "a token from the future");
    }

    #[test]
    fn the_public_jwks_alone_verifies_and_cannot_sign() {
        let ring = ring(&["k1"]);
        let token = ring.issue(&claims(1000)).unwrap();
        let public = KeyRing::from_jwks(&ring.jwks().to_string()).unwrap();
        assert!(public.verify(&token, 1001).is_ok());
        assert!(matches!(
            public.issue(&claims(1000)),
            Err(TokenError::CannotSign)
        ));
        assert!(
            !ring.jwks().to_string().contains("\"d\""),
            "no private part is published"
        );
    }

    #[test]
    fn after_rotation_old_tokens_verify_until_their_key_leaves_the_ring() {
        let k1 = ("k1".to_string(), KeyRing::generate_key().unwrap());
        let k2 = ("k2".to_string(), KeyRing::generate_key().unwrap());
        let k3 = ("k3".to_string(), KeyRing::generate_key().unwrap());
        let old = KeyRing::from_private_keys(std::slice::from_ref(&k1))
            .unwrap()
            .issue(&claims(1000))
            .unwrap();
        let rotated = KeyRing::from_private_keys(&[k1.clone(), k2.clone()]).unwrap();
        assert!(
            rotated.verify(&old, 1001).is_ok(),
            "the previous key still verifies"
        );
        let new = rotated.issue(&claims(1000)).unwrap();
        assert_eq!(
            jsonwebtoken::decode_header(&new).unwrap().kid.as_deref(),
            Some("k2"),
            "the newest key signs"
        );
        let twice = KeyRing::from_private_keys(&[k1, k2, k3]).unwrap();
        assert_refused(
            &twice,
            &old,
            1001,
            "two rotations later, a token of the first key",
        );
    }

    #[test]
    fn tampered_unsigned_and_foreign_tokens_are_refused() {
        let ring = ring(&["k1"]);
        let token = ring.issue(&claims(1000)).unwrap();
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut forged = claims(1000);
        forged.tid = "ten_2".into();
        parts[1] = b64url(serde_json::to_string(&forged).unwrap().as_bytes());
        assert_refused(&ring, &parts.join("."), 1001, "a changed payload");
        let none = format!(
            "{}.{}.",
            b64url(br#"{"alg":"none","typ":"JWT","kid":"k1"}"#),
            parts[1]
        );
        assert_refused(&ring, &none, 1001, "alg=none over a changed payload");
        let other = self::ring(&["k1"]).issue(&claims(1000)).unwrap();
        assert_refused(&ring, &other, 1001, "another ring's key under the same kid");
        assert_refused(&ring, "not.a.token", 1001, "garbage");
    }

    #[test]
    fn a_token_from_another_issuer_is_refused_though_a_live_key_signed_it() {
        let ring = ring(&["k1"]);
        let mut foreign = claims(1000);
        foreign.iss = "someone-else".into();
        let token = ring.issue(&foreign).unwrap();
        assert_refused(&ring, &token, 1001, "a token from another issuer");
    }

    #[test]
    fn a_token_for_another_audience_is_refused_though_a_live_key_signed_it() {
        let ring = ring(&["k1"]);
        let mut foreign = claims(1000);
        foreign.aud = "another-api".into();
        let token = ring.issue(&foreign).unwrap();
        assert_refused(&ring, &token, 1001, "a token for another audience");
    }

    #[test]
    fn a_token_naming_no_live_kid_is_refused_though_the_live_key_signed_it() {
        let (pkcs8, ring) = key_and_ring("k1");
        assert!(
            ring.verify(&signed_with(&pkcs8, Some("k1"), &claims(1000)), 1001)
                .is_ok(),
            "the same key under its own kid verifies, so only the kid differs below"
        );
        assert_refused(
            &ring,
            &signed_with(&pkcs8, Some("k0"), &claims(1000)),
            1001,
            "an unknown kid",
        );
        assert_refused(
            &ring,
            &signed_with(&pkcs8, None, &claims(1000)),
            1001,
            "a header without a kid",
        );
    }

    #[test]
    fn an_alg_none_token_naming_the_live_kid_is_refused() {
        let ring = ring(&["k1"]);
        let genuine = ring.issue(&claims(1000)).unwrap();
        let payload = genuine.split('.').nth(1).unwrap();
        for alg in ["none", "None", "NONE"] {
            let header = serde_json::json!({ "alg": alg, "typ": "JWT", "kid": "k1" });
            let unsigned = format!("{}.{payload}.", b64url(header.to_string().as_bytes()));
            assert_refused(&ring, &unsigned, 1001, &format!("alg={alg}"));
        }
    }

    /// The algorithm-confusion attack: the published Ed25519 key used as an HMAC secret.
    /// <https://www.rfc-editor.org/rfc/rfc8725#section-2.1>
    #[test]
    fn an_hs256_token_keyed_with_the_published_public_key_is_refused() {
        let ring = ring(&["k1"]);
        let x = ring.jwks()["keys"][0]["x"].as_str().unwrap().to_owned();
        let raw = b64url_decode(&x).unwrap();
        assert_eq!(raw.len(), 32, "`x` is the raw Ed25519 public key");
        for (secret, what) in [
            (raw.as_slice(), "HS256 keyed with the decoded public key"),
            (x.as_bytes(), "HS256 keyed with the base64url `x` string"),
        ] {
            let forged = hs256(secret, "k1", &claims(1000));
            // The forgery is sound HS256: a verifier that let the header choose the
            // algorithm would accept it, so only the EdDSA pin can refuse it.
            let mut trusting = Validation::new(Algorithm::HS256);
            trusting.set_issuer(&[ISSUER]);
            trusting.set_audience(&[AUDIENCE]);
            trusting.validate_exp = false;
            assert!(
                jsonwebtoken::decode::<Claims>(
                    &forged,
                    &DecodingKey::from_secret(secret),
                    &trusting
                )
                .is_ok(),
                "{what} is a well-formed forgery"
            );
            assert_refused(&ring, &forged, 1001, what);
        }
    }
}
