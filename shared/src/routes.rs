//! The one route table: every HTTP route, its handler and the Lambda function that serves it.
//!
//! The local server routes with this table, each Lambda binary serves its own rows of it,
//! and a test holds `template.yaml` and `openapi.yaml` to it, so the four never drift.

use http::Method;
use lambda_http::BoxFuture;

use crate::context::AppContext;
use crate::handlers;
use crate::http::{ApiError, HandlerResult, Request};

/// A handler as the table stores it: a plain async function, boxed.
pub type Handler = for<'a> fn(Request, &'a AppContext) -> BoxFuture<'a, HandlerResult>;

pub struct Route {
    pub method: Method,
    /// The path as API Gateway writes it, with `{name}` for a parameter.
    pub path: &'static str,
    /// The Lambda function (and `functions/<name>` crate) that serves it.
    pub function: &'static str,
    pub handler: Handler,
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} -> {}", self.method, self.path, self.function)
    }
}

macro_rules! route {
    ($method:ident $path:literal => $function:literal, $handler:path) => {
        Route {
            method: Method::$method,
            path: $path,
            function: $function,
            handler: |req, ctx| Box::pin($handler(req, ctx)),
        }
    };
}

/// Every route of the API.
pub static ROUTES: &[Route] = &[
    route!(GET "/health" => "health", handlers::health::get),
    route!(GET "/.well-known/jwks.json" => "jwks", handlers::jwks::get),
    route!(POST "/v1/tenants" => "tenants-create", handlers::tenants::create),
    route!(POST "/v1/auth/signup" => "auth-signup", handlers::auth::signup),
    route!(POST "/v1/auth/login" => "auth-login", handlers::auth::login),
    route!(POST "/v1/auth/refresh" => "auth-refresh", handlers::auth::refresh),
    route!(POST "/v1/auth/logout" => "auth-logout", handlers::auth::logout),
    route!(GET "/v1/me" => "me", handlers::me::get),
    route!(GET "/v1/sessions" => "sessions-list", handlers::sessions::list),
    route!(DELETE "/v1/sessions/{id}" => "sessions-revoke", handlers::sessions::revoke),
    route!(POST "/v1/members" => "members-create", handlers::members::create),
    route!(GET "/v1/members" => "members-list", handlers::members::list),
    route!(PATCH "/v1/members/{id}" => "members-update", handlers::members::update),
    route!(POST "/v1/api-keys" => "api-keys-create", handlers::api_keys::create),
    route!(GET "/v1/api-keys" => "api-keys-list", handlers::api_keys::list),
    route!(DELETE "/v1/api-keys/{id}" => "api-keys-revoke", handlers::api_keys::revoke),
];

/// The Lambda function behind API Gateway's `$default` route, which receives every request
/// that no route of the API matches. API Gateway would answer those itself with a bare
/// `{"message":"Not Found"}` and never a 405; this function answers them as the local
/// router does, with a 404 problem, or a 405 listing the methods the path has.
pub const UNMATCHED: &str = "not-found";

/// The route table as the [`UNMATCHED`] function serves it: every path and method, each
/// answering 404. A request reaches that function only when API Gateway matched none of
/// these routes, so a path that matches under other methods gets its 405, and one that
/// matches nothing its 404; none of them runs another function's handler.
///
/// `$default` also catches `OPTIONS` (AWS's CORS guide says so), so every path answers a
/// preflight with 204: API Gateway adds the CORS headers its configuration names to an
/// integration's response, and a browser refuses any preflight that is not a 2xx.
pub fn unmatched() -> Vec<Route> {
    let paths: std::collections::BTreeSet<&'static str> = ROUTES.iter().map(|r| r.path).collect();
    let preflights = paths.into_iter().map(|path| Route {
        method: Method::OPTIONS,
        path,
        function: UNMATCHED,
        handler: |_, _| Box::pin(async { Ok(crate::http::no_content()) }),
    });
    ROUTES
        .iter()
        .map(|route| Route {
            method: route.method.clone(),
            path: route.path,
            function: UNMATCHED,
            handler: |req, _| Box::pin(async move { Err(no_route(req.uri().path())) }),
        })
        .chain(preflights)
        .collect()
}

