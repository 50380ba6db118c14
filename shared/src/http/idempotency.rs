//! `Idempotency-Key` at the HTTP edge: reads the header, claims the key in the
//! [idempotency store](crate::repo::idempotency), and turns the store's answers into HTTP:
//! a missing or malformed key is 400, the same key with another request 422, the same key
//! still in flight 409, and a replay the first answer again, marked
//! `Idempotent-Replayed: true` as Stripe does.
//! <https://datatracker.ietf.org/doc/draft-ietf-httpapi-idempotency-key-header/>

use http::{header, HeaderName, HeaderValue, StatusCode};

use super::{request_id, ApiError, Request, Response};
use crate::context::AppContext;
use crate::domain::TenantId;
use crate::ids::IdKind;
use crate::repo::idempotency::{
    self, Begin, IdempotencyKey, Lease, Refusal, Scope, StoredResponse,
};

pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// Marks an answer that is a replay of an earlier one.
pub const REPLAYED: &str = "idempotent-replayed";

/// The headers a stored answer keeps besides its body.
const KEPT_HEADERS: [HeaderName; 3] = [header::CONTENT_TYPE, header::ETAG, header::LOCATION];

/// What the handler does next.
#[derive(Debug)]
pub enum Claim {
    /// Do the work; put `lease.complete(&stored(&response))` into the change's transaction.
    Run(Lease),
    /// Answer this: the work was done before.
    Replay(Response),
}

/// The request's `Idempotency-Key`: 400 when it is missing or malformed.
pub fn key(req: &Request) -> Result<IdempotencyKey, ApiError> {
    let value = req
        .headers()
        .get(IDEMPOTENCY_KEY)
        .ok_or_else(|| ApiError::BadRequest {
            detail: "This request needs an `Idempotency-Key` header (a UUID is a good key), so a retry cannot repeat it.".into(),
            errors: vec![super::FieldError::new("Idempotency-Key", "missing")],
        })?;
    let text = value
        .to_str()
        .map_err(|_| "An idempotency key is visible ASCII characters, with no spaces.".to_owned())
        .and_then(IdempotencyKey::parse);
    text.map_err(|message| ApiError::BadRequest {
        detail: message.clone(),
        errors: vec![super::FieldError::new("Idempotency-Key", message)],
    })
}

/// What makes two requests "the same": method, path and query, and the exact body.
pub fn fingerprint(req: &Request) -> String {
    let mut bytes = Vec::with_capacity(req.body().len() + 64);
    bytes.extend_from_slice(req.method().as_str().as_bytes());
    bytes.push(b'\n');
    let target = req.uri().path_and_query().map_or("", |p| p.as_str());
    bytes.extend_from_slice(target.as_bytes());
    bytes.push(b'\n');
    bytes.extend_from_slice(req.body().as_ref());
    crate::crypto::sha256_hex(&bytes)
}

/// Claims the request's key for `principal` of a shop (a caller's
/// [`Caller::principal_id`](crate::domain::Caller::principal_id), or a name of its own for
/// a request with no caller, such as a payment provider's webhook), or says why not.
pub async fn claim(
    req: &Request,
    ctx: &AppContext,
    tenant_id: &TenantId,
    principal: &str,
) -> Result<Claim, ApiError> {
    let scope = Scope {
        tenant_id: tenant_id.clone(),
        principal: principal.to_owned(),
        key: key(req)?,
    };
    // The request id names the holder; a request that bypassed `dispatch` gets its own.
    let holder = match request_id(req) {
        "" => ctx.ids.next(IdKind::Request),
        id => id.to_owned(),
    };
    let begun = idempotency::begin(
        ctx.table.as_ref(),
        &scope,
        &fingerprint(req),
        &holder,
        ctx.clock.now(),
    )
    .await;
    match begun {
        Ok(Begin::Started(lease)) => Ok(Claim::Run(lease)),
        Ok(Begin::Replay(stored)) => Ok(Claim::Replay(replay(&stored)?)),
        Err(Refusal::InFlight) => Err(ApiError::Conflict {
            slug: "idempotency-key-in-flight",
            detail: "A request with this Idempotency-Key is still being processed; retry shortly.".into(),
        }),
        Err(Refusal::Mismatch) => Err(ApiError::Unprocessable {
            slug: "idempotency-key-reused",
            detail: "This Idempotency-Key was used for a different request; use a new key for a new request.".into(),
            errors: Vec::new(),
        }),
        Err(Refusal::Store(e)) => Err(e.into()),
    }
}

