//! The catalogue's feature module: the rules of products that every product route shares.
//!
//! A product write is one transaction holding everything it implies: the product, its sku
//! lock (claimed with `NotExists`, so two products can never hold one sku, however close
//! together they are created), the word entries search reads, a `product.updated` or
//! `product.deleted` event in the outbox and the audit entry. Each write is also
//! conditioned on the version of the product it read: two writers racing cannot both win,
//! which is what makes `If-Match` safe, and a writer that lost without an `If-Match`
//! simply reads again and retries.
//!
//! The product as the API shows it ([`ProductView`]) lives here too, because the events
//! carry it as well as the answers.

use headers::{ETag, IfMatch};
use serde::Serialize;

use crate::audit::{self, Change};
use crate::context::AppContext;
use crate::domain::search::{found_by, index_words};
use crate::domain::{
    Caller, Description, Event, EventData, ImageId, Job, Money, ProductId, ProductName, Sku, Stock,
    TenantId, TypedId as _,
};
use crate::http::conditional::strong_etag;
use crate::http::{ApiError, Request};
use crate::ids::IdKind;
use crate::imaging::Kind;
use crate::repo::outbox;
use crate::repo::products::{self, Image, ImageStatus, Product};
use crate::store::{Index, Position, Query, StoreError, Transaction, TransactionError};

/// How often a write that lost a race (without `If-Match`) reads again and retries.
const WRITE_ATTEMPTS: usize = 3;
/// The most index pages one search reads to fill a page of results.
const SEARCH_ROUNDS: usize = 5;
/// How many index entries a search reads per round after the first.
const SEARCH_READ_AHEAD: usize = 100;

const THE_PRODUCT: &str = "the product";
const THE_SKU: &str = "the sku";

/// Why a catalogue change was refused.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("no such product in this shop")]
    NoSuchProduct,
    #[error("another product of this shop has this sku")]
    SkuTaken,
    /// `If-Match` named a version that is no longer the product's.
    #[error("the product changed since the version the request names")]
    Stale,
    #[error("the product kept changing while it was written")]
    Contended,
    #[error("no such image of this product")]
    NoSuchImage,
    #[error("the product has as many images as it may")]
    TooManyImages,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub const NO_SUCH_PRODUCT: &str = "This shop has no product with this id.";
pub const NO_SUCH_IMAGE: &str = "This product has no image with this id.";
/// The most images a product may have (pending and ready ones count).
pub const MAX_IMAGES: usize = 10;
/// How long a presigned upload may be used.
pub const UPLOAD_TTL: std::time::Duration = std::time::Duration::from_secs(15 * 60);
/// How long after its upload window a pending image is given up on: the worker has had
/// its time, so it no longer counts against the limit and the next image write drops it.
const ABANDONED_AFTER: chrono::Duration = chrono::Duration::minutes(30);

/// The one place a catalogue failure becomes HTTP.
impl From<CatalogError> for ApiError {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::NoSuchProduct => ApiError::not_found(NO_SUCH_PRODUCT),
            CatalogError::SkuTaken => ApiError::Conflict {
                slug: "sku-taken",
                detail: "Another product of this shop has this sku.".into(),
            },
            CatalogError::Stale => ApiError::PreconditionFailed(
                "The product has changed since the version `If-Match` names; read it again.".into(),
            ),
            CatalogError::Contended => ApiError::Conflict {
                slug: "conflict",
                detail: "The product changed while it was being written; try again.".into(),
            },
            CatalogError::NoSuchImage => ApiError::not_found(NO_SUCH_IMAGE),
            CatalogError::TooManyImages => ApiError::Conflict {
                slug: "too-many-images",
                detail: format!(
                    "A product has at most {MAX_IMAGES} images; delete one before adding another."
                ),
            },
            CatalogError::Store(e) => e.into(),
        }
    }
}

/// A new product, every field valid.
pub struct NewProduct {
    pub sku: Sku,
    pub name: ProductName,
    pub description: Description,
    pub price: Money,
    pub stock: Stock,
}