/// The 404 of a path no route matches.
fn no_route(path: &str) -> ApiError {
    ApiError::not_found(format!("No route matches {path}."))
}

/// The routes one Lambda function serves.
pub fn of_function(function: &str) -> Vec<&'static Route> {
    ROUTES.iter().filter(|r| r.function == function).collect()
}

/// Matches a concrete path against a pattern, returning the parameters it binds.
pub fn match_path(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    let mut pattern_segments = pattern.split('/');
    let mut path_segments = path.split('/');
    loop {
        match (pattern_segments.next(), path_segments.next()) {
            (None, None) => return Some(params),
            (Some(p), Some(s)) => {
                if let Some(name) = p.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    if s.is_empty() {
                        return None;
                    }
                    let value = percent_decode(s)?;
                    params.push((name.to_owned(), value));
                } else if p != s {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

fn percent_decode(segment: &str) -> Option<String> {
    url::form_urlencoded::parse(format!("v={}", segment.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
}

/// Finds the route for a request: 404 when no path matches, 405 (with the methods that
/// would) when the path matches under other methods only.
pub fn find<'r, R>(
    routes: &'r [R],
    method: &Method,
    path: &str,
) -> Result<(&'r Route, std::collections::HashMap<String, String>), ApiError>
where
    R: std::borrow::Borrow<Route>,
{
    let mut allow = Vec::new();
    for route in routes.iter().map(|r| r.borrow()) {
        if let Some(params) = match_path(route.path, path) {
            if route.method == method {
                return Ok((route, params.into_iter().collect()));
            }
            allow.push(route.method.clone());
        }
    }
    if allow.is_empty() {
        Err(no_route(path))
    } else {
        Err(ApiError::MethodNotAllowed { allow })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_binds_its_parameters() {
        assert_eq!(
            match_path("/v1/products/{id}/images", "/v1/products/prod_1/images"),
            Some(vec![("id".into(), "prod_1".into())])
        );
        assert_eq!(match_path("/v1/products/{id}", "/v1/products/"), None);
        assert_eq!(match_path("/v1/products/{id}", "/v1/products/a/b"), None);
        assert_eq!(match_path("/health", "/health"), Some(vec![]));
    }

    #[test]
    fn an_unknown_path_is_404_and_a_wrong_method_is_405() {
        let not_found = find(ROUTES, &Method::GET, "/nope").unwrap_err();
        assert_eq!(not_found.status(), 404);
        match find(ROUTES, &Method::DELETE, "/health").unwrap_err() {
            ApiError::MethodNotAllowed { allow } => assert_eq!(allow, vec![Method::GET]),
            other => panic!("expected 405, got {other:?}"),
        }
    }

    #[test]
    fn the_unmatched_table_answers_405_for_a_path_of_other_methods_and_404_otherwise() {
        let unmatched = unmatched();
        match find(&unmatched, &Method::DELETE, "/health").unwrap_err() {
            ApiError::MethodNotAllowed { allow } => {
                assert_eq!(allow, vec![Method::GET, Method::OPTIONS])
            }
            other => panic!("expected 405, got {other:?}"),
        }
        for route in ROUTES {
            let (found, _) = find(&unmatched, &Method::OPTIONS, route.path).unwrap();
            assert_eq!(
                found.method,
                Method::OPTIONS,
                "{route:?} answers its preflight"
            );
        }
        assert_eq!(
            find(&unmatched, &Method::GET, "/v1/nowhere")
                .unwrap_err()
                .status(),
            404
        );
        assert!(unmatched.iter().all(|r| r.function == UNMATCHED));
    }

    #[test]
    fn every_route_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for route in ROUTES {
            assert!(
                seen.insert((route.method.clone(), route.path)),
                "{route:?} twice"
            );
        }
    }
}
