//! Where the token signing keys live.
//!
//! - Local server: `<data dir>/keys/jwt/<kid>.pk8`, an Ed25519 key made on first start;
//!   [`rotate_local`] adds a newer one (which then signs) and drops all but the two newest.
//! - AWS: functions that issue tokens read the private keys from an SSM SecureString
//!   parameter named by `STOREFRONT_SIGNING_KEYS_PARAMETER` (their IAM policy names it, no
//!   other function's does); every other function verifies with the public JWKS that
//!   template.yaml passes in `STOREFRONT_JWKS`. An issuer signs only with keys that JWKS
//!   names, so a key added by `rotate-keys --aws` starts signing after the next deploy has
//!   published it to every verifier, never before.

use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::tokens::{KeyRing, LIVE_KEYS};
use crate::crypto::{b64url, b64url_decode};

/// The SecureString parameter's JSON: the live keys, oldest first.
#[derive(Serialize, Deserialize)]
pub struct StoredKeys {
    pub keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
pub struct StoredKey {
    pub kid: String,
    /// PKCS#8 DER, base64url.
    pub pkcs8: String,
}

impl StoredKeys {
    pub fn decode(&self) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
        self.keys
            .iter()
            .map(|k| {
                Ok((
                    k.kid.clone(),
                    b64url_decode(&k.pkcs8)
                        .with_context(|| format!("key {} is not base64url", k.kid))?,
                ))
            })
            .collect()
    }

    /// Adds a new key (the newest signs) and keeps the [`LIVE_KEYS`] newest.
    pub fn rotate(&mut self) -> anyhow::Result<()> {
        self.keys.push(StoredKey {
            kid: new_kid(),
            pkcs8: b64url(&KeyRing::generate_key()?),
        });
        let excess = self.keys.len().saturating_sub(LIVE_KEYS);
        self.keys.drain(..excess);
        Ok(())
    }
}

/// Key ids sort by creation time, so "newest" is the greatest.
fn new_kid() -> String {
    ulid::Ulid::new().to_string().to_lowercase()
}

fn local_dir(data_dir: &Path) -> std::path::PathBuf {
    data_dir.join("keys").join("jwt")
}

fn read_local(dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut keys = Vec::new();
    if !dir.exists() {
        return Ok(keys);
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "pk8") {
            let kid = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            keys.push((
                kid,
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
            ));
        }
    }
    keys.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(keys)
}

/// Loads the local keys, making the first one on first start.
pub fn load_local(data_dir: &Path) -> anyhow::Result<KeyRing> {
    let dir = local_dir(data_dir);
    if read_local(&dir)?.is_empty() {
        rotate_local(data_dir)?;
    }
    KeyRing::from_private_keys(&read_local(&dir)?)
}

