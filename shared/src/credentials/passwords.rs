//! Password hashing: argon2id with OWASP's minimum parameters (19 MiB, 2 passes, 1 lane),
//! run off the async executor. A login for an unknown account verifies against a dummy hash,
//! so it costs the same time as a wrong password (no account enumeration by timing).
//! <https://cheatsheetseries.owasp.org/cheatsheets/Password_Storage_Cheat_Sheet.html>
//!
//! What is hashed is the password in Unicode normalisation form NFKC, as NIST SP 800-63B
//! §5.1.1.2 asks: "é" typed as one code point or as "e" and a combining accent, or a
//! full-width digit from an East Asian keyboard, is the same password at signup and login.

use anyhow::Context as _;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use unicode_normalization::UnicodeNormalization as _;
use zeroize::Zeroizing;

use crate::domain::Password;

/// Memory in KiB, passes and lanes; measured in the README's benchmark table.
pub const MEMORY_KIB: u32 = 19 * 1024;
pub const PASSES: u32 = 2;
pub const LANES: u32 = 1;

/// Makes glibc return argon2's 19 MiB working memory to the system after each hash.
///
/// glibc serves a large allocation with `mmap` and unmaps it on free, but after the first
/// such free it raises its threshold to that size, so later 19 MiB blocks come from the
/// heap arena of whichever blocking thread ran the hash and stay there: measured, a
/// signup function grew from 33 MiB to 432 MiB of RSS over 200 invocations. A fixed
/// threshold keeps large blocks on `mmap`, and RSS flat.
fn keep_large_blocks_unmapped() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        // SAFETY: mallopt only changes allocator tuning; it is called once, before the
        // first hash, and its result (1 on success) needs no handling: on failure glibc
        // keeps its default behaviour.
        ONCE.call_once(|| unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
        });
    }
}

fn hasher() -> anyhow::Result<Argon2<'static>> {
    keep_large_blocks_unmapped();
    let params = Params::new(MEMORY_KIB, PASSES, LANES, None)
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The bytes that are hashed: the password in NFKC, wiped when dropped.
fn normalised(password: &str) -> Zeroizing<String> {
    Zeroizing::new(password.nfkc().collect())
}

fn hash_blocking(password: &str) -> anyhow::Result<String> {
    let password = normalised(password);
    let salt_bytes = crate::crypto::random_bytes(16)?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    let hash = hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing a password: {e}"))?;
    Ok(hash.to_string())
}

fn verify_blocking(password: &str, phc: &str) -> anyhow::Result<bool> {
    let password = normalised(password);
    let parsed = PasswordHash::new(phc)
        .map_err(|e| anyhow::anyhow!("stored password hash is malformed: {e}"))?;
    Ok(hasher()?
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) for storage.
#[tracing::instrument(skip_all)]
pub async fn hash(password: &Password) -> anyhow::Result<String> {
    let password = password.expose().to_owned();
    tokio::task::spawn_blocking(move || hash_blocking(&password))
        .await
        .context("password hasher stopped")?
}

/// Whether `password` matches the stored hash.
#[tracing::instrument(skip_all)]
pub async fn verify(password: &str, phc: &str) -> anyhow::Result<bool> {
    let (password, phc) = (password.to_owned(), phc.to_owned());
    tokio::task::spawn_blocking(move || verify_blocking(&password, &phc))
        .await
        .context("password verifier stopped")?
}

/// A hash, with the same parameters, of a random password nobody knows: what a login to an
/// unknown account verifies against. Fixed in the code so that even the first such login in
/// a fresh process costs one verification, like a login to a known account.
const DUMMY_PHC: &str = "$argon2id$v=19$m=19456,t=2,p=1$rhxUKLkTG04KBi/7uF8GSw$Qqefjkbldtm1YCetxAdTeeKUcvdOl1mq/pyp198jUeo";

/// Spends the work of one verification and answers "no": for logins to unknown accounts.
pub async fn verify_nothing(password: &str) -> anyhow::Result<bool> {
    verify(password, DUMMY_PHC).await.map(|_| false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_password_verifies_however_its_unicode_was_composed() {
        // "café ｐａｓｓ１" with a precomposed é and full-width letters and digit, and
        // with "e" + COMBINING ACUTE ACCENT and ASCII letters and digit.
        let typed = "caf\u{e9} \u{ff50}\u{ff41}\u{ff53}\u{ff53}\u{ff11}";
        let other_keyboard = "cafe\u{301} pass1";
        let phc = hash(&Password::parse(typed).unwrap()).await.unwrap();
        assert!(verify(other_keyboard, &phc).await.unwrap());
        assert!(verify(typed, &phc).await.unwrap());
        assert!(
            !verify("cafe pass1", &phc).await.unwrap(),
            "the accent still counts"
        );
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let password = Password::parse("correct horse battery").unwrap();
        let phc = hash(&password).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify("correct horse battery", &phc).await.unwrap());
        assert!(!verify("correct horse battery!", &phc).await.unwrap());
        assert!(!phc.contains("correct"), "the hash holds no plain text");
        assert!(!verify_nothing("anything at all").await.unwrap());
        assert!(
            DUMMY_PHC.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "the dummy costs what a real hash costs"
        );
    }
}
