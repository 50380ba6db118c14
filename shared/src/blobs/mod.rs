//! The `Blobs` port: object storage with presigned URLs, in S3's shape.
//!
//! Clients upload and download directly with presigned URLs, so large bodies never pass
//! through a Lambda. A presigned PUT binds the content type and length into its signature:
//! an upload of another type or size is refused by the store itself.

pub mod embedded;
pub mod s3;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};

/// The longest a presigned URL may live (S3's limit for SigV4 is seven days).
pub const MAX_PRESIGN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// A request a client can make without credentials until `expires_at`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Presigned {
    pub method: String,
    pub url: String,
    /// Headers the client must send exactly as given.
    pub headers: BTreeMap<String, String>,
    pub expires_at: DateTime<Utc>,
}

/// What the store knows of an object without reading it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobMeta {
    pub content_type: String,
    pub content_length: u64,
}

/// An object's bytes and type, and how long it may be cached (`Cache-Control`), if it said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub content_type: String,
    pub cache_control: Option<String>,
    pub bytes: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("invalid blob request: {0}")]
    Invalid(String),
    #[error(transparent)]
    Backend(#[from] anyhow::Error),
}

/// Object keys are relative paths of safe characters: no `..`, no leading `/`, no empty segment.
pub fn validate_key(key: &str) -> Result<(), BlobError> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "-_./=".contains(c);
    let ok = !key.is_empty()
        && key.len() <= 512
        && key.chars().all(ok_char)
        && key
            .split('/')
            .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if ok {
        Ok(())
    } else {
        Err(BlobError::Invalid(format!(
            "`{key}` is not a valid object key"
        )))
    }
}

pub(crate) fn validate_ttl(ttl: Duration) -> Result<(), BlobError> {
    if ttl.is_zero() || ttl > MAX_PRESIGN_TTL {
        return Err(BlobError::Invalid(format!(
            "presign lifetime {ttl:?} is out of range"
        )));
    }
    Ok(())
}

/// Object storage.
#[async_trait]
pub trait Blobs: Send + Sync {
    /// A PUT that stores exactly `content_length` bytes of `content_type` at `key`.
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        ttl: Duration,
    ) -> Result<Presigned, BlobError>;
    /// A GET of the object at `key`.
    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<Presigned, BlobError>;
    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError>;
    async fn get(&self, key: &str) -> Result<Option<Blob>, BlobError>;
    /// Stores an object of `content_type`; `cache_control` is the `Cache-Control` it is
    /// served with (by S3, and so by CloudFront, whose edges keep it that long).
    async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
        cache_control: Option<&str>,
    ) -> Result<(), BlobError>;
    /// Deletes the object; deleting a missing object is not an error.
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
}

/// The bucket of a function its template gives none (no `STOREFRONT_BUCKET`): every call
/// fails with a message naming the missing setting.
pub struct Unconfigured(pub &'static str);

impl Unconfigured {
    fn error(&self) -> BlobError {
        BlobError::Backend(anyhow::anyhow!(
            "this function is not configured for a bucket ({} is unset)",
            self.0
        ))
    }
}

#[async_trait]
impl Blobs for Unconfigured {
    async fn presign_put(
        &self,
        _: &str,
        _: &str,
        _: u64,
        _: Duration,
    ) -> Result<Presigned, BlobError> {
        Err(self.error())
    }
    async fn presign_get(&self, _: &str, _: Duration) -> Result<Presigned, BlobError> {
        Err(self.error())
    }
    async fn head(&self, _: &str) -> Result<Option<BlobMeta>, BlobError> {
        Err(self.error())
    }
    async fn get(&self, _: &str) -> Result<Option<Blob>, BlobError> {
        Err(self.error())
    }
    async fn put(
        &self,
        _: &str,
        _: bytes::Bytes,
        _: &str,
        _: Option<&str>,
    ) -> Result<(), BlobError> {
        Err(self.error())
    }
    async fn delete(&self, _: &str) -> Result<(), BlobError> {
        Err(self.error())
    }
}
