//! HTTP helpers shared by every Lambda function and the local server: errors as RFC 9457
//! problems, the request's id, span and client address, JSON in and out, paging, the
//! `Idempotency-Key` edge, and the [`router`]'s types. The path a request takes through
//! them is `crate::edge::dispatch`.

pub mod conditional;
mod error;
pub mod idempotency;
pub mod pagination;
pub mod router;

use http::{header, HeaderValue, StatusCode};
use lambda_http::RequestExt as _;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use error::{enforce, internal, ApiError, FieldError, RateLimited, PROBLEM_BASE, PROBLEM_JSON};

use crate::context::AppContext;
use crate::domain::TypedId;
use crate::ids::IdKind;

pub type Request = lambda_http::Request;
pub type Response = http::Response<lambda_http::Body>;
pub type HandlerResult = Result<Response, ApiError>;

/// The largest request body the API accepts.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
pub const REQUEST_ID: &str = "x-request-id";

/// The id of the request being handled, in the request's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(pub String);

/// The caller's address as the edge saw it (API Gateway's `sourceIp`, or the socket peer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientIp(pub String);

/// The request's span, in the request's extensions, so what is learnt inside a handler (the
/// caller's tenant) lands on it: a handler's own spans are children without those fields.
#[derive(Clone, Debug)]
pub struct RequestSpan(pub tracing::Span);

/// Records the caller's tenant on the request's span, so every log line of the request
/// (its "request served" line included) names the tenant.
pub fn record_tenant(req: &Request, tenant_id: &str) {
    if let Some(RequestSpan(span)) = req.extensions().get::<RequestSpan>() {
        span.record("tenant_id", tenant_id);
    }
}

/// A problem response for a request refused before routing (the local server's body limit,
/// its blob URLs), with a fresh request id like every other response.
pub fn refuse(ctx: &AppContext, error: ApiError) -> Response {
    let request_id = ctx.ids.next(IdKind::Request);
    let mut response = error.into_response(&request_id);
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// The request id `dispatch` gave this request.
pub fn request_id(req: &Request) -> &str {
    req.extensions()
        .get::<RequestId>()
        .map_or("", |r| r.0.as_str())
}

/// The caller's IP address, when the edge knows it.
pub fn client_ip(req: &Request) -> Option<&str> {
    req.extensions().get::<ClientIp>().map(|ip| ip.0.as_str())
}

/// One query-string parameter, read from the URI so Lambda and the local server agree.
pub fn query_param(req: &Request, name: &str) -> Option<String> {
    let query = req.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A path parameter the route matched (`{id}` in `/v1/products/{id}`).
pub fn path_param(req: &Request, name: &str) -> Result<String, ApiError> {
    req.path_parameters()
        .first(name)
        .map(str::to_owned)
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("route has no path parameter `{name}`")))
}

/// A typed id from the path. A malformed id names nothing, so it gets the same 404
/// (`not_found`) as an id that names nothing of the caller's, without a read.
pub fn path_id<T: TypedId>(req: &Request, name: &str, not_found: &str) -> Result<T, ApiError> {
    T::parse(&path_param(req, name)?).map_err(|_| ApiError::not_found(not_found))
}

/// Whether the body is declared `application/json`, in UTF-8 (JSON's only encoding on the
/// wire, RFC 8259 §8.1): no charset, `charset=utf-8`, or its subset `us-ascii`. A body
/// declared in another charset would be misread, so it is refused rather than guessed at.
fn is_utf8_json(req: &Request) -> bool {
    let Some(value) = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut parts = value.split(';').map(str::trim);
    let mime_is_json = parts
        .next()
        .is_some_and(|mime| mime.eq_ignore_ascii_case("application/json"));
    mime_is_json
        && parts.all(|param| match param.split_once('=') {
            Some((name, charset)) if name.trim().eq_ignore_ascii_case("charset") => {
                let charset = charset.trim().trim_matches('"');
                // US-ASCII is a subset of UTF-8.
                ["utf-8", "utf8", "us-ascii"]
                    .iter()
                    .any(|ok| charset.eq_ignore_ascii_case(ok))
            }
            _ => true,
        })
}

/// Parses a JSON body into `T`: 415 unless it is JSON, 400 naming the field when it is
/// malformed, has unknown fields, wrong types or misses a field.
pub fn parse_json<T: DeserializeOwned>(req: &Request) -> Result<T, ApiError> {
    if !is_utf8_json(req) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let body: &[u8] = req.body().as_ref();
    if body.is_empty() {
        return Err(ApiError::bad_request("The request needs a JSON body."));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let field = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("The body is not valid JSON: {inner}"))
        } else {
            let message = inner.to_string();
            let message = message
                .split(" at line ")
                .next()
                .unwrap_or(&message)
                .to_owned();
            ApiError::BadRequest {
                detail: format!("The body does not match the expected shape: {message}."),
                errors: vec![FieldError::new(field_of(&field, &message), message)],
            }
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::bad_request(format!("The body has trailing data: {e}")))?;
    Ok(value)
}

