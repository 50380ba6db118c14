//! `POST /v1/products/{id}/images`, `DELETE /v1/products/{id}/images/{image_id}`: a
//! product's images. Adding one answers a presigned PUT: the client uploads the file
//! straight to the bucket (never through a function), bound to the type and length it
//! declared, within 15 minutes; the image worker then checks it and makes its thumbnail.

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::auth::Caller;
use crate::catalog::images::{self, ImageKeys, UPLOAD_TTL};
use crate::context::AppContext;
use crate::domain::{ImageId, Invalid, ProductId};
use crate::handlers::{NO_SUCH_IMAGE, NO_SUCH_PRODUCT};
use crate::http::{internal, json, no_content, parse_json, path_id, HandlerResult, Request};
use crate::imaging::{Kind, MAX_UPLOAD_BYTES};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddImage {
    content_type: String,
    content_length: u64,
}

#[derive(Serialize)]
struct Added {
    image_id: ImageId,
    upload: Upload,
}

/// The request the client makes to upload the file.
#[derive(Serialize)]
struct Upload {
    method: String,
    url: String,
    headers: std::collections::BTreeMap<String, String>,
    expires_at: String,
}

fn image_kind(content_type: &str) -> Result<Kind, Invalid> {
    Kind::from_content_type(content_type)
        .ok_or_else(|| Invalid("must be image/jpeg, image/png or image/webp".into()))
}

fn upload_length(length: u64) -> Result<u64, Invalid> {
    if (1..=MAX_UPLOAD_BYTES).contains(&length) {
        Ok(length)
    } else {
        Err(Invalid(format!(
            "must be from 1 to {MAX_UPLOAD_BYTES} bytes (10 MiB)"
        )))
    }
}

/// Adds a pending image to a product and answers the presigned upload for it: 201; 409
/// `too-many-images` when the product has ten.
#[tracing::instrument(skip_all)]
pub async fn create(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let id: ProductId = path_id(&req, "id", NO_SUCH_PRODUCT)?;
    let body: AddImage = parse_json(&req)?;
    crate::validate! {
        kind = image_kind(&body.content_type) => "content_type",
        length = upload_length(body.content_length) => "content_length",
    }
    let (product, image) = images::add(ctx, &req, &caller, &id, kind, length).await?;
    let key = ImageKeys::of(&product, &image).upload;
    let presigned = ctx
        .blobs
        .presign_put(&key, kind.content_type(), length, UPLOAD_TTL)
        .await
        .map_err(internal)?;
    tracing::info!(product_id = %id, image_id = %image.id, "image upload presigned");
    json(
        StatusCode::CREATED,
        &Added {
            image_id: image.id,
            upload: Upload {
                method: presigned.method,
                url: presigned.url,
                headers: presigned.headers,
                expires_at: crate::clock::rfc3339(presigned.expires_at),
            },
        },
    )
}

/// Removes an image from a product; its objects are deleted by a job.
#[tracing::instrument(skip_all)]
pub async fn delete(req: Request, ctx: &AppContext, caller: Caller) -> HandlerResult {
    let id: ProductId = path_id(&req, "id", NO_SUCH_PRODUCT)?;
    let image_id: ImageId = path_id(&req, "image_id", NO_SUCH_IMAGE)?;
    images::remove(ctx, &req, &caller, &id, &image_id).await?;
    tracing::info!(product_id = %id, image_id = %image_id, "image deleted");
    Ok(no_content())
}