/// A partial update, every field present valid.
#[derive(Default)]
pub struct Changes {
    pub sku: Option<Sku>,
    pub name: Option<ProductName>,
    pub description: Option<Description>,
    pub price: Option<Money>,
    pub stock: Option<Stock>,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.sku.is_none()
            && self.name.is_none()
            && self.description.is_none()
            && self.price.is_none()
            && self.stock.is_none()
    }

    /// The fields this update names, for the audit entry.
    fn fields(&self) -> Vec<&'static str> {
        [
            ("sku", self.sku.is_some()),
            ("name", self.name.is_some()),
            ("description", self.description.is_some()),
            ("price", self.price.is_some()),
            ("stock", self.stock.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, named)| named.then_some(name))
        .collect()
    }
}

/// The strong ETag of a product: its version, which every write raises.
pub fn etag(product: &Product) -> Result<ETag, ApiError> {
    strong_etag(&format!("v{}", product.version))
}

/// The product as the API shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ProductView {
    pub id: ProductId,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price: Money,
    pub stock: u32,
    pub images: Vec<ImageView>,
    pub created_at: String,
    pub updated_at: String,
}

/// An image as the API shows it; `url` and `thumbnail_url` once it is `ready`.
#[derive(Clone, Debug, Serialize)]
pub struct ImageView {
    pub id: String,
    pub status: ImageStatus,
    pub content_type: String,
    pub width: Option<u32>,
    pub height: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail_url: Option<String>,
}

/// The product as the API shows it; `ctx` says where its images are served.
pub fn view(ctx: &AppContext, product: &Product) -> ProductView {
    ProductView {
        id: product.id.clone(),
        sku: product.sku.clone(),
        name: product.name.clone(),
        description: product.description.clone(),
        price: product.price.clone(),
        stock: product.stock,
        images: product
            .images
            .iter()
            .map(|image| image_view(ctx.images_url.as_deref(), product, image))
            .collect(),
        created_at: product.created_at.clone(),
        updated_at: product.updated_at.clone(),
    }
}

/// An image as the API shows it: the addresses of its objects once it is ready, where
/// this deployment serves them (CloudFront on AWS, the local server locally).
fn image_view(base: Option<&str>, product: &Product, image: &Image) -> ImageView {
    let served = |key: String| base.map(|base| format!("{}/{key}", base.trim_end_matches('/')));
    let ready = image.status == ImageStatus::Ready;
    let keys = ImageKeys::of(product, image);
    ImageView {
        id: image.id.to_string(),
        status: image.status,
        content_type: image.content_type.clone(),
        width: image.width,
        height: image.height,
        url: if ready { served(keys.original) } else { None },
        thumbnail_url: if ready { served(keys.thumbnail) } else { None },
    }
}

/// The outbox write telling the outside world of a product change (`product.updated` or
/// `product.deleted`), with the product as the API shows it.
fn event(
    ctx: &AppContext,
    kind: &str,
    product: &Product,
) -> Result<crate::store::TxOp, StoreError> {
    let now = ctx.clock.now();
    let object = serde_json::to_value(view(ctx, product))
        .map_err(|e| StoreError::Invalid(format!("product view does not serialise: {e}")))?;
    let job = Job::Event {
        event: Event {
            id: ctx.ids.next(IdKind::Event),
            kind: kind.to_owned(),
            created_at: crate::clock::rfc3339(now),
            tenant_id: product.tenant_id.to_string(),
            data: EventData { object },
        },
    };
    outbox::enqueue(
        &job,
        &ctx.ids.next(IdKind::Message),
        &product.tenant_id,
        now,
    )
}

/// Adds the word entries that take the index from `old` words to the product's words:
/// new and kept words are (re)written (each entry carries the whole name), dropped ones
/// deleted.
fn reindex(
    tx: &mut Transaction<&'static str>,
    product: &Product,
    old: &[String],
) -> Result<(), StoreError> {
    for word in &product.words {
        tx.add("a word of the name", products::index_word(product, word)?)?;
    }
    for word in old.iter().filter(|w| !product.words.contains(w)) {
        tx.add(
            "a word no longer in the name",
            products::unindex_word(&product.tenant_id, &product.id, word),
        )?;
    }
    Ok(())
}

