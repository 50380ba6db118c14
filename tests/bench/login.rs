//! `cargo run --release -p storefront-tests --bin bench-login`: what a login costs with the
//! chosen argon2id parameters. Times the hash and the verification alone, then full
//! `POST /v1/auth/login` round trips against the local server on loopback, and reports the
//! process's peak RSS before and after (argon2 holds its memory cost per hash in flight).

use std::time::{Duration, Instant};

use storefront::credentials::passwords;
use storefront::domain::Password;
use storefront_local::{Options, Server};

const LOGINS: usize = 50;

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The bench logs in far more than 5 times a minute from one address.
    std::env::set_var("STOREFRONT_RATE_LIMIT_LOGIN", "100000");
    let rss_at_start = peak_rss_mib();
    let password = Password::parse("correct horse battery staple")?;
    let started = Instant::now();
    let phc = passwords::hash(&password).await?;
    let hash_ms = started.elapsed().as_secs_f64() * 1000.0;
    let mut verify = Vec::new();
    for _ in 0..10 {
        let started = Instant::now();
        anyhow::ensure!(
            passwords::verify(password.expose(), &phc).await?,
            "verification failed"
        );
        verify.push(started.elapsed());
    }
    verify.sort();
    let rss_after_hashing = peak_rss_mib();

    let dir = tempfile::tempdir()?;
    let server = Server::start(Options::new("127.0.0.1:0".parse()?, dir.path().to_owned())).await?;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("{}{path}", server.url());
    let shop: serde_json::Value = client
        .post(url("/v1/tenants"))
        .json(&serde_json::json!({"name": "Bench", "owner": {"email": "bench@example.com", "password": "correct horse battery staple", "name": "Bench"}}))
        .send()
        .await?
        .json()
        .await?;
    let tenant_id = shop["tenant"]["id"].as_str().unwrap_or_default().to_owned();
    let mut logins = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..LOGINS {
        let (email, into) = if i % 2 == 0 {
            ("bench@example.com", &mut logins)
        } else {
            ("nobody@example.com", &mut unknown)
        };
        let body = serde_json::json!({"tenant_id": tenant_id, "email": email, "password": "correct horse battery staple"});
        let started = Instant::now();
        let status = client
            .post(url("/v1/auth/login"))
            .json(&body)
            .send()
            .await?
            .status();
        into.push(started.elapsed());
        anyhow::ensure!(status == 200 || status == 401, "login answered {status}");
    }
    logins.sort();
    unknown.sort();
    let rss_end = peak_rss_mib();
    server.stop().await;

    println!(
        "argon2id m={} KiB, t={}, p={} (release build, this machine)",
        passwords::MEMORY_KIB,
        passwords::PASSES,
        passwords::LANES
    );
    println!();
    println!("| measure | p50 (ms) | p95 (ms) |");
    println!("|---|---|---|");
    println!("| hash a password | {hash_ms:.1} | |");
    println!(
        "| verify a password | {:.1} | {:.1} |",
        percentile(&verify, 0.5),
        percentile(&verify, 0.95)
    );
    println!(
        "| POST /v1/auth/login, right password ({} runs) | {:.1} | {:.1} |",
        logins.len(),
        percentile(&logins, 0.5),
        percentile(&logins, 0.95)
    );
    println!(
        "| POST /v1/auth/login, unknown email ({} runs) | {:.1} | {:.1} |",
        unknown.len(),
        percentile(&unknown, 0.5),
        percentile(&unknown, 0.95)
    );
    println!();
    println!("peak RSS: {rss_at_start:.1} MiB at start, {rss_after_hashing:.1} MiB after hashing, {rss_end:.1} MiB after the logins");
    Ok(())
}
