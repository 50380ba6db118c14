//! `GET /.well-known/jwks.json`: the public keys that verify access tokens.

use http::{header, HeaderValue, StatusCode};

use crate::context::AppContext;
use crate::http::{json, HandlerResult, Request};

/// The live public keys (RFC 7517), cacheable for five minutes.
pub async fn get(_req: Request, ctx: &AppContext) -> HandlerResult {
    let mut response = json(StatusCode::OK, ctx.keys.jwks())?;
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(response)
}