/// Creates a product in the caller's shop, whose currency its price must be in (the
/// handler checked it).
#[tracing::instrument(skip_all, fields(sku = %new.sku.as_str()))]
pub async fn create(
    ctx: &AppContext,
    req: &Request,
    caller: &Caller,
    new: NewProduct,
) -> Result<Product, CatalogError> {
    let now = crate::clock::rfc3339(ctx.clock.now());
    let product = Product {
        id: ProductId::generate(ctx.ids.as_ref()),
        tenant_id: caller.tenant_id.clone(),
        sku: new.sku.as_str().to_owned(),
        words: index_words(new.name.as_str()),
        name: new.name.as_str().to_owned(),
        description: new.description.as_str().to_owned(),
        price: new.price,
        stock: new.stock.units(),
        images: Vec::new(),
        version: 1,
        created_at: now.clone(),
        updated_at: now,
    };
    let mut tx = audit::recorded(
        ctx,
        req,
        caller,
        Change::new("product.created", "product", &product.id)
            .detail(format!("sku: {}", product.sku)),
    )?;
    tx.add(THE_PRODUCT, products::insert(&product)?)?;
    tx.add(
        THE_SKU,
        products::claim_sku(&product.tenant_id, &new.sku.unique_key(), &product.id)?,
    )?;
    reindex(&mut tx, &product, &[])?;
    tx.add("the event", event(ctx, "product.updated", &product)?)?;
    match tx.commit(ctx.table.as_ref()).await {
        Ok(()) => Ok(product),
        Err(TransactionError::Refused(THE_SKU)) => Err(CatalogError::SkuTaken),
        Err(e) => Err(CatalogError::Store(e.into_store())),
    }
}

/// Reads a product of the caller's shop, checking `If-Match` against it: 404 when there is
/// none, 412 when the product is not at a version `If-Match` names.
async fn read_for_write(
    ctx: &AppContext,
    tenant_id: &TenantId,
    id: &ProductId,
    precondition: Option<&IfMatch>,
) -> Result<Product, CatalogError> {
    let product = products::get(ctx.table.as_ref(), tenant_id, id)
        .await?
        .ok_or(CatalogError::NoSuchProduct)?;
    if let Some(precondition) = precondition {
        let current = etag(&product).map_err(|_| CatalogError::Stale)?;
        if !precondition.precondition_passes(&current) {
            return Err(CatalogError::Stale);
        }
    }
    Ok(product)
}

/// What a lost race means: with `If-Match` the version it named is gone (412); without,
/// the write reads again, up to [`WRITE_ATTEMPTS`] times.
fn lost_race(precondition: Option<&IfMatch>, attempt: usize) -> Option<CatalogError> {
    match precondition {
        Some(_) => Some(CatalogError::Stale),
        None if attempt + 1 >= WRITE_ATTEMPTS => Some(CatalogError::Contended),
        None => None,
    }
}

/// Applies a partial update to a product of the caller's shop, in one transaction
/// conditioned on the version read (and on `If-Match`, when sent). An update that names no
/// field writes nothing and answers the product as it is.
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn update(
    ctx: &AppContext,
    req: &Request,
    caller: &Caller,
    id: &ProductId,
    changes: Changes,
    precondition: Option<&IfMatch>,
) -> Result<Product, CatalogError> {
    for attempt in 0..WRITE_ATTEMPTS {
        let read = read_for_write(ctx, &caller.tenant_id, id, precondition).await?;
        if changes.is_empty() {
            return Ok(read);
        }
        let mut product = read.clone();
        if let Some(sku) = &changes.sku {
            product.sku = sku.as_str().to_owned();
        }
        if let Some(name) = &changes.name {
            product.name = name.as_str().to_owned();
            product.words = index_words(name.as_str());
        }
        if let Some(description) = &changes.description {
            product.description = description.as_str().to_owned();
        }
        if let Some(price) = &changes.price {
            product.price = price.clone();
        }
        if let Some(stock) = changes.stock {
            product.stock = stock.units();
        }
        product.version = read.version + 1;
        product.updated_at = crate::clock::rfc3339(ctx.clock.now());

        let mut tx = audit::recorded(
            ctx,
            req,
            caller,
            Change::new("product.updated", "product", id)
                .detail(format!("changed: {}", changes.fields().join(", "))),
        )?;
        tx.add(THE_PRODUCT, products::replace(&product, read.version)?)?;
        let (old_sku, new_sku) = (unique_sku(&read.sku), unique_sku(&product.sku));
        if old_sku != new_sku {
            tx.add(
                THE_SKU,
                products::claim_sku(&product.tenant_id, &new_sku, &product.id)?,
            )?;
            tx.add(
                "the old sku",
                products::release_sku(&product.tenant_id, &old_sku, &product.id),
            )?;
        }
        if product.words != read.words {
            reindex(&mut tx, &product, &read.words)?;
        }
        tx.add("the event", event(ctx, "product.updated", &product)?)?;
        match tx.commit(ctx.table.as_ref()).await {
            Ok(()) => return Ok(product),
            Err(TransactionError::Refused(THE_SKU)) => return Err(CatalogError::SkuTaken),
            Err(TransactionError::Refused(THE_PRODUCT)) => {
                if let Some(refused) = lost_race(precondition, attempt) {
                    return Err(refused);
                }
            }
            Err(e) => return Err(CatalogError::Store(e.into_store())),
        }
    }
    Err(CatalogError::Contended)
}

