//! Storefront: a multi-tenant commerce backend as small Rust functions on AWS Lambda.
//!
//! Where things live, from the bottom up (every import points down this list):
//!
//! - [`clock`], [`ids`], [`crypto`]: time, identifiers and the few primitives everything uses.
//! - [`domain`]: types that can only be built valid (`Email`, `Password`, `Role`, …); no I/O.
//! - [`store`], [`queue`], [`blobs`]: the ports (traits) and their adapters, one file each:
//!   `embedded.rs` for the local server and tests, `dynamo.rs`/`sqs.rs`/`s3.rs` for AWS.
//! - [`repo`]: one file per aggregate: its keys, items and transactions over the `Table`
//!   port, plus the shared rate limiter and idempotency store (`Idempotency-Key`, with its
//!   HTTP side in [`http::idempotency`]). It knows nothing of HTTP or the context.
//! - [`config`] and [`context`]: typed configuration read once at start, and the
//!   [`context::AppContext`] every handler receives (the composition root).
//! - [`http`]: HTTP helpers shared by Lambda and the local server: errors as RFC 9457
//!   problems, request ids, JSON parsing, paging, and the router's types ([`http::router`]:
//!   a route, who may call it, matching).
//! - [`auth`]: passwords, signed tokens, API keys, and admitting a request's caller
//!   ([`auth::admit`]) as its route's declared access asks.
//! - [`edge`]: [`edge::dispatch`], the one path a request takes: request id, body limit,
//!   route, access check, handler, problem+json.
//! - [`identity`] (and, as they come, `catalog`, `orders`, `webhooks`): the feature modules,
//!   the rules of one capability that several routes share, returning values and
//!   transaction operations.
//! - [`handlers`]: one file per resource, each an `async fn(Request, &AppContext)`, with the
//!   admitted `Caller` as a third argument on routes for callers.
//! - [`routes`]: the one route table; the local router, `template.yaml` and `openapi.yaml`
//!   are checked against it.
//! - [`jobs`]: the SQS batch handler, the workers it runs, and the transactional outbox whose
//!   relay feeds the jobs queue.
//! - [`lambda`] and [`telemetry`]: what a Lambda binary's `main` calls.
//!
//! A newcomer starts at [`routes`], follows a route to its handler, and from there down.

pub mod audit;
pub mod auth;
pub mod blobs;
pub mod clock;
pub mod config;
pub mod context;
pub mod crypto;
pub mod domain;
pub mod edge;
pub mod handlers;
pub mod http;
pub mod identity;
pub mod ids;
pub mod jobs;
pub mod lambda;
pub mod metrics;
pub mod queue;
pub mod repo;
pub mod routes;
pub mod store;
pub mod telemetry;
pub mod xray;
