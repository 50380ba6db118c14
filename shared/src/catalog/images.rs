//! A product's images: where their objects live, and the writes that add, remove and settle
//! them (each a [`super::rewrite`] of the product, with its event and audit entry).
//!
//! An image's upload lands at `uploads/<tid>/<pid>/<iid>` (the bucket notifies the image
//! worker of it). What the worker makes of it lives at
//! `images/<tid>/<pid>/<iid>/<variant>/{original,thumbnail}.<ext>`, where the variant is a
//! hash of the uploaded bytes: two uploads to one presigned URL (it can be used again for
//! 15 minutes) make objects at different keys, so an object's key never names other bytes
//! and may be cached for ever, whichever worker records its verdict first.

use crate::audit::Change;
use crate::context::AppContext;
use crate::domain::{Caller, ImageId, ProductId, TenantId, TypedId as _};
use crate::http::Request;
use crate::imaging::Kind;
use crate::repo::products::{Image, ImageStatus, Product};
use crate::store::StoreError;

use super::{change_of, delete_objects, rewrite, CatalogError, Precondition};

pub use crate::imaging::{IMAGES_PREFIX, UPLOADS_PREFIX};

/// The most images a product may have (pending and ready ones count).
pub const MAX_IMAGES: usize = 10;
/// How long a presigned upload may be used.
pub const UPLOAD_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// How long after its upload window a pending image is given up on: the worker has had
/// its time, so it no longer counts against the limit and the next image write drops it.
const ABANDONED_AFTER: chrono::Duration = chrono::Duration::minutes(30);

/// The objects of one image: its upload, and (once a variant is known) the original and
/// thumbnail made of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageKeys {
    pub upload: String,
    pub original: Option<String>,
    pub thumbnail: Option<String>,
}

impl ImageKeys {
    /// The keys of an image as recorded.
    pub fn of(product: &Product, image: &Image) -> Self {
        Self::with_variant(product, image, image.variant.as_deref())
    }

    /// The keys of an image whose upload has the variant `variant`.
    pub fn with_variant(product: &Product, image: &Image, variant: Option<&str>) -> Self {
        let extension = Kind::from_content_type(&image.content_type).map_or("bin", Kind::extension);
        let base = format!("{}/{}/{}", product.tenant_id, product.id, image.id);
        let served = |name: &str| {
            variant.map(|variant| format!("{IMAGES_PREFIX}{base}/{variant}/{name}.{extension}"))
        };
        Self {
            upload: format!("{UPLOADS_PREFIX}{base}"),
            original: served("original"),
            thumbnail: served("thumbnail"),
        }
    }

    /// Every key there is.
    pub fn all(self) -> Vec<String> {
        [Some(self.upload), self.original, self.thumbnail]
            .into_iter()
            .flatten()
            .collect()
    }

    /// The shop, product and image an upload's key names, if it is one.
    pub fn parse_upload(key: &str) -> Option<(TenantId, ProductId, ImageId)> {
        let mut parts = key.strip_prefix(UPLOADS_PREFIX)?.split('/');
        let ids = (
            TenantId::parse(parts.next()?).ok()?,
            ProductId::parse(parts.next()?).ok()?,
            ImageId::parse(parts.next()?).ok()?,
        );
        parts.next().is_none().then_some(ids)
    }
}

/// Every object a product's images may have in the blob store.
pub fn objects_of(product: &Product) -> Vec<String> {
    product
        .images
        .iter()
        .flat_map(|image| ImageKeys::of(product, image).all())
        .collect()
}

/// Whether a pending image's upload window is long over (it will never be processed).
fn abandoned(image: &Image, now: chrono::DateTime<chrono::Utc>) -> bool {
    image.status == ImageStatus::Pending
        && chrono::DateTime::parse_from_rfc3339(&image.upload_expires_at)
            .is_ok_and(|expires| now > expires.with_timezone(&chrono::Utc) + ABANDONED_AFTER)
}

