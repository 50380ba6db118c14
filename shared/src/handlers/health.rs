//! `GET /health`: is this instance able to serve? It reads the table to find out.

use std::time::Duration;

use http::StatusCode;
use serde::Serialize;

use crate::context::AppContext;
use crate::http::{json, HandlerResult, Request};
use crate::store::Key;

/// How long the table may take before the check counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    uptime_s: i64,
    checks: Checks,
}

#[derive(Serialize)]
struct Checks {
    table: &'static str,
}

/// 200 `{"status":"ok"}` when the table answers a read in time, 503 `"degraded"` when not.
#[tracing::instrument(skip_all)]
pub async fn get(_req: Request, ctx: &AppContext) -> HandlerResult {
    let probe = Key::new("HEALTH", "HEALTH");
    let table = match tokio::time::timeout(CHECK_TIMEOUT, ctx.table.get(&probe)).await {
        Ok(Ok(_)) => "ok",
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: table read failed");
            "error"
        }
        Err(_) => {
            tracing::warn!("health check: table read timed out");
            "timeout"
        }
    };
    let ok = table == "ok";
    let body = Health {
        status: if ok { "ok" } else { "degraded" },
        version: env!("CARGO_PKG_VERSION"),
        uptime_s: (ctx.clock.now() - ctx.started_at).num_seconds(),
        checks: Checks { table },
    };
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(status, &body)
}