/// The field a shape error is about. An unknown field is already the last step of serde's
/// path; for a missing or repeated one the path stops at the object holding it, and the
/// message names it.
fn field_of(path: &str, message: &str) -> String {
    let path = if path == "." { "" } else { path };
    let named = ["missing field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.rsplit_once('`').map(|(name, _)| name));
    match named {
        Some(name) if path.is_empty() => name.to_owned(),
        Some(name) => format!("{path}.{name}"),
        None => path.to_owned(),
    }
}

/// Reads an optional field of a partial update: absent is `None` (with `#[serde(default)]`),
/// a value is `Some`, and `null` is refused (400 naming the field) rather than quietly read
/// as "unchanged": `{"description": null}` does not say what the client meant.
///
/// `#[serde(default, deserialize_with = "crate::http::not_null")]`
pub fn not_null<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(deserializer).map(Some)
}

/// Turns domain parse results into values, or answers 422 listing every field that failed:
///
/// ```ignore
/// validate! {
///     email = Email::parse(&body.email) => "email",
///     password = Password::parse(&body.password) => "password",
/// }
/// ```
#[macro_export]
macro_rules! validate {
    ($($name:ident = $parsed:expr => $field:expr),+ $(,)?) => {
        let mut errors = Vec::new();
        $(let $name = match $parsed {
            Ok(value) => Some(value),
            Err(e) => {
                errors.push($crate::http::FieldError::new($field, e.to_string()));
                None
            }
        };)+
        $(let Some($name) = $name else {
            return Err($crate::http::ApiError::validation(errors));
        };)+
    };
}

/// A JSON response.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> HandlerResult {
    let body = serde_json::to_string(value).map_err(|e| ApiError::Internal(e.into()))?;
    Ok(json_text(status, body))
}

/// A JSON response of a body already serialised.
fn json_text(status: StatusCode, body: String) -> Response {
    let mut response = http::Response::new(lambda_http::Body::Text(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A 204 with no body.
pub fn no_content() -> Response {
    let mut response = http::Response::new(lambda_http::Body::Empty);
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Owner {
        email: String,
        name: String,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Shop {
        name: String,
        owner: Owner,
    }

    fn field_of_error(body: &str) -> String {
        let req = http::Request::builder()
            .header(header::CONTENT_TYPE, "application/json")
            .body(lambda_http::Body::Text(body.to_owned()))
            .unwrap();
        match parse_json::<Shop>(&req).unwrap_err() {
            ApiError::BadRequest { errors, .. } => errors[0].field.clone(),
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn only_json_in_utf8_is_accepted() {
        let with = |content_type: &str| {
            let req = http::Request::builder()
                .header(header::CONTENT_TYPE, content_type)
                .body(lambda_http::Body::Empty)
                .unwrap();
            is_utf8_json(&req)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=UTF-8"));
        assert!(with("application/json;charset=\"utf-8\""));
        assert!(with("application/json; charset=us-ascii"));
        assert!(!with("application/json; charset=latin-1"));
        assert!(!with("text/plain"));
        assert!(!with("application/json-patch+json"));
    }

    #[test]
    fn a_shape_error_names_the_field_it_is_about() {
        let owner = r#""owner":{"email":"a@example.com","name":"A"}"#;
        assert_eq!(field_of_error(&format!("{{{owner}}}")), "name");
        assert_eq!(
            field_of_error(&format!(r#"{{"name":"S",{owner},"extra":1}}"#)),
            "extra"
        );
        assert_eq!(
            field_of_error(r#"{"name":"S","owner":{"email":"a@example.com"}}"#),
            "owner.name"
        );
        assert_eq!(
            field_of_error(r#"{"name":"S","owner":{"email":5,"name":"A"}}"#),
            "owner.email"
        );
        assert_eq!(
            field_of_error(&format!(r#"{{"name":"S","name":"T",{owner}}}"#)),
            "name"
        );
        assert_eq!(
            field_of_error(
                r#"{"name":"S","owner":{"email":"a@example.com","name":"A","name":"B"}}"#
            ),
            "owner.name"
        );
        assert_eq!(
            field_of_error(r#"{"name":"S","owner":{"email":"a@example.com","name":"A","x`y":1}}"#),
            "owner.x`y"
        );
    }
}