/// Adds a new local key and deletes those past the two newest; returns the new key's id.
pub fn rotate_local(data_dir: &Path) -> anyhow::Result<String> {
    let dir = local_dir(data_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let kid = new_kid();
    crate::credentials::files::write_private(
        &dir.join(format!("{kid}.pk8")),
        &KeyRing::generate_key()?,
    )
    .with_context(|| format!("writing key {kid}"))?;
    let keys = read_local(&dir)?;
    for (old, _) in &keys[..keys.len().saturating_sub(LIVE_KEYS)] {
        std::fs::remove_file(dir.join(format!("{old}.pk8")))
            .with_context(|| format!("removing retired key {old}"))?;
    }
    Ok(kid)
}

/// The key ring of a Lambda function, from its environment (see the module comment).
/// The decrypted value of the SSM SecureString `parameter` (a provider's secret key).
pub async fn read_secure_string(
    sdk: &aws_config::SdkConfig,
    parameter: &str,
) -> anyhow::Result<secrecy::SecretString> {
    let client = aws_sdk_ssm::Client::from_conf(
        aws_sdk_ssm::config::Builder::from(sdk)
            .interceptor(crate::xray::XRay::from_env())
            .build(),
    );
    let output = client
        .get_parameter()
        .name(parameter)
        .with_decryption(true)
        .send()
        .await
        .with_context(|| format!("reading SSM parameter {parameter}"))?;
    let value = output
        .parameter()
        .and_then(|p| p.value())
        .filter(|v| !v.trim().is_empty())
        .with_context(|| format!("SSM parameter {parameter} is empty"))?;
    Ok(secrecy::SecretString::from(value.trim().to_owned()))
}

pub async fn load_aws(sdk: &aws_config::SdkConfig) -> anyhow::Result<KeyRing> {
    // Set but empty: `sam local invoke` with events/env-vars.json, away from any SSM. The
    // function signs with a key made for this process alone, whose tokens nothing else
    // verifies. template.yaml's parameter pattern makes this impossible on AWS.
    if std::env::var("STOREFRONT_SIGNING_KEYS_PARAMETER").is_ok_and(|p| p.trim().is_empty()) {
        tracing::warn!("STOREFRONT_SIGNING_KEYS_PARAMETER is empty: signing with a key made for this process alone (local use only)");
        return KeyRing::from_private_keys(&[(new_kid(), KeyRing::generate_key()?)]);
    }
    if let Ok(parameter) = std::env::var("STOREFRONT_SIGNING_KEYS_PARAMETER") {
        let client = aws_sdk_ssm::Client::from_conf(
            aws_sdk_ssm::config::Builder::from(sdk)
                .interceptor(crate::xray::XRay::from_env())
                .build(),
        );
        let output = client
            .get_parameter()
            .name(&parameter)
            .with_decryption(true)
            .send()
            .await
            .with_context(|| format!("reading the signing keys from SSM parameter {parameter}"))?;
        let value = output
            .parameter()
            .and_then(|p| p.value())
            .context("the signing keys parameter is empty")?;
        let stored: StoredKeys = serde_json::from_str(value)
            .context("the signing keys parameter is not Storefront's key JSON")?;
        return match std::env::var("STOREFRONT_JWKS") {
            Ok(jwks) => {
                KeyRing::from_published_private_keys(&stored.decode()?, &KeyRing::kids_of(&jwks))
            }
            Err(_) => KeyRing::from_private_keys(&stored.decode()?),
        };
    }
    match std::env::var("STOREFRONT_JWKS") {
        Ok(jwks) => KeyRing::from_jwks(&jwks),
        Err(_) => Ok(KeyRing::empty()),
    }
}

/// Rotates the keys kept in SSM: adds a new key to the SecureString `signing_parameter`
/// (keeping the two newest), encrypted under the KMS key `kms_key` (an id, ARN or alias),
/// and writes the matching public JWKS to `jwks_parameter`. Returns the new key id. Deploy
/// afterwards so every function reads the new JWKS.
pub async fn rotate_aws(
    ssm: &aws_sdk_ssm::Client,
    signing_parameter: &str,
    jwks_parameter: &str,
    kms_key: &str,
) -> anyhow::Result<String> {
    let current = match ssm
        .get_parameter()
        .name(signing_parameter)
        .with_decryption(true)
        .send()
        .await
    {
        Ok(output) => {
            let value = output
                .parameter()
                .and_then(|p| p.value())
                .unwrap_or("{\"keys\":[]}");
            serde_json::from_str(value)
                .context("the signing keys parameter is not Storefront's key JSON")?
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_parameter_not_found()) =>
        {
            StoredKeys { keys: Vec::new() }
        }
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("reading SSM parameter {signing_parameter}"))
            )
        }
    };
    let mut stored = current;
    stored.rotate()?;
    let ring = KeyRing::from_private_keys(&stored.decode()?)?;
    let kid = stored
        .keys
        .last()
        .map(|k| k.kid.clone())
        .unwrap_or_default();
    ssm.put_parameter()
        .name(signing_parameter)
        .value(serde_json::to_string(&stored)?)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        // Under the customer-managed key only the token-issuing functions may decrypt with.
        .key_id(kms_key)
        .overwrite(true)
        .send()
        .await
        .with_context(|| format!("writing SSM parameter {signing_parameter}"))?;
    ssm.put_parameter()
        .name(jwks_parameter)
        .value(ring.jwks().to_string())
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .with_context(|| format!("writing SSM parameter {jwks_parameter}"))?;
    Ok(kid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_keys_are_made_once_and_rotation_keeps_the_two_newest() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_local(dir.path()).unwrap();
        let again = load_local(dir.path()).unwrap();
        assert_eq!(first.jwks(), again.jwks(), "the key is not remade");
        std::thread::sleep(std::time::Duration::from_millis(2));
        rotate_local(dir.path()).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let newest = rotate_local(dir.path()).unwrap();
        assert_eq!(read_local(&local_dir(dir.path())).unwrap().len(), 2);
        let ring = load_local(dir.path()).unwrap();
        assert_eq!(ring.jwks()["keys"][1]["kid"], newest.as_str());
    }

    #[test]
    fn stored_keys_rotate_to_the_two_newest() {
        let mut stored = StoredKeys { keys: Vec::new() };
        for _ in 0..3 {
            stored.rotate().unwrap();
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert_eq!(stored.keys.len(), 2);
        assert!(KeyRing::from_private_keys(&stored.decode().unwrap()).is_ok());
    }
}
