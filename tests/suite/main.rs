//! Storefront's end-to-end suite, one test binary (so the SDK is linked once):
//! the port conformance suites against both adapters (AWS ones against moto), flows over
//! HTTP against the local server, the sample events replayed through their handlers, and
//! the checks that the route table, template.yaml, openapi.yaml and the router agree.

/// Runs every case of a port's conformance suite once per adapter, as `<adapter>::<case>`:
/// `conformance!(embedded, dynamo; case_a, case_b)` calls `case_a(embedded().await)` and
/// `case_a(dynamo().await)`, each a test of its own.
macro_rules! conformance {
    ($first:ident, $second:ident; $($case:ident),* $(,)?) => {
        conformance!(@adapter $first; $($case),*);
        conformance!(@adapter $second; $($case),*);
    };
    (@adapter $adapter:ident; $($case:ident),*) => {
        mod $adapter {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                super::$case(super::$adapter().await).await
            })*
        }
    };
}

mod helpers;

mod blobs_conformance;
mod catalog;
mod emails;
mod events_replay;
mod http_edge;
mod idempotency;
mod identity;
mod jobs_batch;
mod least_privilege;
mod local_process;
mod orders;
mod outbox;
mod payments;
mod queue_conformance;
mod rie;
mod routes_agree;
mod table_conformance;
mod webhooks;
mod webhooks_local;
mod xray;
