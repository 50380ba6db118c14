//! The embedded `Blobs` adapter: files under the data directory, and presigned URLs that the
//! local server honours exactly as S3 does.
//!
//! A presigned URL carries its method, expiry, content type and content length in the query
//! string, and an HMAC-SHA256 over all of them and the key. The local server's `/_blobs/`
//! route checks that signature and that the request matches what was signed before it
//! stores a byte: a wrong type, a wrong length, a bad signature or a past expiry is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{validate_key, validate_ttl, Blob, BlobError, BlobMeta, Blobs, Presigned};
use crate::clock::Clock;
use crate::crypto::SigningKey;
use crate::queue::{Outgoing, Queue};

/// The path under which the local server serves presigned blob URLs.
pub const ROUTE_PREFIX: &str = "/_blobs/";

/// Why a presigned request was refused (each becomes a 403, as S3 answers), or
/// [`PresignRefusal::StoreFailed`] when the store itself failed.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum PresignRefusal {
    #[error("the URL is not presigned or its signature does not match")]
    BadSignature,
    #[error("the presigned URL has expired")]
    Expired,
    #[error("the presigned URL is for another method")]
    WrongMethod,
    #[error("Content-Type does not match the signed content type")]
    WrongContentType,
    #[error("the body length does not match the signed Content-Length")]
    WrongContentLength,
    /// Not a refusal: the store itself failed (a 500, logged).
    #[error("the blob store failed")]
    StoreFailed,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    content_type: String,
    content_length: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cache_control: Option<String>,
}

/// A presigned PUT whose URL and headers checked out: its body may now be read, up to
/// `length` bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmittedPut {
    key: String,
    content_type: String,
    /// The signed length: exactly what the body must hold.
    pub length: u64,
}

/// Objects as files, in `<dir>/objects/<key>` with metadata in `<dir>/meta/<key>.json`.
#[derive(Clone)]
pub struct EmbeddedBlobs {
    dir: PathBuf,
    base_url: String,
    key: SigningKey,
    clock: Arc<dyn Clock>,
    notifications: Option<Notifications>,
}

/// Where the store tells of new objects under a prefix, as a bucket's event notification
/// configuration does (template.yaml's `NotificationConfiguration`): an S3 event
/// notification message, in S3's own shape, on a queue.
#[derive(Clone)]
struct Notifications {
    prefix: String,
    bucket: String,
    queue: Arc<dyn Queue>,
}

/// The presigned parameters a URL carries.
struct Signed {
    method: String,
    expires: i64,
    content_type: String,
    content_length: String,
    signature: String,
}

fn string_to_sign(
    method: &str,
    key: &str,
    expires: i64,
    content_type: &str,
    length: &str,
) -> String {
    format!("{method}\n{key}\n{expires}\n{content_type}\n{length}")
}

impl EmbeddedBlobs {
    /// Blobs under `dir`, presigned for a server reachable at `base_url` (no trailing `/`).
    pub fn open(
        dir: &Path,
        base_url: &str,
        key: SigningKey,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        for sub in ["objects", "meta", "tmp"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("creating {}", dir.join(sub).display()))?;
        }
        Ok(Self {
            dir: dir.to_owned(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            key,
            clock,
            notifications: None,
        })
    }

    /// Sends an S3 `ObjectCreated:Put` notification to `queue` for each object written
    /// under `prefix`, as if from a bucket named `bucket`.
    pub fn notify(mut self, prefix: &str, bucket: &str, queue: Arc<dyn Queue>) -> Self {
        self.notifications = Some(Notifications {
            prefix: prefix.to_owned(),
            bucket: bucket.to_owned(),
            queue,
        });
        self
    }