/// The sku as its lock names it.
fn unique_sku(sku: &str) -> String {
    sku.to_ascii_uppercase()
}

/// Deletes a product of the caller's shop with its sku lock and word entries, in one
/// transaction conditioned as [`update`]'s is; its images' objects are deleted by a job
/// from the same transaction. Orders keep their own copy of what they sold.
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn delete(
    ctx: &AppContext,
    req: &Request,
    caller: &Caller,
    id: &ProductId,
    precondition: Option<&IfMatch>,
) -> Result<(), CatalogError> {
    for attempt in 0..WRITE_ATTEMPTS {
        let product = read_for_write(ctx, &caller.tenant_id, id, precondition).await?;
        let mut tx = audit::recorded(
            ctx,
            req,
            caller,
            Change::new("product.deleted", "product", id).detail(format!("sku: {}", product.sku)),
        )?;
        tx.add(THE_PRODUCT, products::remove(&product, product.version))?;
        tx.add(
            THE_SKU,
            products::release_sku(&product.tenant_id, &unique_sku(&product.sku), id),
        )?;
        for word in &product.words {
            tx.add(
                "a word of the name",
                products::unindex_word(&product.tenant_id, id, word),
            )?;
        }
        tx.add("the event", event(ctx, "product.deleted", &product)?)?;
        delete_objects(ctx, &mut tx, &product.tenant_id, image_objects(&product))?;
        match tx.commit(ctx.table.as_ref()).await {
            Ok(()) => return Ok(()),
            Err(TransactionError::Refused(THE_PRODUCT)) => {
                if let Some(refused) = lost_race(precondition, attempt) {
                    return Err(refused);
                }
            }
            Err(e) => return Err(CatalogError::Store(e.into_store())),
        }
    }
    Err(CatalogError::Contended)
}

/// Every object a product's images may have in the blob store.
pub fn image_objects(product: &Product) -> Vec<String> {
    product
        .images
        .iter()
        .flat_map(|image| ImageKeys::of(product, image).all())
        .collect()
}

/// The objects of one image: where its upload lands (`uploads/…`, which S3 tells the image
/// worker about), and the original and thumbnail the worker makes of it (`images/…`,
/// which CloudFront serves). An image id is never reused, so these are immutable objects,
/// cacheable for ever.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageKeys {
    pub upload: String,
    pub original: String,
    pub thumbnail: String,
}

pub use crate::imaging::{IMAGES_PREFIX, UPLOADS_PREFIX};

impl ImageKeys {
    pub fn of(product: &Product, image: &Image) -> Self {
        let extension = Kind::from_content_type(&image.content_type).map_or("bin", Kind::extension);
        let base = format!("{}/{}/{}", product.tenant_id, product.id, image.id);
        Self {
            upload: format!("{UPLOADS_PREFIX}{base}"),
            original: format!("{IMAGES_PREFIX}{base}/original.{extension}"),
            thumbnail: format!("{IMAGES_PREFIX}{base}/thumbnail.{extension}"),
        }
    }

