//! Logs as JSON lines through `tracing`, one span per request or job carrying `request_id`,
//! `function` and `tenant_id`. `RUST_LOG` sets the level (default `info`).

use std::sync::OnceLock;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

static FUNCTION: OnceLock<&'static str> = OnceLock::new();

/// The name this process logs as (the Lambda function, or `storefront-local`), for spans
/// that no request names: a job's.
pub fn function() -> &'static str {
    FUNCTION.get().copied().unwrap_or("storefront")
}

/// The JSON subscriber, writing to `writer`: one object a line, with every span the line
/// was logged in (`spans`), outermost first, so the request span's fields (`request_id`,
/// `function`, `tenant_id`) reach lines logged inside a handler's own nested span.
pub fn subscriber<W>(writer: W) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_span_list(true)
        .with_target(false)
        .with_writer(writer)
        .finish()
}

/// Installs the JSON subscriber on stderr once, and prints metrics lines on stdout
/// ([`crate::metrics`]); later calls (tests) are no-ops.
pub fn init(function: &'static str) {
    let _ = FUNCTION.set(function);
    crate::metrics::enable();
    if tracing::subscriber::set_global_default(subscriber(std::io::stderr)).is_ok() {
        tracing::info!(function, version = env!("CARGO_PKG_VERSION"), "starting");
    }
}