    /// Tells again of every object under the notified prefix: what the local server does at
    /// start, so an upload whose notification was lost (the process stopped between storing
    /// it and queueing its message) is still processed. Uploads are deleted once processed,
    /// so what remains is waiting; a message twice is harmless, the worker is idempotent.
    /// Returns how many it told of.
    pub async fn announce_waiting(&self) -> anyhow::Result<usize> {
        let Some(notifications) = &self.notifications else {
            return Ok(0);
        };
        let objects = self.dir.join("objects");
        let root = objects.join(&notifications.prefix);
        let found = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<(String, u64)>> {
            let mut found = Vec::new();
            let mut dirs = vec![root];
            while let Some(dir) = dirs.pop() {
                let entries = match std::fs::read_dir(&dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
                };
                for entry in entries {
                    let entry = entry?;
                    let path = entry.path();
                    if entry.file_type()?.is_dir() {
                        dirs.push(path);
                    } else if let Ok(relative) = path.strip_prefix(&objects) {
                        let key = relative.to_string_lossy().replace('\\', "/");
                        found.push((key, entry.metadata()?.len()));
                    }
                }
            }
            Ok(found)
        })
        .await
        .context("listing waiting uploads stopped")??;
        for (key, size) in &found {
            self.notify_created(key, usize::try_from(*size).unwrap_or(usize::MAX))
                .await?;
        }
        Ok(found.len())
    }

    /// Tells of a new object, when it is under the notified prefix.
    async fn notify_created(&self, key: &str, size: usize) -> anyhow::Result<()> {
        let Some(notifications) = &self.notifications else {
            return Ok(());
        };
        if !key.starts_with(&notifications.prefix) {
            return Ok(());
        }
        let now = self.clock.now();
        let event = s3_notification(&notifications.bucket, key, size, now);
        notifications
            .queue
            .send(Outgoing::new(event.to_string()))
            .await
            .with_context(|| format!("notifying the upload of {key}"))?;
        Ok(())
    }

    fn object_path(&self, key: &str) -> PathBuf {
        self.dir.join("objects").join(key)
    }

    fn meta_path(&self, key: &str) -> PathBuf {
        self.dir.join("meta").join(format!("{key}.json"))
    }

    fn presign(
        &self,
        method: &str,
        key: &str,
        ttl: Duration,
        content_type: &str,
        length: &str,
    ) -> Result<Presigned, BlobError> {
        validate_key(key)?;
        validate_ttl(ttl)?;
        let expires_at = self.clock.now()
            + chrono::Duration::from_std(ttl).map_err(|e| BlobError::Invalid(e.to_string()))?;
        let expires = expires_at.timestamp();
        let signature = self
            .key
            .sign_b64(string_to_sign(method, key, expires, content_type, length).as_bytes());
        let mut url = url::Url::parse(&format!("{}{ROUTE_PREFIX}{key}", self.base_url))
            .map_err(|e| BlobError::Backend(anyhow::anyhow!("bad blob base URL: {e}")))?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("X-Method", method)
                .append_pair("X-Expires", &expires.to_string());
            if !content_type.is_empty() {
                query
                    .append_pair("X-Content-Type", content_type)
                    .append_pair("X-Content-Length", length);
            }
            query.append_pair("X-Signature", &signature);
        }
        let mut headers = BTreeMap::new();
        if !content_type.is_empty() {
            headers.insert("content-type".to_owned(), content_type.to_owned());
            headers.insert("content-length".to_owned(), length.to_owned());
        }
        Ok(Presigned {
            method: method.to_owned(),
            url: url.to_string(),
            headers,
            expires_at,
        })
    }

    /// Checks a presigned request's query string against its method and key.
    fn verify(&self, method: &str, key: &str, query: &str) -> Result<Signed, PresignRefusal> {
        let signed = parse_signed(query).ok_or(PresignRefusal::BadSignature)?;
        let data = string_to_sign(
            &signed.method,
            key,
            signed.expires,
            &signed.content_type,
            &signed.content_length,
        );
        if !self.key.verify_b64(data.as_bytes(), &signed.signature) {
            return Err(PresignRefusal::BadSignature);
        }
        if signed.method != method {
            return Err(PresignRefusal::WrongMethod);
        }
        if signed.expires <= self.clock.now().timestamp() {
            return Err(PresignRefusal::Expired);
        }
        Ok(signed)
    }

    /// Checks a presigned PUT from its URL and headers alone, before a byte of its body is
    /// read: the signature, method, expiry, content type, and a declared `Content-Length`
    /// equal to the signed one. What it admits says how many bytes the body may have.
    pub fn admit_put(
        &self,
        key: &str,
        query: &str,
        content_type: Option<&str>,
        content_length: Option<u64>,
    ) -> Result<AdmittedPut, PresignRefusal> {
        validate_key(key).map_err(|_| PresignRefusal::BadSignature)?;
        let signed = self.verify("PUT", key, query)?;
        if content_type != Some(signed.content_type.as_str()) {
            return Err(PresignRefusal::WrongContentType);
        }
        let length = signed
            .content_length
            .parse::<u64>()
            .map_err(|_| PresignRefusal::BadSignature)?;
        if content_length != Some(length) {
            return Err(PresignRefusal::WrongContentLength);
        }
        Ok(AdmittedPut {
            key: key.to_owned(),
            content_type: signed.content_type,
            length,
        })
    }

    /// Stores the body of an admitted PUT, which must be exactly the signed length.
    pub async fn store_put(&self, put: AdmittedPut, body: Bytes) -> Result<(), PresignRefusal> {
        if body.len() as u64 != put.length {
            return Err(PresignRefusal::WrongContentLength);
        }
        let key = put.key.as_str();
        self.write(key, body, &put.content_type, None)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, key, "storing a presigned upload failed");
                PresignRefusal::StoreFailed
            })
    }

    /// Checks a presigned PUT and stores its body: [`Self::admit_put`] then
    /// [`Self::store_put`], for a body already in hand.
    pub async fn accept_put(
        &self,
        key: &str,
        query: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<(), PresignRefusal> {
        let admitted = self.admit_put(key, query, content_type, Some(body.len() as u64))?;
        self.store_put(admitted, body).await
    }

    /// Reads the object of a presigned GET.
    pub async fn serve_get(&self, key: &str, query: &str) -> Result<Option<Blob>, PresignRefusal> {
        validate_key(key).map_err(|_| PresignRefusal::BadSignature)?;
        self.verify("GET", key, query)?;
        self.read(key).await.map_err(|e| {
            tracing::error!(error = %e, key, "reading a presigned download failed");
            PresignRefusal::StoreFailed
        })
    }

    /// Writes through a temporary file and renames, so a crash never leaves half an object.
    async fn write(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
        cache_control: Option<&str>,
    ) -> anyhow::Result<()> {
        let meta = serde_json::to_vec(&Meta {
            content_type: content_type.to_owned(),
            content_length: bytes.len() as u64,
            cache_control: cache_control.map(str::to_owned),
        })?;
        let (object, meta_path) = (self.object_path(key), self.meta_path(key));
        let tmp = self.dir.join("tmp");
        let size = bytes.len();
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            atomic_write(&tmp, &meta_path, &meta)?;
            atomic_write(&tmp, &object, &bytes)
        })
        .await
        .context("blob writer stopped")??;
        self.notify_created(key, size).await
    }

    async fn read(&self, key: &str) -> anyhow::Result<Option<Blob>> {
        let Some(meta) = self.read_meta(key).await? else {
            return Ok(None);
        };
        match tokio::fs::read(self.object_path(key)).await {
            Ok(bytes) => Ok(Some(Blob {
                content_type: meta.content_type,
                cache_control: meta.cache_control,
                bytes: Bytes::from(bytes),
            })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading blob {key}")),
        }
    }

    async fn read_meta(&self, key: &str) -> anyhow::Result<Option<Meta>> {
        match tokio::fs::read(self.meta_path(key)).await {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("blob metadata of {key}"))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading blob metadata of {key}")),
        }
    }
}

