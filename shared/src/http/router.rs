//! The router's types: a [`Route`] names its method, path, Lambda function, who may call it
//! ([`Access`]) and its handler; [`find`] matches a request to one. The table of routes
//! itself is `crate::routes`, and the edge that checks access is `crate::edge`.
//!
//! Access is part of a route's type, not a line its handler must remember: a route is made
//! with [`Route::anyone`] (its handler gets no caller) or [`Route::caller`] (its handler
//! gets the [`Caller`] the edge authenticated and checked), so a route cannot be added
//! without saying who may call it, and a handler that needs a caller cannot get one unchecked.

use std::collections::HashMap;

use http::Method;
use lambda_http::BoxFuture;

use super::{ApiError, HandlerResult, Request};
use crate::context::AppContext;
use crate::domain::{Caller, Role};

/// A handler of a route anyone may call.
pub type PublicHandler = for<'a> fn(Request, &'a AppContext) -> BoxFuture<'a, HandlerResult>;

/// A handler of a route for callers: it receives the caller the edge admitted.
pub type CallerHandler =
    for<'a> fn(Request, &'a AppContext, Caller) -> BoxFuture<'a, HandlerResult>;

/// A handler of a route anyone may call, signed in or not: it receives the caller when
/// the request carried a credential (which the edge checked), `None` when it carried none.
pub type VisitorHandler =
    for<'a> fn(Request, &'a AppContext, Option<Caller>) -> BoxFuture<'a, HandlerResult>;

/// Who may call a route (DESIGN.md's route table, "who" column). The edge checks it before
/// the handler runs: 401 without a valid credential, 403 without the role.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// No credential: health, keys, shop creation, sign-up and sign-in.
    Anyone,
    /// Anyone, signed in or not (the catalogue, which a shop's customers browse before they
    /// have an account). A credential, when sent, must be valid (401 otherwise, never a
    /// silent anonymous read) and is checked as [`Access::Token`] is.
    Visitor,
    /// A valid access token or API key, as signed (no read of the store): for routes about
    /// the caller alone, which an ended session or a changed role cannot abuse.
    Token,
    /// A user's session that is still live, read from the store; never an API key.
    Session,
    /// A live session or a live API key whose role, as it is now, includes this one.
    Role(Role),
}

impl Access {
    /// How openapi.yaml's `x-access` extension names this access.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anyone => "anyone",
            Self::Visitor => "visitor",
            Self::Token => "token",
            Self::Session => "session",
            Self::Role(Role::Customer) => "customer",
            Self::Role(Role::Staff) => "staff",
            Self::Role(Role::Admin) => "admin",
            Self::Role(Role::Owner) => "owner",
        }
    }
}

/// A route's handler, with the access that guards it.
#[derive(Clone, Copy)]
pub enum Handler {
    Anyone(PublicHandler),
    Visitor(VisitorHandler),
    Caller(Access, CallerHandler),
}

pub struct Route {
    pub method: Method,
    /// The path as API Gateway writes it, with `{name}` for a parameter.
    pub path: &'static str,
    /// The Lambda function (and `functions/<name>` crate) that serves it.
    pub function: &'static str,
    handler: Handler,
}

impl Route {
    /// A route anyone may call.
    pub const fn anyone(
        method: Method,
        path: &'static str,
        function: &'static str,
        handler: PublicHandler,
    ) -> Self {
        Self {
            method,
            path,
            function,
            handler: Handler::Anyone(handler),
        }
    }

    /// A route anyone may call, whose handler also learns who called when a credential
    /// came with the request.
    pub const fn visitor(
        method: Method,
        path: &'static str,
        function: &'static str,
        handler: VisitorHandler,
    ) -> Self {
        Self {
            method,
            path,
            function,
            handler: Handler::Visitor(handler),
        }
    }

    /// A route for callers with `access`; its handler receives the admitted caller.
    /// `Access::Anyone` or `Access::Visitor` here is a mistake caught when the table is
    /// compiled.
    pub const fn caller(
        method: Method,
        path: &'static str,
        function: &'static str,
        access: Access,
        handler: CallerHandler,
    ) -> Self {
        assert!(
            !matches!(access, Access::Anyone | Access::Visitor),
            "a route anyone may call is made with Route::anyone or Route::visitor"
        );
        Self {
            method,
            path,
            function,
            handler: Handler::Caller(access, handler),
        }
    }

    pub fn access(&self) -> Access {
        match self.handler {
            Handler::Anyone(_) => Access::Anyone,
            Handler::Visitor(_) => Access::Visitor,
            Handler::Caller(access, _) => access,
        }
    }

    pub fn handler(&self) -> Handler {
        self.handler
    }
}

impl std::fmt::Debug for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} -> {}", self.method, self.path, self.function)
    }
}

/// The 404 of a path no route matches.
pub fn no_route(path: &str) -> ApiError {
    ApiError::not_found(format!("No route matches {path}."))
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
) -> Result<(&'r Route, HashMap<String, String>), ApiError>
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
}
