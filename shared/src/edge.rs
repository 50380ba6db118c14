//! The edge: the one path every request takes, on Lambda and on the local server alike.
//!
//! [`dispatch`] names the request (id, span, client address), enforces the body limit,
//! finds the route (404/405 as problems), admits the caller the route's declared access
//! asks for (401/403 before any handler work), runs the handler with panics caught (a panic
//! is a logged 500, never a dead process), turns an [`ApiError`] into problem+json and puts
//! `X-Request-Id` on every response.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use futures_util::FutureExt as _;
use http::HeaderValue;
use lambda_http::request::RequestContext;
use lambda_http::RequestExt as _;
use tracing::Instrument as _;

use crate::auth;
use crate::context::AppContext;
use crate::http::router::{find, Handler, Route};
use crate::http::{
    client_ip, enforce, ApiError, ClientIp, HandlerResult, Request, RequestId, RequestSpan,
    Response, MAX_BODY_BYTES, REQUEST_ID,
};
use crate::ids::IdKind;
use crate::repo::rate_limits::{self, Decision, Limit};

/// Serves one request with the routes given (all of them locally, a function's own on Lambda).
pub async fn dispatch<R: Borrow<Route> + Sync>(
    ctx: &AppContext,
    routes: &[R],
    mut req: Request,
) -> Response {
    let request_id = request_id_of(&req, ctx);
    req.extensions_mut().insert(RequestId(request_id.clone()));
    if req.extensions().get::<ClientIp>().is_none() {
        if let Some(ip) = source_ip(&req) {
            req.extensions_mut().insert(ClientIp(ip));
        }
    }
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        path = %req.uri().path(),
        // The process's name until a route names its function: a request no route
        // matches is still logged under the function that answered it.
        function = crate::telemetry::function(),
        tenant_id = tracing::field::Empty,
    );
    req.extensions_mut().insert(RequestSpan(span.clone()));
    // Matched once: the route runs the request, and names the function its metrics are
    // counted under (locally one process serves every function; no route, this process).
    let found = find(routes, req.method(), req.uri().path());
    let function = found.as_ref().map_or_else(
        |_| crate::telemetry::function(),
        |(route, _)| route.function,
    );
    async move {
        let started = Instant::now();
        let (result, counted) = handle(ctx, found, req).await;
        let mut response = match result {
            Ok(response) => response,
            Err(error) => error.into_response(&request_id),
        };
        if let Some(decision) = counted {
            show_limit(&mut response, &decision);
        }
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID, value);
        }
        let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        let status = response.status().as_u16();
        tracing::info!(status, duration_ms, "request served");
        crate::metrics::request(function, status, duration_ms, &request_id);
        response
    }
    .instrument(span)
    .await
}

/// Checks, routes and runs a request; also returns the per-IP count, when it was made, for
/// the response's `RateLimit` headers.
async fn handle(
    ctx: &AppContext,
    found: Result<(&Route, HashMap<String, String>), ApiError>,
    req: Request,
) -> (HandlerResult, Option<Decision>) {
    if req.body().len() > MAX_BODY_BYTES {
        let refused = ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        };
        return (Err(refused), None);
    }
    let counted = count_ip(ctx, &req).await;
    if let Some(decision) = &counted {
        if let Err(refused) = enforce(decision.clone()) {
            tracing::warn!(scope = "ip", "request refused: over the per-IP limit");
            return (Err(refused), counted);
        }
    }
    (route_and_run(ctx, found, req).await, counted)
}

