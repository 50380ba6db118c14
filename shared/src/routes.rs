//! The one route table: every HTTP route, who may call it, its handler and the Lambda
//! function that serves it.
//!
//! The local server routes with this table, each Lambda binary serves its own rows of it,
//! the edge (`crate::edge`) checks each row's access before its handler runs, and a test
//! holds `template.yaml` and `openapi.yaml` (paths and `security`) to it, so none drift.

use http::Method;

use crate::domain::Role;
use crate::handlers;
use crate::http::router::{no_route, Access, Route};

pub use crate::http::router::find;

/// `route!(METHOD "path" => "function", who, handler)`, where `who` is `anyone`, `visitor`
/// (anyone, with the caller passed on when signed in), `token`, `session` or
/// `role(Role::…)`: the access the edge checks before `handler` runs. A handler of a route
/// for callers takes the admitted `Caller` as its third argument; a visitor's handler
/// takes an `Option<Caller>`.
macro_rules! route {
    ($method:ident $path:literal => $function:literal, anyone, $handler:path) => {
        Route::anyone(Method::$method, $path, $function, |req, ctx| {
            Box::pin($handler(req, ctx))
        })
    };
    ($method:ident $path:literal => $function:literal, visitor, $handler:path) => {
        Route::visitor(Method::$method, $path, $function, |req, ctx, caller| {
            Box::pin($handler(req, ctx, caller))
        })
    };
    ($method:ident $path:literal => $function:literal, token, $handler:path) => {
        route!(@caller $method $path, $function, Access::Token, $handler)
    };
    ($method:ident $path:literal => $function:literal, session, $handler:path) => {
        route!(@caller $method $path, $function, Access::Session, $handler)
    };
    ($method:ident $path:literal => $function:literal, role($role:expr), $handler:path) => {
        route!(@caller $method $path, $function, Access::Role($role), $handler)
    };
    (@caller $method:ident $path:literal, $function:literal, $access:expr, $handler:path) => {
        Route::caller(Method::$method, $path, $function, $access, |req, ctx, caller| {
            Box::pin($handler(req, ctx, caller))
        })
    };
}

/// Every route of the API.
pub static ROUTES: &[Route] = &[
    route!(GET "/health" => "health", anyone, handlers::health::get),
    route!(GET "/.well-known/jwks.json" => "jwks", anyone, handlers::jwks::get),
    route!(POST "/v1/tenants" => "tenants-create", anyone, handlers::tenants::create),
    route!(POST "/v1/auth/signup" => "auth-signup", anyone, handlers::auth::signup),
    route!(POST "/v1/auth/login" => "auth-login", anyone, handlers::auth::login),
    route!(POST "/v1/auth/refresh" => "auth-refresh", anyone, handlers::auth::refresh),
    route!(POST "/v1/auth/logout" => "auth-logout", token, handlers::auth::logout),
    route!(GET "/v1/me" => "me", token, handlers::me::get),
    route!(GET "/v1/sessions" => "sessions-list", session, handlers::sessions::list),
    route!(DELETE "/v1/sessions/{id}" => "sessions-revoke", session, handlers::sessions::revoke),
    route!(POST "/v1/members" => "members-create", role(Role::Admin), handlers::members::create),
    route!(GET "/v1/members" => "members-list", role(Role::Admin), handlers::members::list),
    route!(PATCH "/v1/members/{id}" => "members-update", role(Role::Admin), handlers::members::update),
    route!(POST "/v1/api-keys" => "api-keys-create", role(Role::Admin), handlers::api_keys::create),
    route!(GET "/v1/api-keys" => "api-keys-list", role(Role::Admin), handlers::api_keys::list),
    route!(DELETE "/v1/api-keys/{id}" => "api-keys-revoke", role(Role::Admin), handlers::api_keys::revoke),
    route!(GET "/v1/audit-log" => "audit-log-list", role(Role::Admin), handlers::audit_log::list),
    route!(POST "/v1/products" => "products-create", role(Role::Staff), handlers::products::create),
    route!(GET "/v1/products" => "products-list", visitor, handlers::products::list),
    route!(GET "/v1/products/{id}" => "products-get", visitor, handlers::products::get),
    route!(PATCH "/v1/products/{id}" => "products-update", role(Role::Staff), handlers::products::update),
    route!(DELETE "/v1/products/{id}" => "products-delete", role(Role::Staff), handlers::products::delete),
    route!(POST "/v1/products/{id}/images" => "product-images-create", role(Role::Staff), handlers::product_images::create),
    route!(DELETE "/v1/products/{id}/images/{image_id}" => "product-images-delete", role(Role::Staff), handlers::product_images::delete),
    route!(POST "/v1/orders" => "orders-create", role(Role::Customer), handlers::orders::create),
    route!(GET "/v1/orders" => "orders-list", role(Role::Customer), handlers::orders::list),
    route!(GET "/v1/orders/{id}" => "orders-get", role(Role::Customer), handlers::orders::get),
    route!(POST "/v1/orders/{id}/payment" => "orders-payment", role(Role::Customer), handlers::orders::pay),
    route!(POST "/v1/orders/{id}/cancel" => "orders-cancel", role(Role::Customer), handlers::orders::cancel),
    route!(POST "/v1/orders/{id}/fulfil" => "orders-fulfil", role(Role::Staff), handlers::orders::fulfil),
    route!(POST "/v1/payments/webhook" => "payments-webhook", anyone, handlers::payments::webhook),
    route!(POST "/v1/webhook-endpoints" => "webhook-endpoints-create", role(Role::Admin), handlers::webhook_endpoints::create),
    route!(GET "/v1/webhook-endpoints" => "webhook-endpoints-list", role(Role::Admin), handlers::webhook_endpoints::list),
    route!(PATCH "/v1/webhook-endpoints/{id}" => "webhook-endpoints-update", role(Role::Admin), handlers::webhook_endpoints::update),
    route!(DELETE "/v1/webhook-endpoints/{id}" => "webhook-endpoints-delete", role(Role::Admin), handlers::webhook_endpoints::delete),
    route!(GET "/v1/webhook-endpoints/{id}/deliveries" => "webhook-deliveries-list", role(Role::Admin), handlers::webhook_endpoints::deliveries),
    route!(POST "/v1/webhook-endpoints/{id}/deliveries/{delivery_id}/retry" => "webhook-deliveries-retry", role(Role::Admin), handlers::webhook_endpoints::retry),
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
    let preflights = paths.into_iter().map(|path| {
        Route::anyone(Method::OPTIONS, path, UNMATCHED, |_, _| {
            Box::pin(async { Ok(crate::http::no_content()) })
        })
    });
    ROUTES
        .iter()
        .map(|route| {
            Route::anyone(route.method.clone(), route.path, UNMATCHED, |req, _| {
                Box::pin(async move { Err(no_route(req.uri().path())) })
            })
        })
        .chain(preflights)
        .collect()
}

/// The routes one Lambda function serves.
pub fn of_function(function: &str) -> Vec<&'static Route> {
    ROUTES.iter().filter(|r| r.function == function).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::ApiError;

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
