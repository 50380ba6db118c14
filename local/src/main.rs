//! `storefront-local`: the whole API on 127.0.0.1, on an embedded store that survives restarts.
//! `storefront-local rotate-keys` rotates the token signing keys (locally or in SSM);
//! `storefront-local dlq list|redrive` inspects and redrives the dead-letter queues.

use clap::Parser as _;
use secrecy::ExposeSecret as _;
use storefront_local::{Cli, Command, Server};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    storefront::telemetry::init("storefront-local");
    let cli = Cli::parse();
    if let Some(Command::Dlq(dlq)) = &cli.command {
        return match storefront_local::dlq(&cli.options, dlq).await {
            Ok(message) => {
                println!("{message}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("storefront-local: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    if let Some(Command::RotateKeys(rotate)) = cli.command {
        return match storefront_local::rotate_keys(&cli.options, &rotate).await {
            Ok(message) => {
                println!("{message}");
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("storefront-local: cannot rotate keys: {e:#}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    let shutdown = match storefront_local::ShutdownSignal::listen() {
        Ok(shutdown) => shutdown,
        Err(e) => {
            eprintln!("storefront-local: cannot listen for Ctrl-C and SIGTERM: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let server = match Server::start(cli.options).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("storefront-local: cannot start: {e:#}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if let Some(secret) = server.generated_payment_secret() {
        // The contract's local-development affordance: the provider must be configured with
        // this secret, and it is this machine's own (kept under the data directory).
        println!(
            "Payment webhook secret (generated; set {} to choose your own): {}",
            storefront_local::PAYMENT_WEBHOOK_SECRET_ENV,
            secret.expose_secret()
        );
    }
    println!("Storefront is listening on {}", server.url());
    shutdown.recv().await;
    eprintln!("storefront-local: stopping (finishing requests in flight)");
    server.stop().await;
    std::process::ExitCode::SUCCESS
}