    pub fn all(self) -> [String; 3] {
        [self.upload, self.original, self.thumbnail]
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

/// A page of search results.
pub struct Found {
    pub products: Vec<Product>,
    pub next: Option<Position>,
}

/// The products of a shop found by `terms` (see `crate::domain::search`), a page at a
/// time. `query` is the paged index query of the longest term (the most selective), with
/// the caller's limit and cursor; the other terms are checked on each entry, which carries
/// the name's words. Entries are read in word order, a few index pages at most per call
/// (so a query of several words can answer a short page with a cursor to go on from), and
/// a product whose name has several words starting with the term is listed once, at the
/// first of them. Then one batch read fetches the products.
#[tracing::instrument(skip_all, fields(terms = terms.len()))]
pub async fn search(
    ctx: &AppContext,
    tenant_id: &TenantId,
    terms: &[String],
    lookup: &str,
    query: Query,
) -> Result<Found, StoreError> {
    let table = ctx.table.as_ref();
    let want = query.limit;
    let mut query = query;
    let mut ids: Vec<ProductId> = Vec::new();
    let mut next = None;
    'rounds: for round in 0..SEARCH_ROUNDS {
        let page = table.query(query.clone()).await?;
        let count = page.items.len();
        for (n, item) in page.items.iter().enumerate() {
            let entry: products::WordEntry = item.record()?;
            let word = products::entry_word(item).unwrap_or_default();
            // Listed at the first of its words that starts with the term, and only then.
            let first_match = !entry
                .words
                .iter()
                .any(|w| w.as_str() < word && w.starts_with(lookup));
            if first_match && found_by(&entry.words, terms) && !ids.contains(&entry.product_id) {
                ids.push(entry.product_id);
            }
            let at_end = n + 1 == count && page.next.is_none();
            if ids.len() == want {
                next = (!at_end).then(|| item.position(Index::Gsi1));
                break 'rounds;
            }
        }
        match page.next {
            None => {
                next = None;
                break;
            }
            Some(position) if round + 1 == SEARCH_ROUNDS => next = Some(position),
            Some(position) => {
                query = query
                    .after(Some(position))
                    .limit(SEARCH_READ_AHEAD.max(want));
            }
        }
    }
    let products = products::get_many(table, tenant_id, &ids).await?;
    Ok(Found { products, next })
}

/// Adds the deletion of `keys` (objects of images that are gone) to a transaction, as a
/// job the worker runs once the change has landed.
fn delete_objects(
    ctx: &AppContext,
    tx: &mut Transaction<&'static str>,
    tenant_id: &str,
    keys: Vec<String>,
) -> Result<(), StoreError> {
    if keys.is_empty() {
        return Ok(());
    }
    let job = Job::DeleteBlobs { keys };
    let now = ctx.clock.now();
    tx.add(
        "the objects' deletion",
        outbox::enqueue(&job, &ctx.ids.next(IdKind::Message), tenant_id, now)?,
    )?;
    Ok(())
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
pub async fn add_image(
    ctx: &AppContext,
    req: &Request,
    caller: &Caller,
    id: &ProductId,
    kind: Kind,
    content_length: u64,
) -> Result<(Product, Image), CatalogError> {
    for _ in 0..WRITE_ATTEMPTS {
        let read = read_for_write(ctx, &caller.tenant_id, id, None).await?;
        let now = ctx.clock.now();
        let mut product = read.clone();
        let (kept, dropped): (Vec<Image>, Vec<Image>) = read
            .images
            .iter()
            .cloned()
            .partition(|i| i.status != ImageStatus::Rejected && !abandoned(i, now));
        if kept.len() >= MAX_IMAGES {
            return Err(CatalogError::TooManyImages);
        }
        let expires = now + chrono::Duration::from_std(UPLOAD_TTL).unwrap_or_default();
        let image = Image {
            id: ImageId::generate(ctx.ids.as_ref()),
            status: ImageStatus::Pending,
            content_type: kind.content_type().to_owned(),
            content_length,
            width: None,
            height: None,
            reason: None,
            created_at: crate::clock::rfc3339(now),
            upload_expires_at: crate::clock::rfc3339(expires),
        };
        product.images = kept;
        product.images.push(image.clone());
        product.version = read.version + 1;
        product.updated_at = crate::clock::rfc3339(now);
        let mut tx = audit::recorded(
            ctx,
            req,
            caller,
            Change::new("product.image_added", "product", id)
                .detail(format!("image: {}, {}", image.id, image.content_type)),
        )?;
        tx.add(THE_PRODUCT, products::replace(&product, read.version)?)?;
        tx.add("the event", event(ctx, "product.updated", &product)?)?;
        let stale = dropped
            .iter()
            .flat_map(|i| ImageKeys::of(&read, i).all())
            .collect();
        delete_objects(ctx, &mut tx, &product.tenant_id, stale)?;
        match tx.commit(ctx.table.as_ref()).await {
            Ok(()) => return Ok((product, image)),
            Err(TransactionError::Refused(THE_PRODUCT)) => continue,
            Err(e) => return Err(CatalogError::Store(e.into_store())),
        }
    }
    Err(CatalogError::Contended)
}

/// Removes an image from a product of the caller's shop; its objects are deleted by a job
/// written in the same transaction.
#[tracing::instrument(skip_all, fields(product_id = %id, image_id = %image_id))]
pub async fn remove_image(
    ctx: &AppContext,
    req: &Request,
    caller: &Caller,
    id: &ProductId,
    image_id: &ImageId,
) -> Result<(), CatalogError> {
    for _ in 0..WRITE_ATTEMPTS {
        let read = read_for_write(ctx, &caller.tenant_id, id, None).await?;
        let image = read
            .images
            .iter()
            .find(|i| &i.id == image_id)
            .cloned()
            .ok_or(CatalogError::NoSuchImage)?;
        let mut product = read.clone();
        product.images.retain(|i| &i.id != image_id);
        product.version = read.version + 1;
        product.updated_at = crate::clock::rfc3339(ctx.clock.now());
        let mut tx = audit::recorded(
            ctx,
            req,
            caller,
            Change::new("product.image_deleted", "product", id)
                .detail(format!("image: {image_id}")),
        )?;
        tx.add(THE_PRODUCT, products::replace(&product, read.version)?)?;
        tx.add("the event", event(ctx, "product.updated", &product)?)?;
        let objects = ImageKeys::of(&read, &image).all().to_vec();
        delete_objects(ctx, &mut tx, &product.tenant_id, objects)?;
        match tx.commit(ctx.table.as_ref()).await {
            Ok(()) => return Ok(()),
            Err(TransactionError::Refused(THE_PRODUCT)) => continue,
            Err(e) => return Err(CatalogError::Store(e.into_store())),
        }
    }
    Err(CatalogError::Contended)
}

/// What the image worker found an upload to be.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ready { width: u32, height: u32 },
    Rejected { reason: String },
}

/// What recording a verdict did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// The image is now ready or rejected.
    Recorded,
    /// The image was already settled (a duplicate notification): nothing changed.
    AlreadySettled,
    /// The product or the image no longer exists: nothing to record.
    Gone,
}

