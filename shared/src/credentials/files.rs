//! Private key files of a local data directory: read, or made on first start, owner-only,
//! and written whole or not at all.

use std::path::Path;

use anyhow::Context as _;
use secrecy::SecretString;
use zeroize::Zeroizing;

use crate::crypto::SigningKey;

/// Reads a 32-byte key from `path`, creating it (readable by the owner only) on first start.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<SigningKey> {
    load_or_create(
        path,
        "a 32-byte key",
        |bytes| (bytes.len() == 32).then(|| SigningKey::from_bytes(bytes)),
        || {
            let key = SigningKey::generate()?;
            let bytes = Zeroizing::new(key.expose().to_vec());
            Ok((key, bytes))
        },
    )
}

/// Where a data directory keeps its generated payment webhook secret, under `keys/`.
pub const PAYMENT_WEBHOOK_SECRET_FILE: &str = "payment-webhook.secret";

/// Reads a webhook secret (`whsec_…`) from `path`, creating it (readable by the owner only)
/// on first start, so the payment provider stays configured across restarts.
pub fn load_or_create_webhook_secret(path: &Path) -> anyhow::Result<SecretString> {
    load_or_create(
        path,
        "a `whsec_` secret",
        |bytes| {
            let text = String::from_utf8(bytes).ok()?;
            let secret = text.trim();
            secret
                .starts_with("whsec_")
                .then(|| SecretString::from(secret.to_owned()))
        },
        || {
            let secret = Zeroizing::new(format!("whsec_{}", crate::crypto::random_token(32)?));
            let bytes = Zeroizing::new(secret.as_bytes().to_vec());
            Ok((SecretString::from(secret.as_str().to_owned()), bytes))
        },
    )
}

/// Reads the private file at `path` with `decode` (`None`: it does not hold `what`), or, on
/// first start, makes a value with `make` and writes its bytes there, owner-readable only.
fn load_or_create<T>(
    path: &Path,
    what: &str,
    decode: impl FnOnce(Vec<u8>) -> Option<T>,
    make: impl FnOnce() -> anyhow::Result<(T, Zeroizing<Vec<u8>>)>,
) -> anyhow::Result<T> {
    match std::fs::read(path) {
        Ok(bytes) => {
            return decode(bytes).with_context(|| {
                format!(
                    "{} does not hold {what}; delete it to make a new one",
                    path.display()
                )
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let (value, bytes) = make()?;
    write_private(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(value)
}

/// Writes a new file readable by its owner only (keys), whole or not at all: the bytes go
/// to a temporary file that is synced and then linked into place, so a crash half-way
/// leaves no truncated key to stop the next start. Like `create_new`, it refuses to
/// replace a file that exists: a key is never overwritten.
#[cfg(unix)]
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let partial = path.with_extension(format!("partial-{}", std::process::id()));
    // Left by a crash of an earlier process with this id: never a file anyone reads.
    let _ = std::fs::remove_file(&partial);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    // A hard link fails if `path` exists, where a rename would silently replace it.
    let linked = std::fs::hard_link(&partial, path);
    let _ = std::fs::remove_file(&partial);
    linked?;
    // The link is durable once the directory holding it is.
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::File::open(dir)?.sync_all(),
        _ => Ok(()),
    }
}

#[cfg(not(unix))]
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
