//! Conditional requests and caching (RFC 9110 §13, RFC 9111): strong `ETag`s,
//! `If-None-Match` answered with 304, `If-Match` read for the store's own condition, and the
//! `Cache-Control` a read answers with. Entity-tag lists, `*` and weak tags are parsed and
//! compared by the `headers` crate, as the RFC's comparison functions ask.

use headers::{ETag, HeaderMapExt as _, IfMatch, IfNoneMatch};
use http::{header, HeaderValue, StatusCode};

use super::{ApiError, HandlerResult, Request, Response};

/// A strong entity tag from an opaque value of letters, digits, `.`, `-` and `_`.
pub fn strong_etag(opaque: &str) -> Result<ETag, ApiError> {
    format!("\"{opaque}\"")
        .parse::<ETag>()
        .map_err(|_| super::internal(anyhow::anyhow!("`{opaque}` makes no entity tag")))
}

/// A strong entity tag of a body's bytes: for answers with no version of their own (a page).
fn content_etag(body: &[u8]) -> Result<ETag, ApiError> {
    let digest = crate::crypto::sha256_hex(body);
    strong_etag(&digest[..32])
}

/// Whether the request's `If-None-Match` matches `etag` (weak comparison, RFC 9110
/// §13.1.2), so the client's copy is current and the answer is a 304. A header that does
/// not parse is ignored, as a cache would ignore it.
pub fn not_modified(req: &Request, etag: &ETag) -> bool {
    req.headers()
        .typed_get::<IfNoneMatch>()
        .is_some_and(|condition| !condition.precondition_passes(etag))
}

/// The request's `If-Match`, if any; 400 when it is present but not a header value at all
/// (empty, or repeated across several lines). An element that is no entity tag (`v3`
/// without its quotes) matches nothing, so the precondition fails (412).
pub fn if_match(req: &Request) -> Result<Option<IfMatch>, ApiError> {
    req.headers().typed_try_get::<IfMatch>().map_err(|_| {
        ApiError::bad_request("`If-Match` must be `*` or a list of quoted entity tags.")
    })
}

/// How a read may be cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caching {
    /// Anyone may keep it for a minute: an anonymous read of a shop's public catalogue.
    Public,
    /// Only the caller's own client may keep it, and must revalidate it (with its ETag)
    /// before each use: a signed-in read.
    Private,
}

impl Caching {
    fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Self::Public => "public, max-age=60",
            Self::Private => "private, no-cache",
        })
    }
}

/// Puts `etag` and the caching rule on a response. `Vary: Authorization`, because one URL
/// answers an anonymous and a signed-in caller differently.
pub fn tag(mut response: Response, etag: &ETag, caching: Option<Caching>) -> Response {
    let headers = response.headers_mut();
    headers.typed_insert(etag.clone());
    if let Some(caching) = caching {
        headers.insert(header::CACHE_CONTROL, caching.header());
        headers.insert(header::VARY, HeaderValue::from_static("authorization"));
    }
    response
}

/// The entity tag a cacheable answer carries.
pub enum Validator<'a> {
    /// Its own (a product's version).
    Tag(&'a ETag),
    /// A hash of the body (a page, which has no version of its own).
    Content,
}

/// A cacheable JSON read: 304 with no body when the client's `If-None-Match` matches its
/// entity tag (the body is never sent), the JSON otherwise; both tagged and with
/// `caching`. The body is serialised once, and not at all for a 304 of a tag of its own.
pub fn cacheable_json<T: serde::Serialize>(
    req: &Request,
    validator: Validator<'_>,
    caching: Caching,
    value: &T,
) -> HandlerResult {
    let serialise = || serde_json::to_string(value).map_err(super::internal);
    let (etag, body) = match validator {
        Validator::Tag(etag) => (etag.clone(), None),
        Validator::Content => {
            let body = serialise()?;
            (content_etag(body.as_bytes())?, Some(body))
        }
    };
    let response = if not_modified(req, &etag) {
        let mut response = http::Response::new(lambda_http::Body::Empty);
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response
    } else {
        let body = match body {
            Some(body) => body,
            None => serialise()?,
        };
        super::json_text(StatusCode::OK, body)
    };
    Ok(tag(response, &etag, Some(caching)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str, value: &str) -> Request {
        http::Request::builder()
            .header(name, value)
            .body(lambda_http::Body::Empty)
            .unwrap()
    }

    #[test]
    fn if_none_match_matches_by_weak_comparison_in_a_list_or_with_a_star() {
        let etag = strong_etag("v3").unwrap();
        for matching in ["\"v3\"", "W/\"v3\"", "\"v1\", \"v3\"", "*"] {
            assert!(
                not_modified(&request("if-none-match", matching), &etag),
                "{matching}"
            );
        }
        for other in ["\"v2\"", "v3", ""] {
            assert!(
                !not_modified(&request("if-none-match", other), &etag),
                "{other}"
            );
        }
    }

    #[test]
    fn if_match_compares_strongly_and_a_malformed_tag_never_matches() {
        let etag = strong_etag("v3").unwrap();
        let read = |value: &str| if_match(&request("if-match", value));
        assert!(read("\"v3\"").unwrap().unwrap().precondition_passes(&etag));
        assert!(read("*").unwrap().unwrap().precondition_passes(&etag));
        assert!(!read("W/\"v3\"")
            .unwrap()
            .unwrap()
            .precondition_passes(&etag));
        assert!(!read("\"v2\"").unwrap().unwrap().precondition_passes(&etag));
        let unquoted = read("v3").map(|m| m.is_some_and(|m| m.precondition_passes(&etag)));
        assert!(!unquoted.unwrap_or(false), "an unquoted tag never matches");
    }

    #[test]
    fn a_body_tag_changes_with_the_body() {
        assert_eq!(content_etag(b"a").unwrap(), content_etag(b"a").unwrap());
        assert_ne!(content_etag(b"a").unwrap(), content_etag(b"b").unwrap());
    }
}