/// Records the worker's verdict on a pending image, with its `product.updated` event, in
/// one transaction conditioned on the version read (read again on a lost race, as often
/// as other writes get in between).
#[tracing::instrument(skip(ctx))]
pub async fn settle_image(
    ctx: &AppContext,
    tenant_id: &TenantId,
    id: &ProductId,
    image_id: &ImageId,
    verdict: &Verdict,
) -> Result<Settled, StoreError> {
    const ATTEMPTS: usize = 8;
    for _ in 0..ATTEMPTS {
        let Some(read) = products::get(ctx.table.as_ref(), tenant_id, id).await? else {
            return Ok(Settled::Gone);
        };
        let mut product = read.clone();
        let Some(image) = product.images.iter_mut().find(|i| &i.id == image_id) else {
            return Ok(Settled::Gone);
        };
        if image.status != ImageStatus::Pending {
            return Ok(Settled::AlreadySettled);
        }
        match verdict {
            Verdict::Ready { width, height } => {
                image.status = ImageStatus::Ready;
                image.width = Some(*width);
                image.height = Some(*height);
            }
            Verdict::Rejected { reason } => {
                image.status = ImageStatus::Rejected;
                image.reason = Some(reason.clone());
            }
        }
        product.version = read.version + 1;
        product.updated_at = crate::clock::rfc3339(ctx.clock.now());
        let mut tx: Transaction<&'static str> = Transaction::new();
        tx.add(THE_PRODUCT, products::replace(&product, read.version)?)?;
        tx.add("the event", event(ctx, "product.updated", &product)?)?;
        match tx.commit(ctx.table.as_ref()).await {
            Ok(()) => return Ok(Settled::Recorded),
            Err(TransactionError::Refused(THE_PRODUCT)) => continue,
            Err(e) => return Err(e.into_store()),
        }
    }
    Err(StoreError::Conflict)
}