/// Counts the request against its client's per-IP limit (`STOREFRONT_RATE_LIMIT_IP` a
/// minute, shared by every instance through the table), before any route or handler work:
/// a flood of password hashes or sign-ups is refused for the price of one `UpdateItem`.
///
/// When the count cannot be made (the table unreachable), the request goes on uncounted
/// and a warning is logged: the limiter protects the API and must not be what takes it
/// down, and the handler meets the same outage and answers it as it must (health: 503).
async fn count_ip(ctx: &AppContext, req: &Request) -> Option<Decision> {
    let subject = client_ip(req).map_or_else(|| "unknown".to_owned(), ip_subject);
    let limit = Limit {
        scope: "ip",
        per_minute: ctx.limits.per_ip,
    };
    match rate_limits::hit(ctx.table.as_ref(), limit, &subject, ctx.clock.now()).await {
        Ok(decision) => Some(decision),
        Err(error) => {
            tracing::warn!(error = %error, "the per-IP limit could not be counted; the request goes on");
            None
        }
    }
}

/// What one client is, for the per-IP count: an IPv4 address, or an IPv6 address's /64
/// (a single subscriber is given a whole /64, RFC 6177, and could rotate through it).
fn ip_subject(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => "unknown".to_owned(),
    }
}

/// Puts the per-IP limit's state on a response (IETF RateLimit header fields), unless a
/// tighter limit of the route (login's) already wrote its own, or the response may be kept
/// by shared caches (an anonymous catalogue read): one client's count must not be served
/// to others.
fn show_limit(response: &mut Response, decision: &Decision) {
    let headers = response.headers_mut();
    let shared = headers
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("public"));
    if shared || headers.contains_key(RATELIMIT) {
        return;
    }
    for (name, value) in [
        (RATELIMIT_POLICY, decision.policy_header()),
        (RATELIMIT, decision.state_header()),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}

const RATELIMIT: &str = "ratelimit";
const RATELIMIT_POLICY: &str = "ratelimit-policy";

/// Runs the request's route (or answers why none matched), with a panic caught as a 500.
async fn route_and_run(
    ctx: &AppContext,
    found: Result<(&Route, HashMap<String, String>), ApiError>,
    req: Request,
) -> HandlerResult {
    let (route, params) = found?;
    tracing::Span::current().record("function", route.function);
    let req = req.with_path_parameters(params);
    match AssertUnwindSafe(admit_and_run(route, req, ctx))
        .catch_unwind()
        .await
    {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            Err(ApiError::Internal(anyhow::anyhow!(
                "handler panicked: {message}"
            )))
        }
    }
}

/// Checks the caller against the route's declared access, then runs its handler: a route
/// for callers never runs without an admitted caller (401 or 403 first).
async fn admit_and_run(route: &Route, req: Request, ctx: &AppContext) -> HandlerResult {
    match route.handler() {
        Handler::Anyone(handler) => handler(req, ctx).await,
        Handler::Visitor(handler) => {
            let caller = auth::admit_visitor(&req, ctx).await?;
            handler(req, ctx, caller).await
        }
        Handler::Caller(access, handler) => {
            let caller = auth::admit(&req, ctx, access).await?;
            handler(req, ctx, caller).await
        }
    }
}

/// API Gateway's request id where there is one (so logs and the client agree with AWS's
/// access logs), a fresh one otherwise.
fn request_id_of(req: &Request, ctx: &AppContext) -> String {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(c)) => c.request_id.clone(),
        _ => None,
    }
    .filter(|id| !id.is_empty())
    .unwrap_or_else(|| ctx.ids.next(IdKind::Request))
}

fn source_ip(req: &Request) -> Option<String> {
    match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(c)) => c.http.source_ip.clone(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_is_counted_by_its_64_and_an_ipv4_one_by_its_address() {
        assert_eq!(ip_subject("203.0.113.7"), "203.0.113.7");
        assert_eq!(ip_subject("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(
            ip_subject("2001:db8:1:2:aaaa:bbbb:cccc:dddd"),
            ip_subject("2001:db8:1:2::1")
        );
        assert_ne!(ip_subject("2001:db8:1:2::1"), ip_subject("2001:db8:1:3::1"));
        assert_eq!(ip_subject("not an address"), "unknown");
    }
}
