//! The image worker: consumes the bucket's notifications of new uploads (S3 event
//! notifications delivered through SQS on AWS; the same messages from the embedded blob
//! store locally), checks each upload with [`crate::imaging`], stores its stripped original
//! and thumbnail under `images/…`, records the verdict on the product, and deletes the
//! upload. An upload that fails the check is deleted and its image marked `rejected`.
//!
//! Idempotent: a notification delivered twice finds the image already settled (or the
//! upload gone) and does nothing, so no second thumbnail is made; the objects it writes
//! have fixed keys, so a retry after a crash overwrites rather than adds.
//! <https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html>

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use super::{JobMessage, Worker};
use anyhow::Context as _;

use crate::catalog::images::{self, ImageKeys, Settled, Verdict};
use crate::context::AppContext;
use crate::imaging::{self, Kind};
use crate::repo::products::{self, ImageStatus};

/// The worker of the uploads queue.
#[derive(Debug)]
pub struct ImageUploads {
    /// One image decoded at a time per process: a 40-megapixel decode takes ~160 MB, and
    /// a batch of them at once would take the function's memory many times over.
    decoding: tokio::sync::Semaphore,
}

impl Default for ImageUploads {
    fn default() -> Self {
        Self {
            decoding: tokio::sync::Semaphore::new(1),
        }
    }
}

#[async_trait]
impl Worker for ImageUploads {
    async fn handle(&self, ctx: &AppContext, message: &JobMessage) -> anyhow::Result<()> {
        let value: Value = serde_json::from_str(&message.body)
            .map_err(|e| anyhow::anyhow!("message {} is not JSON: {e}", message.id))?;
        // S3 sends one test message when the notification is configured.
        if value["Event"] == "s3:TestEvent" {
            tracing::info!("the bucket's test notification; nothing to do");
            return Ok(());
        }
        let event: Notification = serde_json::from_value(value)
            .map_err(|e| anyhow::anyhow!("message {} is not an S3 event: {e}", message.id))?;
        for record in event.records {
            if record.event_name.starts_with("ObjectCreated:") {
                self.upload(ctx, &object_key(&record.s3.object.key)).await?;
            } else {
                tracing::info!(event = record.event_name, "not an upload; ignored");
            }
        }
        Ok(())
    }
}

/// What the worker reads of an S3 event notification: each record's event and object key
/// (the rest of S3's fields are not needed, and not required).
#[derive(Deserialize)]
struct Notification {
    #[serde(rename = "Records")]
    records: Vec<Record>,
}

#[derive(Deserialize)]
struct Record {
    #[serde(rename = "eventName")]
    event_name: String,
    s3: Entity,
}

#[derive(Deserialize)]
struct Entity {
    object: Object,
}

#[derive(Deserialize)]
struct Object {
    key: String,
}

/// An object key as S3 notifications write it: URL-encoded, with `+` for a space.
fn object_key(encoded: &str) -> String {
    url::form_urlencoded::parse(format!("k={encoded}").as_bytes())
        .next()
        .map_or_else(|| encoded.to_owned(), |(_, key)| key.into_owned())
}

/// How long a browser or CDN may keep an image object: a year, as its key never names
/// other bytes.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";