/// Adds a pending image to a product of the caller's shop, for an upload of `kind` and
/// `content_length` bytes: refused when the product already has [`MAX_IMAGES`] pending or
/// ready images. Rejected and abandoned images are dropped from the product (and their
/// objects deleted) in the same write. The caller presigns the upload.
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn add(
    ctx: &AppContext,
    req: &Request,
    caller: &Caller,
    id: &ProductId,
    kind: Kind,
    content_length: u64,
) -> Result<(Product, Image), CatalogError> {
    let now = ctx.clock.now();
    let expires = now + chrono::Duration::from_std(UPLOAD_TTL).unwrap_or_default();
    let image = Image {
        id: ImageId::generate(ctx.ids.as_ref()),
        status: ImageStatus::Pending,
        content_type: kind.content_type().to_owned(),
        content_length,
        width: None,
        height: None,
        reason: None,
        variant: None,
        created_at: crate::clock::rfc3339(now),
        upload_expires_at: crate::clock::rfc3339(expires),
    };
    let product = rewrite(ctx, &caller.tenant_id, id, &Precondition::None, |read| {
        let (kept, dropped): (Vec<Image>, Vec<Image>) = read
            .images
            .iter()
            .cloned()
            .partition(|i| i.status != ImageStatus::Rejected && !abandoned(i, now));
        if kept.len() >= MAX_IMAGES {
            return Err(CatalogError::TooManyImages);
        }
        let mut product = read.clone();
        product.images = kept;
        product.images.push(image.clone());
        let change = Change::new("product.image_added", "product", id)
            .detail(format!("image: {}, {}", image.id, image.content_type));
        let mut tx = change_of(ctx, Some((req, caller)), change, read, &mut product)?;
        let stale = dropped
            .iter()
            .flat_map(|i| ImageKeys::of(read, i).all())
            .collect();
        delete_objects(ctx, &mut tx, &product.tenant_id, stale)?;
        Ok(Some((product, tx)))
    })
    .await?;
    Ok((product, image))
}

/// Removes an image from a product of the caller's shop; its objects are deleted by a job
/// written in the same transaction.
#[tracing::instrument(skip_all, fields(product_id = %id, image_id = %image_id))]
pub async fn remove(
    ctx: &AppContext,
    req: &Request,
    caller: &Caller,
    id: &ProductId,
    image_id: &ImageId,
) -> Result<(), CatalogError> {
    rewrite(ctx, &caller.tenant_id, id, &Precondition::None, |read| {
        let image = read
            .images
            .iter()
            .find(|i| &i.id == image_id)
            .ok_or(CatalogError::NoSuchImage)?;
        let mut product = read.clone();
        product.images.retain(|i| &i.id != image_id);
        let change = Change::new("product.image_deleted", "product", id)
            .detail(format!("image: {image_id}"));
        let mut tx = change_of(ctx, Some((req, caller)), change, read, &mut product)?;
        let objects = ImageKeys::of(read, image).all();
        delete_objects(ctx, &mut tx, &product.tenant_id, objects)?;
        Ok(Some((product, tx)))
    })
    .await
    .map(drop)
}

/// What the image worker found an upload to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A good image, whose objects are written under `variant`.
    Ready {
        width: u32,
        height: u32,
        variant: String,
    },
    Rejected {
        reason: String,
    },
}

/// What recording a verdict did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The image is now ready or rejected.
    Recorded,
    /// The image was already settled (a repeated notification, or another upload to the
    /// same URL): nothing changed. The variant recorded, if it is ready.
    AlreadySettled { variant: Option<String> },
    /// The product or the image no longer exists: nothing to record.
    Gone,
}

/// Records the worker's verdict on a pending image, with its `product.updated` event and an
/// audit entry by the system, in one transaction conditioned on the version read (read
/// again on a lost race, as often as other writes get in between).
#[tracing::instrument(skip(ctx))]
pub async fn settle(
    ctx: &AppContext,
    tenant_id: &TenantId,
    id: &ProductId,
    image_id: &ImageId,
    verdict: &Verdict,
) -> Result<Settled, StoreError> {
    let mut outcome = Settled::Recorded;
    let written = rewrite(ctx, tenant_id, id, &Precondition::None, |read| {
        let Some(image) = read.images.iter().find(|i| &i.id == image_id) else {
            outcome = Settled::Gone;
            return Ok(None);
        };
        if image.status != ImageStatus::Pending {
            outcome = Settled::AlreadySettled {
                variant: image.variant.clone(),
            };
            return Ok(None);
        }
        outcome = Settled::Recorded;
        let mut product = read.clone();
        let mut detail = format!("image: {image_id}, ");
        if let Some(image) = product.images.iter_mut().find(|i| &i.id == image_id) {
            match verdict {
                Verdict::Ready {
                    width,
                    height,
                    variant,
                } => {
                    image.status = ImageStatus::Ready;
                    image.width = Some(*width);
                    image.height = Some(*height);
                    image.variant = Some(variant.clone());
                    detail += "ready";
                }
                Verdict::Rejected { reason } => {
                    image.status = ImageStatus::Rejected;
                    image.reason = Some(reason.clone());
                    detail += &format!("rejected: {reason}");
                }
            }
        }
        let change = Change::new("product.image_checked", "product", id).detail(detail);
        let tx = change_of(ctx, None, change, read, &mut product)?;
        Ok(Some((product, tx)))
    })
    .await;
    match written {
        Ok(_) => Ok(outcome),
        Err(CatalogError::NoSuchProduct) => Ok(Settled::Gone),
        Err(CatalogError::Store(e)) => Err(e),
        Err(other) => Err(StoreError::Backend(anyhow::anyhow!(
            "recording an image's verdict: {other}"
        ))),
    }
}
