//! The catalogue's feature module: the rules of products that every product route shares.
//!
//! A product write is one transaction holding everything it implies: the product, its sku
//! lock (claimed with `NotExists`, so two products can never hold one sku, however close
//! together they are created), the word entries search reads, a `product.updated` or
//! `product.deleted` event in the outbox and the audit entry. Each write of an existing
//! product is also conditioned on the version it read ([`rewrite`]): two writers racing
//! cannot both win, which is what makes `If-Match` safe, and a writer that lost without an
//! `If-Match` naming a version simply reads again and retries.
//!
//! The product as the API shows it ([`ProductView`]) lives here too, because the events
//! carry it as well as the answers. [`images`] holds the rules of a product's images, and
//! [`search`] the word search.

pub mod images;
pub mod search;

use serde::Serialize;

use crate::audit::{self, Change};
use crate::context::AppContext;
use crate::domain::search::index_words;
use crate::domain::{
    Caller, Description, Job, Money, ProductId, ProductName, Sku, Stock, TenantId,
};
use crate::http::Request;
use crate::repo::products::{self, ImageStatus, Product};
use crate::store::{StoreError, Transaction, TransactionError, TxOp};

pub use images::{
    ImageKeys, Settled, Verdict, IMAGES_PREFIX, MAX_IMAGES, UPLOADS_PREFIX, UPLOAD_TTL,
};
pub use search::{search, Found};

/// How often a write that lost a race reads again and retries, when it may.
const WRITE_ATTEMPTS: usize = 4;

pub(crate) const THE_PRODUCT: &str = "the product";
const THE_SKU: &str = "the sku";

/// Why a catalogue change was refused (`crate::handlers` says what each becomes in HTTP).
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("no such product in this shop")]
    NoSuchProduct,
    #[error("another product of this shop has this sku")]
    SkuTaken,
    /// The client's precondition named a version that is no longer the product's.
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

/// What the client says about the version a change is for (`If-Match`).
pub enum Precondition {
    /// Nothing: the change applies to the product as it is.
    None,
    /// Any version, as long as the product exists (`If-Match: *`).
    Exists,
    /// Only a version this accepts.
    Versions(Box<dyn Fn(u64) -> bool + Send + Sync>),
}

impl Precondition {
    fn holds(&self, version: u64) -> bool {
        match self {
            Self::None | Self::Exists => true,
            Self::Versions(accepts) => accepts(version),
        }
    }

