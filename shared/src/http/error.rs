//! `ApiError`: every way a request can fail, and its RFC 9457 problem document.
//!
//! Each variant says which status it becomes. A 500 or 503 never shows its cause to the
//! client: the cause is logged in full with the request id, and the client gets the id.
//! <https://www.rfc-editor.org/rfc/rfc9457>

use http::{header, HeaderValue, Method, StatusCode};
use serde::Serialize;

use super::Response;
use crate::repo::rate_limits::Decision;

/// The base of every problem `type` URI.
pub const PROBLEM_BASE: &str = "https://storefront.dev/problems/";
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One field that failed validation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Rate-limit details carried by a 429.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimited {
    /// Seconds until a request may succeed again.
    pub retry_after: u64,
    /// The `RateLimit-Policy` header value, e.g. `"login";q=5;w=60`.
    pub policy: String,
    /// The `RateLimit` header value, e.g. `"login";r=0;t=42`.
    pub state: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request is malformed (bad JSON, wrong types, unknown or missing fields).
    #[error("bad request: {detail}")]
    BadRequest {
        detail: String,
        errors: Vec<FieldError>,
    },
    /// 401 with `WWW-Authenticate: Bearer`: no credential, or not a valid one.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 403: a valid credential without the role this needs.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404: no such resource, or not one the caller may know exists.
    #[error("not found: {0}")]
    NotFound(String),
    /// 405 with `Allow`: the path exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed { allow: Vec<Method> },
    /// 409: the request conflicts with the current state; `slug` names the problem type.
    #[error("conflict ({slug}): {detail}")]
    Conflict { slug: &'static str, detail: String },
    /// 412: an `If-Match` precondition failed.
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// 413: the body is over the limit.
    #[error("payload too large")]
    PayloadTooLarge { limit: usize },
    /// 415: the body is not JSON.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 422: well-formed, but breaks a rule; `slug` names the problem type.
    #[error("unprocessable ({slug}): {detail}")]
    Unprocessable {
        slug: &'static str,
        detail: String,
        errors: Vec<FieldError>,
    },
    /// 429 with `Retry-After`, `RateLimit-Policy` and `RateLimit`.
    #[error("rate limited")]
    TooManyRequests(RateLimited),
    /// 503: a dependency is unavailable; the cause is logged, not shown.
    #[error("service unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// 500: a bug or an unexpected failure; the cause is logged, not shown.
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

/// `Ok` when the rate limiter allowed the request, the 429 to answer when it did not.
pub fn enforce(decision: Decision) -> Result<Decision, ApiError> {
    if decision.allowed {
        Ok(decision)
    } else {
        Err(ApiError::TooManyRequests(RateLimited {
            retry_after: decision.reset_after.max(1),
            policy: decision.policy_header(),
            state: decision.state_header(),
        }))
    }
}

/// Why an account could not be created, as the client is told: the one place this
/// domain failure becomes HTTP.
impl From<crate::repo::users::CreateError> for ApiError {
    fn from(error: crate::repo::users::CreateError) -> Self {
        use crate::repo::users::CreateError;
        match error {
            CreateError::TenantMissing => ApiError::not_found("No shop has this id."),
            CreateError::EmailTaken => ApiError::Conflict {
                slug: "email-taken",
                detail: "An account with this email already exists in this shop.".into(),
            },
            CreateError::Store(e) => e.into(),
        }
    }
}

/// A 500 for an unexpected failure (its cause is logged, never shown).
pub fn internal(error: impl Into<anyhow::Error>) -> ApiError {
    ApiError::Internal(error.into())
}

impl ApiError {
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::BadRequest {
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        Self::Unprocessable {
            slug: "validation-failed",
            detail: "The request breaks one or more rules; see `errors`.".into(),
            errors,
        }
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::NotFound(what.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The last segment of the problem `type` URI.
    pub fn slug(&self) -> &'static str {
        match self {
            Self::BadRequest { .. } => "bad-request",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not-found",
            Self::MethodNotAllowed { .. } => "method-not-allowed",
            Self::Conflict { slug, .. } | Self::Unprocessable { slug, .. } => slug,
            Self::PreconditionFailed(_) => "precondition-failed",
            Self::PayloadTooLarge { .. } => "payload-too-large",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::TooManyRequests(_) => "rate-limited",
            Self::Unavailable(_) => "service-unavailable",
            Self::Internal(_) => "internal",
        }
    }

    /// What the client is told; never the internal cause.
    fn detail(&self) -> String {
        match self {
            Self::BadRequest { detail, .. }
            | Self::Conflict { detail, .. }
            | Self::Unprocessable { detail, .. } => detail.clone(),
            Self::Unauthorized(d)
            | Self::Forbidden(d)
            | Self::NotFound(d)
            | Self::PreconditionFailed(d) => d.clone(),
            Self::MethodNotAllowed { allow } => format!(
                "This resource allows {}.",
                allow
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::PayloadTooLarge { limit } => format!("The request body is over {limit} bytes."),
            Self::UnsupportedMediaType => {
                "Send the body as `Content-Type: application/json`.".into()
            }
            Self::TooManyRequests(r) => format!("Too many requests; retry in {} s.", r.retry_after),
            Self::Unavailable(_) => "A dependency is unavailable; retry later.".into(),
            Self::Internal(_) => {
                "Something went wrong on our side. Quote the request id when you report it.".into()
            }
        }
    }

    fn errors(&self) -> &[FieldError] {
        match self {
            Self::BadRequest { errors, .. } | Self::Unprocessable { errors, .. } => errors,
            _ => &[],
        }
    }

    /// Turns the error into its problem+json response, logging server-side causes.
    pub fn into_response(self, request_id: &str) -> Response {
        let status = self.status();
        match &self {
            Self::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "request failed")
            }
            Self::Unavailable(cause) => {
                tracing::warn!(error = format!("{cause:#}"), "dependency unavailable")
            }
            _ => {}
        }
        let problem = Problem {
            type_: format!("{PROBLEM_BASE}{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: self.detail(),
            request_id,
            errors: self.errors(),
        };
        let body = serde_json::to_string(&problem).unwrap_or_else(|_| String::from("{}"));
        let mut response = http::Response::new(lambda_http::Body::Text(body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match &self {
            Self::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            Self::MethodNotAllowed { allow } => {
                let allow = allow
                    .iter()
                    .map(Method::as_str)
                    .collect::<Vec<_>>()
                    .join(", ");
                if let Ok(v) = HeaderValue::from_str(&allow) {
                    headers.insert(header::ALLOW, v);
                }
            }
            Self::Unavailable(_) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::TooManyRequests(r) => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(r.retry_after));
                for (name, value) in [("ratelimit-policy", &r.policy), ("ratelimit", &r.state)] {
                    if let Ok(v) = HeaderValue::from_str(value) {
                        headers.insert(name, v);
                    }
                }
            }
            _ => {}
        }
        response
    }
}

/// A store failure no handler mapped to a domain error: a concurrent transaction is a 409
/// and a throttled or unreachable store a 503, both worth a retry; anything else is ours,
/// a 500.
impl From<crate::store::StoreError> for ApiError {
    fn from(error: crate::store::StoreError) -> Self {
        match error {
            crate::store::StoreError::Conflict => Self::Conflict {
                slug: "conflict",
                detail: "Another request changed the same data at the same time; retry.".into(),
            },
            crate::store::StoreError::Unavailable(cause) => Self::Unavailable(cause),
            other => Self::Internal(anyhow::Error::new(other)),
        }
    }
}

#[derive(Serialize)]
struct Problem<'a> {
    #[serde(rename = "type")]
    type_: String,
    title: &'static str,
    status: u16,
    detail: String,
    request_id: &'a str,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(response: &Response) -> serde_json::Value {
        serde_json::from_slice(response.body().as_ref()).unwrap()
    }

    #[test]
    fn an_internal_error_hides_its_cause_and_carries_the_request_id() {
        let response = ApiError::Internal(anyhow::anyhow!("table secret-table unreachable"))
            .into_response("req_1");
        assert_eq!(response.status(), 500);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let problem = body(&response);
        assert_eq!(problem["type"], "https://storefront.dev/problems/internal");
        assert_eq!(problem["request_id"], "req_1");
        assert!(!problem.to_string().contains("secret-table"));
        assert!(problem.get("errors").is_none());
    }

    #[test]
    fn a_validation_error_lists_its_fields() {
        let response =
            ApiError::validation(vec![FieldError::new("email", "is not an email address")])
                .into_response("r");
        assert_eq!(response.status(), 422);
        assert_eq!(body(&response)["errors"][0]["field"], "email");
    }

    #[test]
    fn a_throttled_store_is_a_retryable_503_and_a_concurrent_transaction_a_409() {
        use crate::store::StoreError;
        let throttled = ApiError::from(StoreError::Unavailable(anyhow::anyhow!(
            "ThrottlingException"
        )))
        .into_response("r");
        assert_eq!(throttled.status(), 503);
        assert_eq!(throttled.headers()[header::RETRY_AFTER], "1");
        assert!(
            !body(&throttled).to_string().contains("Throttling"),
            "the cause stays in the logs"
        );
        assert_eq!(ApiError::from(StoreError::Conflict).status(), 409);
        assert_eq!(
            ApiError::from(StoreError::Invalid("bug".into())).status(),
            500
        );
    }

    #[test]
    fn a_401_challenges_for_a_bearer_token() {
        let response = ApiError::Unauthorized("missing token".into()).into_response("r");
        assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }

    #[test]
    fn a_429_says_when_to_retry_and_which_policy_applied() {
        let response = ApiError::TooManyRequests(RateLimited {
            retry_after: 42,
            policy: "\"login\";q=5;w=60".into(),
            state: "\"login\";r=0;t=42".into(),
        })
        .into_response("r");
        assert_eq!(response.headers()[header::RETRY_AFTER], "42");
        assert_eq!(response.headers()["ratelimit-policy"], "\"login\";q=5;w=60");
        assert_eq!(response.headers()["ratelimit"], "\"login\";r=0;t=42");
    }
}
