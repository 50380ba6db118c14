//! A shop's catalogue: products, their unique skus and the word index search reads.
//!
//! - product: `TENANT#<tid>#PRODUCT#<pid>` / `PRODUCT`, listed newest first through `gsi1`
//!   under `TENANT#<tid>#PRODUCTS` with the product id (a ULID, time-sortable) as sort key.
//!   Its images live in the item (at most ten), so a page of products is one query.
//!   `version` counts its writes: every write sets it one higher under a condition on the
//!   version it read, which is what makes the ETag strong and `If-Match` race-free.
//! - sku lock: `TENANT#<tid>#SKU#<SKU in upper case>` / `SKU`, written with `NotExists` in
//!   the product's transaction, so two products can never hold one sku.
//! - word entry: `TENANT#<tid>#PRODUCT#<pid>` / `WORD#<word>`, one per distinct word of the
//!   name, in `gsi1` under `TENANT#<tid>#WORDS#<first character>` sorted by
//!   `<word>#<pid>`: a search for a prefix is one index query in one partition. Each entry
//!   carries all the name's words, so a search of several words and the removal of
//!   duplicates need no further read.

use serde::{Deserialize, Serialize};

use crate::domain::{ImageId, Money, ProductId, TenantId};
use crate::store::{
    Condition, Consistency, Index, Item, Key, Query, SortKey, StoreError, Table, TxOp, UpdateOp,
};

/// The sort key of a product item.
const PRODUCT: &str = "PRODUCT";
/// The sort-key prefix of a product's word entries.
const WORD: &str = "WORD#";

/// A product as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: ProductId,
    pub tenant_id: TenantId,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price: Money,
    pub stock: u32,
    #[serde(default)]
    pub images: Vec<Image>,
    /// The folded words of the name, as indexed (see `crate::domain::search`).
    pub words: Vec<String>,
    /// How many writes the product has had; the ETag is made from it.
    pub version: u64,
    pub created_at: String,
    pub updated_at: String,
}

/// An image of a product, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    pub id: ImageId,
    pub status: ImageStatus,
    pub content_type: String,
    pub content_length: u64,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    /// Why the worker refused the upload, for a `rejected` image.
    #[serde(default)]
    pub reason: Option<String>,
    /// A hash of the bytes a `ready` image was made from, which its objects' keys name
    /// (`crate::catalog::images`).
    #[serde(default)]
    pub variant: Option<String>,
    pub created_at: String,
    /// When the presigned upload stops being accepted.
    pub upload_expires_at: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageStatus {
    Pending,
    Ready,
    Rejected,
}

pub fn key(tenant_id: &str, product_id: &str) -> Key {
    Key::new(format!("TENANT#{tenant_id}#PRODUCT#{product_id}"), PRODUCT)
}

pub fn catalogue_partition(tenant_id: &str) -> String {
    format!("TENANT#{tenant_id}#PRODUCTS")
}

pub fn sku_key(tenant_id: &str, sku_unique: &str) -> Key {
    Key::new(format!("TENANT#{tenant_id}#SKU#{sku_unique}"), "SKU")
}

fn word_key(tenant_id: &str, product_id: &str, word: &str) -> Key {
    Key::new(
        format!("TENANT#{tenant_id}#PRODUCT#{product_id}"),
        format!("{WORD}{word}"),
    )
}

/// The index partition of the words starting with `first`: the catalogue's words spread
/// over one partition per first character.
pub fn words_partition(tenant_id: &str, first: char) -> String {
    format!("TENANT#{tenant_id}#WORDS#{first}")
}

/// The product as an item of the table, in the catalogue's listing.
fn item(product: &Product) -> Result<Item, StoreError> {
    Ok(Item::new(&key(&product.tenant_id, &product.id))
        .with_record(product)?
        .with_gsi1(catalogue_partition(&product.tenant_id), product.id.as_str()))
}

/// Writes a new product; refused if its id is taken.
pub fn insert(product: &Product) -> Result<TxOp, StoreError> {
    Ok(TxOp::Put {
        item: item(product)?,
        condition: Some(Condition::NotExists),
    })
}

/// Replaces the product, refused unless it is still at `read_version` (nobody wrote it
/// since it was read).
pub fn replace(product: &Product, read_version: u64) -> Result<TxOp, StoreError> {
    Ok(TxOp::Put {
        item: item(product)?,
        condition: Some(Condition::eq("version", read_version)),
    })
}

/// Deletes the product, refused unless it is still at `read_version`.
pub fn remove(product: &Product, read_version: u64) -> TxOp {
    TxOp::Delete {
        key: key(&product.tenant_id, &product.id),
        condition: Some(Condition::eq("version", read_version)),
    }
}

