//! Logs as JSON lines through `tracing`, one span per request or job carrying `request_id`,
//! `function` and `tenant_id`. `RUST_LOG` sets the level (default `info`).

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber once; later calls (tests) are no-ops.
pub fn init(function: &'static str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let installed = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .with_writer(std::io::stderr)
        .try_init()
        .is_ok();
    if installed {
        tracing::info!(function, version = env!("CARGO_PKG_VERSION"), "starting");
    }
}