impl ImageUploads {
    /// Processes one upload (see the module's comment).
    #[tracing::instrument(skip(self, ctx))]
    async fn upload(&self, ctx: &AppContext, key: &str) -> anyhow::Result<()> {
        let Some((tenant_id, product_id, image_id)) = ImageKeys::parse_upload(key) else {
            tracing::warn!("an object outside the uploads of images; ignored");
            return Ok(());
        };
        let product = products::get(ctx.table.as_ref(), &tenant_id, &product_id)
            .await
            .context("reading the upload's product")?;
        let image = product
            .as_ref()
            .and_then(|p| p.images.iter().find(|i| i.id == image_id));
        let (Some(product), Some(image)) = (product.as_ref(), image) else {
            tracing::info!("the product or image is gone; the upload is deleted");
            return delete(ctx, key).await;
        };
        if image.status != ImageStatus::Pending {
            tracing::info!(status = ?image.status, "already processed (a repeated notification)");
            return delete(ctx, key).await;
        }
        let Some(blob) = ctx.blobs.get(key).await.context("reading the upload")? else {
            tracing::info!("the upload is gone (a repeated notification)");
            return Ok(());
        };
        let claimed = Kind::from_content_type(&image.content_type).ok_or_else(|| {
            anyhow::anyhow!("stored image type {} is unknown", image.content_type)
        })?;
        // The objects' keys name the uploaded bytes: another upload to the same URL,
        // checked at the same time by another worker, writes other keys.
        let variant = crate::crypto::sha256_hex(&blob.bytes)[..16].to_owned();
        let keys = ImageKeys::with_variant(product, image, Some(&variant));
        let verdict = match self.check(blob.bytes, image.content_length, claimed).await {
            Ok(done) => {
                let content_type = claimed.content_type();
                for (key, bytes) in [
                    (&keys.original, done.original),
                    (&keys.thumbnail, done.thumbnail.into()),
                ] {
                    if let Some(key) = key {
                        ctx.blobs
                            .put(key, bytes, content_type, Some(IMMUTABLE))
                            .await
                            .with_context(|| format!("writing {key}"))?;
                    }
                }
                Verdict::Ready {
                    width: done.width,
                    height: done.height,
                    variant: variant.clone(),
                }
            }
            Err(reason) => {
                tracing::warn!(reason, "upload rejected");
                Verdict::Rejected { reason }
            }
        };
        let settled = images::settle(ctx, &tenant_id, &product_id, &image_id, &verdict)
            .await
            .context("recording the image's verdict")?;
        let mine_unused = match &settled {
            Settled::Recorded => false,
            // Deleted while it was being checked: what was just written goes too.
            Settled::Gone => true,
            // Another upload to the same URL was recorded first: keep its objects only.
            Settled::AlreadySettled { variant: recorded } => recorded.as_deref() != Some(&variant),
        };
        if mine_unused && matches!(verdict, Verdict::Ready { .. }) {
            for key in [&keys.original, &keys.thumbnail].into_iter().flatten() {
                delete(ctx, key).await?;
            }
        }
        tracing::info!(
            ?settled,
            ready = matches!(verdict, Verdict::Ready { .. }),
            "image settled"
        );
        delete(ctx, key).await
    }

    /// Checks an upload (off the async threads, one at a time), or says why it is refused.
    /// A check that panics (a decoder bug) refuses the file rather than retrying it for ever.
    async fn check(
        &self,
        bytes: bytes::Bytes,
        declared: u64,
        claimed: Kind,
    ) -> Result<imaging::Processed, String> {
        if bytes.len() as u64 != declared {
            return Err(format!(
                "the upload is {} bytes, not the {declared} declared",
                bytes.len()
            ));
        }
        let _permit = self
            .decoding
            .acquire()
            .await
            .map_err(|_| "the worker is stopping".to_owned())?;
        let started = std::time::Instant::now();
        let checked = tokio::task::spawn_blocking(move || imaging::process(bytes, claimed)).await;
        tracing::info!(ms = started.elapsed().as_millis() as u64, "upload checked");
        match checked {
            Ok(result) => result.map_err(|refusal| refusal.to_string()),
            Err(e) => {
                tracing::error!(error = %e, "checking an upload panicked; it is refused");
                Err("the image could not be read".to_owned())
            }
        }
    }
}

/// Deletes an object (deleting a missing one is fine).
async fn delete(ctx: &AppContext, key: &str) -> anyhow::Result<()> {
    ctx.blobs
        .delete(key)
        .await
        .with_context(|| format!("deleting {key}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notifications_key_is_url_decoded() {
        assert_eq!(object_key("uploads/a%2Bb+c"), "uploads/a+b c");
        assert_eq!(object_key("uploads/plain"), "uploads/plain");
    }
}