    /// Whether a change that lost a race may read again and retry: unless it names versions
    /// (the one it named is gone: that is a 412).
    fn retries(&self) -> bool {
        !matches!(self, Self::Versions(_))
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
        self.fields().is_empty()
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

/// The product as the API shows it; `ctx` says where its images are served (CloudFront on
/// AWS, the local server locally).
pub fn view(ctx: &AppContext, product: &Product) -> ProductView {
    let served = |key: Option<String>| {
        let base = ctx.images_url.as_deref()?;
        Some(format!("{}/{}", base.trim_end_matches('/'), key?))
    };
    let images = product
        .images
        .iter()
        .map(|image| {
            let keys = ImageKeys::of(product, image);
            let ready = image.status == ImageStatus::Ready;
            ImageView {
                id: image.id.to_string(),
                status: image.status,
                content_type: image.content_type.clone(),
                width: image.width,
                height: image.height,
                url: served(keys.original.filter(|_| ready)),
                thumbnail_url: served(keys.thumbnail.filter(|_| ready)),
            }
        })
        .collect();
    ProductView {
        id: product.id.clone(),
        sku: product.sku.clone(),
        name: product.name.clone(),
        description: product.description.clone(),
        price: product.price.clone(),
        stock: product.stock,
        images,
        created_at: product.created_at.clone(),
        updated_at: product.updated_at.clone(),
    }
}

/// The outbox write telling the outside world of a product change (`product.updated` or
/// `product.deleted`), with the product as the API shows it.
fn event(ctx: &AppContext, kind: &str, product: &Product) -> Result<TxOp, StoreError> {
    crate::events::announce(ctx, &product.tenant_id, kind, &view(ctx, product))
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
    tx.add(
        "the objects' deletion",
        crate::events::queue(ctx, tenant_id, &job)?,
    )?;
    Ok(())
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

/// The transaction that changes a product: the product written back at the next version,
/// conditioned on the version read, its event, and the audit entry of `change` when a
/// caller made it.
fn change_of(
    ctx: &AppContext,
    who: Option<(&Request, &Caller)>,
    change: Change<'_>,
    read: &Product,
    changed: &mut Product,
) -> Result<Transaction<&'static str>, StoreError> {
    changed.version = read.version + 1;
    changed.updated_at = crate::clock::rfc3339(ctx.clock.now());
    let mut tx = match who {
        Some((req, caller)) => audit::recorded(ctx, req, caller, change)?,
        None => audit::recorded_by_system(ctx, &read.tenant_id, change)?,
    };
    tx.add(THE_PRODUCT, products::replace(changed, read.version)?)?;
    tx.add("the event", event(ctx, "product.updated", changed)?)?;
    Ok(tx)
}

/// Reads a product, lets `plan` decide what to write (`None`: nothing), and commits it,
/// conditioned on the version read. A write that lost a race to another reads again and
/// retries, unless the client's precondition named the version it read (412). What `plan`
/// refuses, and a refused sku claim, end it. Answers the product as written (or as read,
/// when nothing was written).
async fn rewrite<F>(
    ctx: &AppContext,
    tenant_id: &TenantId,
    id: &ProductId,
    precondition: &Precondition,
    mut plan: F,
) -> Result<Product, CatalogError>
where
    F: FnMut(&Product) -> Result<Option<(Product, Transaction<&'static str>)>, CatalogError>,
{
    for _ in 0..WRITE_ATTEMPTS {
        let read = products::get(ctx.table.as_ref(), tenant_id, id)
            .await?
            .ok_or(CatalogError::NoSuchProduct)?;
        if !precondition.holds(read.version) {
            return Err(CatalogError::Stale);
        }
        let Some((written, tx)) = plan(&read)? else {
            return Ok(read);
        };
        match tx.commit(ctx.table.as_ref()).await {
            Ok(()) => return Ok(written),
            Err(TransactionError::Refused(THE_SKU)) => return Err(CatalogError::SkuTaken),
            // Another write got in between (its condition, or DynamoDB cancelling one of
            // two transactions on one item): read again, or 412 for a named version.
            Err(TransactionError::Refused(THE_PRODUCT))
            | Err(TransactionError::Store(StoreError::Conflict)) => {
                if !precondition.retries() {
                    return Err(CatalogError::Stale);
                }
            }
            Err(e) => return Err(CatalogError::Store(e.into_store())),
        }
    }
    Err(CatalogError::Contended)
}

/// Creates a product in the caller's shop, whose currency its price must be in (the
/// handler checked it). Of two creates of one sku at once, one lands and the other is
/// refused by the sku lock (after one retry when DynamoDB cancelled both as conflicting).
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
    for _ in 0..2 {
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
            Ok(()) => return Ok(product),
            Err(TransactionError::Refused(THE_SKU)) => return Err(CatalogError::SkuTaken),
            Err(TransactionError::Store(StoreError::Conflict)) => continue,
            Err(e) => return Err(CatalogError::Store(e.into_store())),
        }
    }
    Err(CatalogError::Contended)
}

/// Applies a partial update to a product of the caller's shop (see [`rewrite`]). An update
/// that names no field writes nothing and answers the product as it is.
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn update(
    ctx: &AppContext,
    req: &Request,
    caller: &Caller,
    id: &ProductId,
    changes: Changes,
    precondition: &Precondition,
) -> Result<Product, CatalogError> {
    rewrite(ctx, &caller.tenant_id, id, precondition, |read| {
        if changes.is_empty() {
            return Ok(None);
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
        let change = Change::new("product.updated", "product", id)
            .detail(format!("changed: {}", changes.fields().join(", ")));
        let mut tx = change_of(ctx, Some((req, caller)), change, read, &mut product)?;
        let (old_sku, new_sku) = (
            Sku::unique_key_of(&read.sku),
            Sku::unique_key_of(&product.sku),
        );
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
        Ok(Some((product, tx)))
    })
    .await
}

/// Deletes a product of the caller's shop with its sku lock and word entries, in one
/// transaction conditioned as [`rewrite`]'s are; its images' objects are deleted by a job
/// from the same transaction. Orders keep their own copy of what they sold.
#[tracing::instrument(skip_all, fields(product_id = %id))]
pub async fn delete(
    ctx: &AppContext,
    req: &Request,
    caller: &Caller,
    id: &ProductId,
    precondition: &Precondition,
) -> Result<(), CatalogError> {
    rewrite(ctx, &caller.tenant_id, id, precondition, |product| {
        let mut tx = audit::recorded(
            ctx,
            req,
            caller,
            Change::new("product.deleted", "product", id).detail(format!("sku: {}", product.sku)),
        )?;
        tx.add(THE_PRODUCT, products::remove(product, product.version))?;
        tx.add(
            "the sku lock",
            products::release_sku(&product.tenant_id, &Sku::unique_key_of(&product.sku), id),
        )?;
        for word in &product.words {
            tx.add(
                "a word of the name",
                products::unindex_word(&product.tenant_id, id, word),
            )?;
        }
        tx.add("the event", event(ctx, "product.deleted", product)?)?;
        delete_objects(
            ctx,
            &mut tx,
            &product.tenant_id,
            images::objects_of(product),
        )?;
        Ok(Some((product.clone(), tx)))
    })
    .await
    .map(drop)
}
