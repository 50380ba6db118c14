//! `POST /v1/products`, `GET /v1/products`, `GET /v1/products/{id}`,
//! `PATCH /v1/products/{id}`, `DELETE /v1/products/{id}`: a shop's catalogue.
//!
//! Reads are for anyone: a shop's customers browse before they have an account. An
//! anonymous read names the shop with `?tenant_id=` and may be cached by anyone for a
//! minute; a signed-in read is of the caller's own shop and cached only privately. Every
//! read carries a strong ETag, and `If-None-Match` answers 304. Writes are for staff and
//! above; `If-Match` makes a PATCH or DELETE apply only to the version the client saw.

use http::{header, HeaderValue, StatusCode};
use serde::Deserialize;

use crate::auth::Caller;
use crate::catalog::{self, Changes, NewProduct, Precondition};
use crate::context::AppContext;
use crate::domain::search::query_terms;
use crate::domain::{
    price_in_shop_currency, Currency, Description, Money, ProductId, ProductName, Sku, Stock,
    TenantId, TypedId as _,
};
use crate::handlers::NO_SUCH_PRODUCT;
use crate::http::conditional::{cacheable_json, if_match, strong_etag, tag, Caching, Validator};
use crate::http::pagination::{paged, PageBody};
use crate::http::{
    json, no_content, parse_json, path_id, query_param, ApiError, FieldError, HandlerResult,
    Request,
};
use crate::repo::{products, records, tenants};