/// Takes `units` from the product's stock, refused unless it has that many (a product
/// that no longer exists has none): the whole of "never oversell", since DynamoDB checks
/// the condition and writes in one step, whatever runs beside it. The version rises as with
/// every write, so ETags and `If-Match` see the change.
pub fn take_stock(tenant_id: &str, product_id: &str, units: u32, now: &str) -> TxOp {
    TxOp::Update {
        key: key(tenant_id, product_id),
        ops: vec![
            UpdateOp::add("stock", -i64::from(units)),
            UpdateOp::add("version", 1),
            UpdateOp::set("updated_at", now),
        ],
        condition: Some(Condition::ge("stock", units)),
    }
}

/// Gives `units` back to the product's stock (an order cancelled), refused if the product
/// no longer exists: an update must not bring a deleted product back as a bare item.
pub fn return_stock(tenant_id: &str, product_id: &str, units: u32, now: &str) -> TxOp {
    TxOp::Update {
        key: key(tenant_id, product_id),
        ops: vec![
            UpdateOp::add("stock", i64::from(units)),
            UpdateOp::add("version", 1),
            UpdateOp::set("updated_at", now),
        ],
        condition: Some(Condition::AttrExists("version".into())),
    }
}

/// What a sku lock records.
#[derive(Serialize, Deserialize)]
struct SkuLock {
    product_id: ProductId,
}

/// Claims a sku for a product; refused when another product holds it.
pub fn claim_sku(
    tenant_id: &str,
    sku_unique: &str,
    product_id: &ProductId,
) -> Result<TxOp, StoreError> {
    let lock = SkuLock {
        product_id: product_id.clone(),
    };
    Ok(TxOp::Put {
        item: Item::new(&sku_key(tenant_id, sku_unique)).with_record(&lock)?,
        condition: Some(Condition::NotExists),
    })
}

/// Releases a product's sku (refused if the lock is not the product's: a bug, never input).
pub fn release_sku(tenant_id: &str, sku_unique: &str, product_id: &ProductId) -> TxOp {
    TxOp::Delete {
        key: sku_key(tenant_id, sku_unique),
        condition: Some(Condition::eq("product_id", product_id.as_str())),
    }
}

/// What a word entry records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct WordEntry {
    pub product_id: ProductId,
    /// Every word of the product's name.
    pub words: Vec<String>,
}

/// Indexes one word of a product's name (or rewrites its entry when the other words of the
/// name changed).
pub fn index_word(product: &Product, word: &str) -> Result<TxOp, StoreError> {
    let first = word
        .chars()
        .next()
        .ok_or_else(|| StoreError::Invalid("an empty word cannot be indexed".into()))?;
    let entry = WordEntry {
        product_id: product.id.clone(),
        words: product.words.clone(),
    };
    let item = Item::new(&word_key(&product.tenant_id, &product.id, word))
        .with_record(&entry)?
        .with_gsi1(
            words_partition(&product.tenant_id, first),
            format!("{word}#{}", product.id),
        );
    Ok(TxOp::Put {
        item,
        condition: None,
    })
}

/// Removes one word of a product's name from the index.
pub fn unindex_word(tenant_id: &str, product_id: &str, word: &str) -> TxOp {
    TxOp::Delete {
        key: word_key(tenant_id, product_id, word),
        condition: None,
    }
}

pub async fn get(
    table: &dyn Table,
    tenant_id: &str,
    product_id: &str,
) -> Result<Option<Product>, StoreError> {
    table
        .get(&key(tenant_id, product_id))
        .await?
        .map(|item| item.record())
        .transpose()
}

/// The products of these ids (at most [`crate::store::MAX_GET_MANY`]), in the order
/// given, `None` for those that do not exist; one batch read.
pub async fn get_many(
    table: &dyn Table,
    tenant_id: &str,
    product_ids: &[ProductId],
    consistency: Consistency,
) -> Result<Vec<Option<Product>>, StoreError> {
    if product_ids.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<Key> = product_ids.iter().map(|id| key(tenant_id, id)).collect();
    table
        .get_many(&keys, consistency)
        .await?
        .into_iter()
        .map(|item| item.map(|item| item.record()).transpose())
        .collect()
}

/// A shop's catalogue, newest first.
pub fn newest_first(tenant_id: &str) -> Query {
    Query::partition(Index::Gsi1, catalogue_partition(tenant_id)).backward()
}

/// The word entries of a shop's catalogue whose word starts with `prefix` (non-empty), in
/// word order.
pub fn words_starting(tenant_id: &str, prefix: &str) -> Option<Query> {
    let first = prefix.chars().next()?;
    Some(
        Query::partition(Index::Gsi1, words_partition(tenant_id, first))
            .sort(SortKey::BeginsWith(prefix.to_owned())),
    )
}

/// The word of an index entry: its sort key up to the product id.
pub fn entry_word(item: &Item) -> Option<&str> {
    item.get_str(crate::store::GSI1SK)
        .and_then(|sk| sk.rsplit_once('#'))
        .map(|(word, _)| word)
}