/// An S3 event notification of one created object, in the shape S3 sends
/// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html>).
fn s3_notification(
    bucket: &str,
    key: &str,
    size: usize,
    at: chrono::DateTime<chrono::Utc>,
) -> serde_json::Value {
    let encoded: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
    serde_json::json!({
        "Records": [{
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "local",
            "eventTime": crate::clock::rfc3339(at),
            "eventName": "ObjectCreated:Put",
            "userIdentity": {"principalId": "storefront-local"},
            "requestParameters": {"sourceIPAddress": "127.0.0.1"},
            "responseElements": {},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "uploads",
                "bucket": {
                    "name": bucket,
                    "ownerIdentity": {"principalId": "storefront-local"},
                    "arn": format!("arn:aws:s3:::{bucket}"),
                },
                "object": {
                    "key": encoded,
                    "size": size,
                    "sequencer": format!("{:016X}", at.timestamp_micros()),
                },
            },
        }],
    })
}

/// Reads the signed parameters from a query string; `None` when any is missing or malformed.
fn parse_signed(query: &str) -> Option<Signed> {
    let pairs: BTreeMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let field = |name: &str| pairs.get(name).cloned();
    Some(Signed {
        method: field("X-Method")?,
        expires: field("X-Expires")?.parse().ok()?,
        content_type: field("X-Content-Type").unwrap_or_default(),
        content_length: field("X-Content-Length").unwrap_or_default(),
        signature: field("X-Signature")?,
    })
}

fn atomic_write(tmp_dir: &Path, target: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let tmp = tmp_dir.join(ulid::Ulid::new().to_string());
    let mut file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, target).with_context(|| format!("renaming into {}", target.display()))?;
    Ok(())
}

#[async_trait]
impl Blobs for EmbeddedBlobs {
    async fn presign_put(
        &self,
        key: &str,
        content_type: &str,
        content_length: u64,
        ttl: Duration,
    ) -> Result<Presigned, BlobError> {
        if content_type.is_empty() {
            return Err(BlobError::Invalid(
                "a presigned PUT needs a content type".into(),
            ));
        }
        self.presign("PUT", key, ttl, content_type, &content_length.to_string())
    }

    async fn presign_get(&self, key: &str, ttl: Duration) -> Result<Presigned, BlobError> {
        self.presign("GET", key, ttl, "", "")
    }

    async fn head(&self, key: &str) -> Result<Option<BlobMeta>, BlobError> {
        validate_key(key)?;
        if !tokio::fs::try_exists(self.object_path(key))
            .await
            .context("checking a blob")?
        {
            return Ok(None);
        }
        Ok(self.read_meta(key).await?.map(|m| BlobMeta {
            content_type: m.content_type,
            content_length: m.content_length,
        }))
    }

    async fn get(&self, key: &str) -> Result<Option<Blob>, BlobError> {
        validate_key(key)?;
        Ok(self.read(key).await?)
    }

    async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        content_type: &str,
        cache_control: Option<&str>,
    ) -> Result<(), BlobError> {
        validate_key(key)?;
        Ok(self.write(key, bytes, content_type, cache_control).await?)
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        validate_key(key)?;
        for path in [self.object_path(key), self.meta_path(key)] {
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(BlobError::Backend(
                        anyhow::Error::new(e).context(format!("deleting {}", path.display())),
                    ))
                }
            }
        }
        Ok(())
    }
}