/// The longest `?q=` a search takes.
const MAX_QUERY_CHARS: usize = 200;
const NO_SUCH_SHOP: &str = "No shop has this id.";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Price {
    amount: i64,
    currency: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateProduct {
    sku: String,
    name: String,
    /// Required like the rest (the contract's body names it); `""` for none.
    description: String,
    price: Price,
    stock: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateProduct {
    #[serde(default, deserialize_with = "crate::http::not_null")]
    sku: Option<String>,
    #[serde(default, deserialize_with = "crate::http::not_null")]
    name: Option<String>,
    #[serde(default, deserialize_with = "crate::http::not_null")]
    description: Option<String>,
    #[serde(default, deserialize_with = "crate::http::not_null")]
    price: Option<Price>,
    #[serde(default, deserialize_with = "crate::http::not_null")]
    stock: Option<i64>,
}

/// The shop's currency, which every price must be in.
async fn shop_currency(ctx: &AppContext, tenant_id: &TenantId) -> Result<Currency, ApiError> {
    let tenant = tenants::get(ctx.table.as_ref(), tenant_id)
        .await?
        .ok_or_else(|| ApiError::not_found(NO_SUCH_SHOP))?;
    Currency::parse(&tenant.currency)
        .map_err(|e| crate::http::internal(anyhow::anyhow!("stored shop currency {e}")))
}

fn price(body: &Price, shop: &Currency) -> Result<Money, crate::domain::Invalid> {
    price_in_shop_currency(body.amount, &body.currency, shop)
}

/// The strong ETag of a product: its version, which every write raises.
fn etag(product: &products::Product) -> Result<headers::ETag, ApiError> {
    etag_of(product.version)
}

fn etag_of(version: u64) -> Result<headers::ETag, ApiError> {
    strong_etag(&format!("v{version}"))
}

/// The request's `If-Match`, as the catalogue checks it against the version it reads.
fn precondition(req: &Request) -> Result<Precondition, ApiError> {
    Ok(match if_match(req)? {
        None => Precondition::None,
        Some(condition) if condition.is_any() => Precondition::Exists,
        Some(condition) => Precondition::Versions(Box::new(move |version| {
            etag_of(version).is_ok_and(|tag| condition.precondition_passes(&tag))
        })),
    })
}

/// A product answer of a write: the product with its ETag, never cached.
fn written(ctx: &AppContext, status: StatusCode, product: &products::Product) -> HandlerResult {
    let mut response = json(status, &catalog::view(ctx, product))?;
    if status == StatusCode::CREATED {
        if let Ok(location) = HeaderValue::from_str(&format!("/v1/products/{}", product.id)) {
            response.headers_mut().insert(header::LOCATION, location);
        }
    }
    Ok(tag(response, &etag(product)?, None))
}

/// Adds a product to the caller's shop: 201 with its ETag; 409 when the sku is taken.
#[tracing::instrument(skip_all)]
pub async fn create(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let body: CreateProduct = parse_json(&req)?;
    let shop = shop_currency(ctx, &caller.tenant_id).await?;
    crate::validate! {
        sku = Sku::parse(&body.sku) => "sku",
        name = ProductName::parse(&body.name) => "name",
        description = Description::parse(&body.description) => "description",
        price = price(&body.price, &shop) => "price",
        stock = Stock::parse(body.stock) => "stock",
    }
    let new = NewProduct {
        sku,
        name,
        description,
        price,
        stock,
    };
    let product = catalog::create(ctx, &req, &caller, new).await?;
    tracing::info!(product_id = %product.id, "product created");
    written(ctx, StatusCode::CREATED, &product)
}

/// The shop a read is of, and how its answer may be cached: a signed-in caller reads their
/// own shop (private); anyone else names it with `?tenant_id=` (public).
fn shop_of(req: &Request, caller: Option<&Caller>) -> Result<(TenantId, Caching), ApiError> {
    let named = query_param(req, "tenant_id");
    match (caller, named) {
        (Some(caller), None) => Ok((caller.tenant_id.clone(), Caching::Private)),
        (Some(caller), Some(named)) if named == caller.tenant_id.as_str() => {
            Ok((caller.tenant_id.clone(), Caching::Private))
        }
        (Some(_), Some(_)) => Err(ApiError::BadRequest {
            detail: "`tenant_id` names another shop than your credential's; leave it out to \
                     read your own shop, or send no credential to browse another."
                .into(),
            errors: vec![FieldError::new("tenant_id", "is not your shop")],
        }),
        (None, Some(named)) => TenantId::parse(&named)
            .map(|id| (id, Caching::Public))
            .map_err(|e| ApiError::BadRequest {
                detail: format!("`tenant_id` {e}."),
                errors: vec![FieldError::new("tenant_id", e.to_string())],
            }),
        (None, None) => Err(ApiError::BadRequest {
            detail: "Name the shop with `?tenant_id=`, or sign in to read your own.".into(),
            errors: vec![FieldError::new(
                "tenant_id",
                "is required without a credential",
            )],
        }),
    }
}

/// The search terms of `?q=`, when it asks for a search; 400 when it is overlong or has no
/// letter or digit to look up.
fn search_terms(req: &Request) -> Result<Option<Vec<String>>, ApiError> {
    let Some(q) = query_param(req, "q").filter(|q| !q.trim().is_empty()) else {
        return Ok(None);
    };
    let refuse = |message: &str| ApiError::BadRequest {
        detail: format!("`q` {message}."),
        errors: vec![FieldError::new("q", message)],
    };
    if q.chars().count() > MAX_QUERY_CHARS {
        return Err(refuse(&format!(
            "must be at most {MAX_QUERY_CHARS} characters"
        )));
    }
    let terms = query_terms(&q);
    if terms.is_empty() {
        return Err(refuse("must hold a letter or a digit"));
    }
    Ok(Some(terms))
}

/// The shop's products, newest first, or with `?q=` those found by it; a page at a time.
#[tracing::instrument(skip_all)]
pub async fn list(req: Request, ctx: &AppContext, caller: Option<Caller>) -> HandlerResult {
    let (tenant_id, caching) = shop_of(&req, caller.as_ref())?;
    crate::http::record_tenant(&req, tenant_id.as_str());
    let table = ctx.table.as_ref();
    let (found, next) = match search_terms(&req)? {
        Some(terms) => {
            // The longest term is the most selective one to look up.
            let lookup = terms
                .iter()
                .max_by_key(|t| t.chars().count())
                .cloned()
                .unwrap_or_default();
            let query = products::words_starting(&tenant_id, &lookup)
                .ok_or_else(|| ApiError::bad_request("`q` must hold a letter or a digit."))?;
            let found =
                catalog::search(ctx, &tenant_id, &terms, &lookup, paged(&req, query)?).await?;
            (found.products, found.next)
        }
        None => {
            let query = paged(&req, products::newest_first(&tenant_id))?;
            records::<products::Product>(table, query).await?
        }
    };
    // An empty page of a shop that does not exist is a 404, not a success that hides a typo.
    if found.is_empty() && tenants::get(table, &tenant_id).await?.is_none() {
        return Err(ApiError::not_found(NO_SUCH_SHOP));
    }
    let page = PageBody::new(found.iter().map(|p| catalog::view(ctx, p)).collect(), next);
    cacheable_json(&req, Validator::Content, caching, &page)
}

/// One product: 200 with its ETag, or 304 when `If-None-Match` holds it.
#[tracing::instrument(skip_all)]
pub async fn get(req: Request, ctx: &AppContext, caller: Option<Caller>) -> HandlerResult {
    let (tenant_id, caching) = shop_of(&req, caller.as_ref())?;
    crate::http::record_tenant(&req, tenant_id.as_str());
    let id: ProductId = path_id(&req, "id", NO_SUCH_PRODUCT)?;
    let product = products::get(ctx.table.as_ref(), &tenant_id, &id)
        .await?
        .ok_or_else(|| ApiError::not_found(NO_SUCH_PRODUCT))?;
    cacheable_json(
        &req,
        Validator::Tag(&etag(&product)?),
        caching,
        &catalog::view(ctx, &product),
    )
}

/// Changes the fields the body names; with `If-Match`, only if the product is still at
/// that version (412 otherwise, and nothing changes).
#[tracing::instrument(skip_all)]
pub async fn update(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let id: ProductId = path_id(&req, "id", NO_SUCH_PRODUCT)?;
    let precondition = precondition(&req)?;
    let body: UpdateProduct = parse_json(&req)?;
    let shop = match &body.price {
        Some(_) => Some(shop_currency(ctx, &caller.tenant_id).await?),
        None => None,
    };
    crate::validate! {
        sku = body.sku.as_deref().map(Sku::parse).transpose() => "sku",
        name = body.name.as_deref().map(ProductName::parse).transpose() => "name",
        description = body.description.as_deref().map(Description::parse).transpose() => "description",
        price = match (&body.price, &shop) {
            (Some(p), Some(shop)) => price(p, shop).map(Some),
            _ => Ok(None),
        } => "price",
        stock = body.stock.map(Stock::parse).transpose() => "stock",
    }
    let changes = Changes {
        sku,
        name,
        description,
        price,
        stock,
    };
    let product = catalog::update(ctx, &req, &caller, &id, changes, &precondition).await?;
    tracing::info!(product_id = %product.id, version = product.version, "product updated");
    written(ctx, StatusCode::OK, &product)
}

/// Takes a product out of the catalogue (listings, search and reads); with `If-Match`,
/// only if it is still at that version.
#[tracing::instrument(skip_all)]
pub async fn delete(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let id: ProductId = path_id(&req, "id", NO_SUCH_PRODUCT)?;
    let precondition = precondition(&req)?;
    catalog::delete(ctx, &req, &caller, &id, &precondition).await?;
    tracing::info!(product_id = %id, "product deleted");
    Ok(no_content())
}
