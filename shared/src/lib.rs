//! Storefront: a multi-tenant commerce backend as small Rust functions on AWS Lambda.
//!
//! Where things live, from the bottom up (every import points up this list, to a module
//! above it; `tests/suite/routes_agree.rs` checks it):
//!
//! - [`clock`], [`ids`], [`crypto`], [`imaging`], [`metrics`], [`xray`], [`telemetry`]:
//!   time, identifiers, the few primitives everything uses (image checks and thumbnails
//!   among them), metrics lines, trace subsegments and JSON logs.
//! - [`domain`]: types that can only be built valid (`Email`, `Money`, `Role`, `Caller`, …);
//!   no I/O.
//! - [`credentials`]: passwords, signed tokens and their key ring, refresh tokens and API
//!   keys as handed out, and private key files.
//! - [`store`], [`queue`], [`blobs`], [`payments`], [`mail`]: the ports (traits) and their adapters,
//!   one file each: `embedded.rs` (`local.rs` for payments) for the local server and tests,
//!   `dynamo.rs`/`sqs.rs`/`s3.rs`/`stripe.rs` for AWS.
//! - [`repo`]: one file per aggregate: its keys, items and transactions over the `Table`
//!   port, plus the shared rate limiter, the idempotency store (`Idempotency-Key`, with its
//!   HTTP side in [`http::idempotency`]) and the outbox's items. It knows nothing of HTTP
//!   or the context.
//! - [`config`] and [`context`]: typed configuration read once at start, and the
//!   [`context::AppContext`] every handler receives (the composition root).
//! - [`http`]: HTTP helpers shared by Lambda and the local server: errors as RFC 9457
//!   problems, request ids, JSON parsing, paging, and the router's types ([`http::router`]:
//!   a route, who may call it, matching).
//! - [`auth`]: authenticating a request's caller and admitting it ([`auth::admit`]) as its
//!   route's declared access asks.
//! - [`identity`], [`audit`], [`events`], [`catalog`], [`orders`], [`webhooks`], [`emails`]:
//!   the feature modules, the rules of one capability that several routes
//!   share, returning values and transaction operations.
//! - [`edge`]: [`edge::dispatch`], the one path a request takes: request id, body limit,
//!   per-IP limit, route, access check, handler, problem+json, metrics.
//! - [`handlers`]: one file per resource, each an `async fn(Request, &AppContext)`, with the
//!   admitted `Caller` as a third argument on routes for callers.
//! - [`routes`]: the one route table; the local router, `template.yaml` and `openapi.yaml`
//!   are checked against it.
//! - [`jobs`]: the SQS batch handler, the workers it runs (the jobs queue's, and the image
//!   worker fed by the bucket's upload notifications), and the relay that feeds the jobs
//!   queue from the transactional outbox.
//! - [`lambda`]: what a Lambda binary's `main` calls.
//!
//! A newcomer starts at [`routes`], follows a route to its handler, and from there down.

pub mod audit;
pub mod auth;
pub mod blobs;
pub mod catalog;
pub mod clock;
pub mod config;
pub mod context;
pub mod credentials;
pub mod crypto;
pub mod domain;
pub mod edge;
pub mod emails;
pub mod events;
pub mod handlers;
pub mod http;
pub mod identity;
pub mod ids;
pub mod imaging;
pub mod jobs;
pub mod lambda;
pub mod mail;
pub mod metrics;
pub mod orders;
pub mod payments;
pub mod queue;
pub mod repo;
pub mod routes;
pub mod store;
pub mod telemetry;
pub mod webhooks;
pub mod xray;
