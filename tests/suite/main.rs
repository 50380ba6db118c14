//! Storefront's end-to-end suite, one test binary (so the SDK is linked once):
//! the port conformance suites against both adapters (AWS ones against moto), flows over
//! HTTP against the local server, the sample events replayed through their handlers, and
//! the checks that the route table, template.yaml, openapi.yaml and the router agree.

mod helpers;

mod blobs_conformance;
mod events_replay;
mod http_edge;
mod jobs_batch;
mod local_process;
mod queue_conformance;
mod routes_agree;
mod table_conformance;