/// The answer to keep for replay: status, the headers worth keeping, and the body.
pub fn stored(response: &Response) -> Result<StoredResponse, ApiError> {
    let body = match response.body() {
        lambda_http::Body::Empty => String::new(),
        lambda_http::Body::Text(text) => text.clone(),
        _ => {
            return Err(super::internal(anyhow::anyhow!(
                "an idempotent answer must be text"
            )))
        }
    };
    let headers = KEPT_HEADERS
        .iter()
        .filter_map(|name| {
            let value = response.headers().get(name)?.to_str().ok()?;
            Some((name.as_str().to_owned(), value.to_owned()))
        })
        .collect();
    Ok(StoredResponse {
        status: response.status().as_u16(),
        headers,
        body,
    })
}

/// The stored answer as a response again, marked as a replay.
pub fn replay(stored: &StoredResponse) -> Result<Response, ApiError> {
    let status = StatusCode::from_u16(stored.status).map_err(super::internal)?;
    let body = if stored.body.is_empty() {
        lambda_http::Body::Empty
    } else {
        lambda_http::Body::Text(stored.body.clone())
    };
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    for (name, value) in &stored.headers {
        let name = HeaderName::try_from(name.as_str()).map_err(super::internal)?;
        let value = HeaderValue::try_from(value.as_str()).map_err(super::internal)?;
        response.headers_mut().insert(name, value);
    }
    response
        .headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(key: Option<&str>, body: &str) -> Request {
        let mut builder = http::Request::builder()
            .method("POST")
            .uri("https://api.example/v1/orders");
        if let Some(key) = key {
            builder = builder.header(IDEMPOTENCY_KEY, key);
        }
        builder
            .body(lambda_http::Body::Text(body.to_owned()))
            .unwrap()
    }

    #[test]
    fn a_missing_or_malformed_key_is_a_400_naming_the_header() {
        for key in [
            None,
            Some(""),
            Some("has space"),
            Some(&"k".repeat(256)[..]),
        ] {
            let error = super::key(&request(key, "{}")).unwrap_err();
            assert_eq!(error.status(), 400, "{key:?}");
            assert!(format!("{error:?}").contains("Idempotency-Key"), "{key:?}");
        }
        let ok = super::key(&request(Some("0b0c8f4e-6f1e-4c52-9b8d-3d1c1b0b7a11"), "{}")).unwrap();
        assert_eq!(ok.as_str(), "0b0c8f4e-6f1e-4c52-9b8d-3d1c1b0b7a11");
    }

    #[test]
    fn requests_differing_only_in_body_have_different_fingerprints() {
        let a = fingerprint(&request(Some("k"), r#"{"quantity":1}"#));
        let b = fingerprint(&request(Some("k"), r#"{"quantity":2}"#));
        let again = fingerprint(&request(Some("other key"), r#"{"quantity":1}"#));
        assert_ne!(a, b);
        assert_eq!(a, again, "the key itself is not part of the fingerprint");
    }

    #[test]
    fn a_stored_answer_replays_with_its_status_headers_and_body_and_a_replay_mark() {
        let mut original = super::super::json(
            StatusCode::CREATED,
            &serde_json::json!({"id": "ord_01JD0000000000000000000000"}),
        )
        .unwrap();
        original
            .headers_mut()
            .insert(header::ETAG, HeaderValue::from_static("\"v1\""));
        original
            .headers_mut()
            .insert("x-other", HeaderValue::from_static("not kept"));
        let kept = stored(&original).unwrap();
        let again = replay(&kept).unwrap();
        assert_eq!(again.status(), StatusCode::CREATED);
        assert_eq!(again.headers()[header::ETAG], "\"v1\"");
        assert_eq!(again.headers()[header::CONTENT_TYPE], "application/json");
        assert_eq!(again.headers()[REPLAYED], "true");
        assert!(again.headers().get("x-other").is_none());
        assert_eq!(again.body(), original.body());
    }
}
