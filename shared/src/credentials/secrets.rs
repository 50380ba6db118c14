//! The opaque secrets handed to clients, and what is stored of them (a SHA-256, never the
//! secret): refresh tokens and API keys.

use crate::crypto::{random_token, sha256_hex};
use crate::domain::{SessionId, TenantId, TypedId as _, UserId};

pub const API_KEY_PREFIX: &str = "sk_";

/// A refresh token names its session and carries a 256-bit secret:
/// `<tenant id>.<user id>.<session id>.<secret>`.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub session_id: SessionId,
    secret: String,
}

impl std::fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RefreshToken({}, secret redacted)", self.session_id)
    }
}

impl RefreshToken {
    pub fn generate(
        tenant_id: &TenantId,
        user_id: &UserId,
        session_id: &SessionId,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            tenant_id: tenant_id.clone(),
            user_id: user_id.clone(),
            session_id: session_id.clone(),
            secret: random_token(32)?,
        })
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let mut parts = raw.split('.');
        let (t, u, s, secret) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || secret.len() < 32 {
            return None;
        }
        Some(Self {
            tenant_id: TenantId::parse(t).ok()?,
            user_id: UserId::parse(u).ok()?,
            session_id: SessionId::parse(s).ok()?,
            secret: secret.into(),
        })
    }

    /// What the session stores to recognise this token.
    pub fn hash(&self) -> String {
        sha256_hex(self.secret.as_bytes())
    }

    /// The token as the client receives it.
    pub fn expose(&self) -> String {
        format!(
            "{}.{}.{}.{}",
            self.tenant_id, self.user_id, self.session_id, self.secret
        )
    }
}

/// An API key: `sk_<prefix>_<secret>`, where the prefix is the key id's ULID in lower case
/// (26 characters). The prefix finds the stored key (and is shown in listings); the whole
/// key's hash is what is compared.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret {
    pub prefix: String,
    key: String,
}

impl std::fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ApiKeySecret({}, redacted)", self.prefix)
    }
}

/// The lookup prefix of the API key with id `key_<ULID>`.
pub fn api_key_prefix(key_id: &str) -> Option<String> {
    let ulid = key_id.strip_prefix("key_")?;
    (ulid.len() == 26 && ulid.bytes().all(|b| b.is_ascii_alphanumeric()))
        .then(|| ulid.to_ascii_lowercase())
}

impl ApiKeySecret {
    /// A new key for the key id `key_<ULID>`.
    pub fn generate(key_id: &str) -> anyhow::Result<Self> {
        let prefix = api_key_prefix(key_id)
            .ok_or_else(|| anyhow::anyhow!("`{key_id}` is not an API key id"))?;
        let key = format!("{API_KEY_PREFIX}{prefix}_{}", random_token(32)?);
        Ok(Self { prefix, key })
    }

    pub fn parse(raw: &str) -> Option<Self> {
        let rest = raw.strip_prefix(API_KEY_PREFIX)?;
        let (prefix, secret) = rest.split_once('_')?;
        let valid_prefix = prefix.len() == 26
            && prefix
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_lowercase());
        (valid_prefix && secret.len() >= 32 && raw.len() <= 128).then(|| Self {
            prefix: prefix.to_owned(),
            key: raw.to_owned(),
        })
    }

    pub fn hash(&self) -> String {
        sha256_hex(self.key.as_bytes())
    }

    pub fn expose(&self) -> &str {
        &self.key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_token_round_trips_and_hides_its_secret() {
        let token = RefreshToken::generate(
            &TenantId::parse("ten_01JD0000000000000000000000").unwrap(),
            &UserId::parse("usr_01JD0000000000000000000000").unwrap(),
            &SessionId::parse("ses_01JD0000000000000000000000").unwrap(),
        )
        .unwrap();
        let parsed = RefreshToken::parse(&token.expose()).unwrap();
        assert_eq!(parsed, token);
        assert_eq!(parsed.hash(), token.hash());
        assert!(!format!("{token:?}").contains(&token.secret));
        let secret = "s".repeat(43);
        assert!(RefreshToken::parse("ten_01JD0000000000000000000000.usr_01JD0000000000000000000000.ses_01JD0000000000000000000000").is_none());
        assert!(RefreshToken::parse(&format!("ten_01JD0000000000000000000000.usr_01JD0000000000000000000000.ses_01JD0000000000000000000000.{}", &secret[..10])).is_none());
        assert!(
            RefreshToken::parse(&format!(
                "ten_x.usr_01JD0000000000000000000000.ses_01JD0000000000000000000000.{secret}"
            ))
            .is_none(),
            "the ids in a token are typed"
        );
        assert!(RefreshToken::parse(&format!("ten_01JD0000000000000000000000.usr_01JD0000000000000000000000.ses_01JD0000000000000000000000.{secret}")).is_some());
    }

    #[test]
    fn an_api_key_round_trips_and_malformed_ones_are_refused() {
        let key = ApiKeySecret::generate("key_01JD0000000000000000000000").unwrap();
        assert!(key.expose().starts_with("sk_01jd0000000000000000000000_"));
        assert_eq!(ApiKeySecret::parse(key.expose()).unwrap(), key);
        assert!(ApiKeySecret::generate("usr_01JD0000000000000000000000").is_err());
        let long_secret = "a".repeat(43);
        assert!(
            ApiKeySecret::parse(&format!("sk_01jd00000000000000000000!0_{long_secret}")).is_none()
        );
        assert!(ApiKeySecret::parse("sk_01jd0000000000000000000000_short").is_none());
        assert!(
            ApiKeySecret::parse(&format!("pk_01jd0000000000000000000000_{long_secret}")).is_none()
        );
        assert_eq!(
            api_key_prefix("key_01JD0000000000000000000000").as_deref(),
            Some("01jd0000000000000000000000")
        );
        assert_eq!(api_key_prefix("key_short"), None);
    }
}
