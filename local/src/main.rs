//! `storefront-local`: the whole API on 127.0.0.1, on an embedded store that survives restarts.

use clap::Parser as _;
use storefront_local::{Options, Server};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    storefront::telemetry::init("storefront-local");
    let options = Options::parse();
    let server = match Server::start(options).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("storefront-local: cannot start: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!("Storefront is listening on {}", server.url());
    storefront_local::shutdown_signal().await;
    eprintln!("storefront-local: stopping (finishing requests in flight)");
    server.stop().await;
    std::process::ExitCode::SUCCESS
}
