//! The `storefront-local` binary as a user runs it: it prints its URL when ready, refuses a
//! locked or corrupt data directory with a message (not a panic), stops cleanly on SIGTERM,
//! and an acknowledged write survives `kill -9`.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use storefront::clock::SystemClock;
use storefront::store::embedded::EmbeddedTable;
use storefront::store::{Item, Key, Table};

use crate::helpers;

/// The binary next to this test's own build (.ci/test builds it first).
pub(crate) fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join("storefront-local");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p storefront-local` (.ci/test does)",
        path.display()
    );
    path
}

fn spawn(data_dir: &Path) -> Child {
    spawn_with(data_dir, None)
}

/// Starts the server, with `STOREFRONT_PAYMENT_WEBHOOK_SECRET` set to `payment_secret`.
fn spawn_with(data_dir: &Path, payment_secret: Option<&str>) -> Child {
    let mut command = Command::new(binary());
    command.env_remove("STOREFRONT_PAYMENT_WEBHOOK_SECRET");
    if let Some(secret) = payment_secret {
        command.env("STOREFRONT_PAYMENT_WEBHOOK_SECRET", secret);
    }
    command
        .args(["--addr", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn storefront-local")
}

/// Reads stdout until the ready line and returns the URL it names.
pub(crate) fn wait_ready(child: &mut Child) -> String {
    wait_ready_lines(child).0
}

/// Reads stdout until the ready line: the URL it names, and the lines printed before it.
fn wait_ready_lines(child: &mut Child) -> (String, Vec<String>) {
    let (url, before, _) = wait_ready_then(child);
    (url, before)
}

/// Reads stdout until the ready line: the URL it names, the lines printed before it, and
/// the lines printed after it as they come.
fn wait_ready_then(child: &mut Child) -> (String, Vec<String>, std::sync::mpsc::Receiver<String>) {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let (later_tx, later) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut before = Vec::new();
        let mut ready = false;
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if ready {
                let _ = later_tx.send(line);
                continue;
            }
            match line.strip_prefix("Storefront is listening on ") {
                Some(url) => {
                    ready = true;
                    let _ = tx.send((url.to_owned(), std::mem::take(&mut before)));
                }
                None => before.push(line),
            }
        }
    });
    let (url, before) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the server printed its URL within 20 s");
    (url, before, later)
}

/// A GET over a fresh connection, read to its end.
fn get(url: &str, path: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream =
        std::net::TcpStream::connect(url.trim_start_matches("http://")).expect("connects");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .expect("sends");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("reads");
    answer
}

#[test]
fn it_prints_a_metrics_line_in_embedded_metric_format_for_each_request() {
    let dir = helpers::temp_dir();
    let mut child = spawn(dir.path());
    let (url, _, later) = wait_ready_then(&mut child);
    assert!(get(&url, "/health").starts_with("HTTP/1.1 200"));
    assert!(get(&url, "/nowhere").starts_with("HTTP/1.1 404"));
    let mut found = Vec::new();
    while found.len() < 2 {
        let line = later
            .recv_timeout(Duration::from_secs(20))
            .expect("a metrics line for each request");
        let Ok(doc) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if doc.get("_aws").is_some() {
            found.push(doc);
        }
    }
    for doc in &found {
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "Storefront");
        assert!(doc["_aws"]["Timestamp"].is_i64());
        assert_eq!(doc["Requests"], 1.0);
        assert!(doc["Latency"].as_f64().is_some_and(|ms| ms >= 0.0));
        assert!(doc["request_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("req_")));
    }
    let health = found
        .iter()
        .find(|d| d["Function"] == "health")
        .expect("health's line");
    assert_eq!(
        (health["Errors4xx"].as_f64(), health["Errors5xx"].as_f64()),
        (Some(0.0), Some(0.0))
    );
    let missing = found
        .iter()
        .find(|d| d["Function"] != "health")
        .expect("the 404's line");
    assert_eq!(missing["Errors4xx"], 1.0);
    stop_cleanly(&mut child);
}

/// The secret on the "Payment webhook secret" line, if one was printed.
fn printed_payment_secret(lines: &[String]) -> Option<String> {
    lines
        .iter()
        .find(|line| line.starts_with("Payment webhook secret"))
        .and_then(|line| line.rsplit(' ').next())
        .map(str::to_owned)
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the process did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM and expects a clean exit (status 0) within 15 s, showing what the server
/// wrote to stderr when it does not.
fn stop_cleanly(child: &mut Child) {
    signal(child, "TERM");
    let status = wait_exit(child, Duration::from_secs(15));
    assert!(
        status.success(),
        "exit status {status:?} after SIGTERM; stderr:\n{}",
        stderr_of(child)
    );
}

fn stderr_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut err, &mut text);
    }
    text
}

pub(crate) fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
}

#[test]
fn it_prints_its_url_when_ready_and_stops_cleanly_on_sigterm() {
    let dir = helpers::temp_dir();
    let mut child = spawn(dir.path());
    let url = wait_ready(&mut child);
    let health = std::net::TcpStream::connect(url.trim_start_matches("http://")).is_ok();
    assert!(health, "{url} accepts connections");
    signal(&child, "TERM");
    let status = wait_exit(&mut child, Duration::from_secs(15));
    assert!(status.success(), "exit status {status:?}");
    assert!(
        dir.path().join("table.redb").exists(),
        "the data directory was used"
    );
    assert!(
        dir.path().join("keys/blob-signing.key").exists(),
        "keys made on first start"
    );
}

#[test]
fn a_second_instance_on_the_same_data_directory_is_refused_with_a_message() {
    let dir = helpers::temp_dir();
    let mut first = spawn(dir.path());
    wait_ready(&mut first);
    let mut second = spawn(dir.path());
    let status = wait_exit(&mut second, Duration::from_secs(15));
    let message = stderr_of(&mut second);
    signal(&first, "TERM");
    wait_exit(&mut first, Duration::from_secs(15));
    assert!(!status.success());
    assert!(
        message.contains("in use by another running instance"),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");
}

#[test]
fn a_corrupt_data_file_is_refused_with_a_message() {
    let dir = helpers::temp_dir();
    std::fs::write(
        dir.path().join("table.redb"),
        b"this is not a database, just some bytes",
    )
    .unwrap();
    let mut child = spawn(dir.path());
    let status = wait_exit(&mut child, Duration::from_secs(15));
    let message = stderr_of(&mut child);
    assert!(!status.success());
    assert!(
        message.contains("cannot start") && message.contains("table.redb"),
        "{message}"
    );
    assert!(!message.contains("panicked"), "{message}");
}

#[test]
fn keys_and_data_survive_a_restart() {
    let dir = helpers::temp_dir();
    let mut child = spawn(dir.path());
    wait_ready(&mut child);
    let key = std::fs::read(dir.path().join("keys/blob-signing.key")).unwrap();
    stop_cleanly(&mut child);
    {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let table =
            EmbeddedTable::open(&dir.path().join("table.redb"), Arc::new(SystemClock)).unwrap();
        rt.block_on(table.put(Item::new(&Key::new("KEEP", "ME")), None))
            .unwrap();
    }
    let mut again = spawn(dir.path());
    wait_ready(&mut again);
    stop_cleanly(&mut again);
    assert_eq!(
        std::fs::read(dir.path().join("keys/blob-signing.key")).unwrap(),
        key,
        "the key is not remade"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let table = EmbeddedTable::open(&dir.path().join("table.redb"), Arc::new(SystemClock)).unwrap();
    assert!(rt
        .block_on(table.get(&Key::new("KEEP", "ME")))
        .unwrap()
        .is_some());
}

#[test]
fn a_generated_payment_webhook_secret_is_printed_and_kept_and_a_chosen_one_is_not_printed() {
    let dir = helpers::temp_dir();
    let mut first = spawn(dir.path());
    let (_, lines) = wait_ready_lines(&mut first);
    stop_cleanly(&mut first);
    let secret = printed_payment_secret(&lines).expect("a generated secret is printed");
    assert!(
        secret.starts_with("whsec_") && secret.len() > 30,
        "{secret}"
    );

    let mut again = spawn(dir.path());
    let (_, lines) = wait_ready_lines(&mut again);
    stop_cleanly(&mut again);
    assert_eq!(
        printed_payment_secret(&lines).as_deref(),
        Some(secret.as_str()),
        "the same secret after a restart"
    );

    let mut chosen = spawn_with(dir.path(), Some("whsec_chosen_by_the_developer"));
    let (_, lines) = wait_ready_lines(&mut chosen);
    stop_cleanly(&mut chosen);
    assert_eq!(printed_payment_secret(&lines), None, "{lines:?}");
}

/// The crash test's writer: run in a child copy of this test binary (see below).
#[test]
#[ignore = "run by every_acknowledged_write_survives_kill_9 in a child process"]
fn crash_writer() {
    let dir = std::env::var_os("STOREFRONT_CRASH_DIR").expect("STOREFRONT_CRASH_DIR");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let table = EmbeddedTable::open(
        &PathBuf::from(dir).join("table.redb"),
        Arc::new(SystemClock),
    )
    .unwrap();
    for i in 0.. {
        rt.block_on(table.put(Item::new(&Key::new("CRASH", format!("{i:08}"))), None))
            .unwrap();
        println!("acked {i}");
    }
}

#[test]
fn every_acknowledged_write_survives_kill_9() {
    let dir = helpers::temp_dir();
    let mut writer = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "local_process::crash_writer",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("STOREFRONT_CRASH_DIR", dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = writer.stdout.take().unwrap();
    let mut last_acked = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("acked ") {
            last_acked = Some(n.parse::<u64>().unwrap());
        }
        if last_acked >= Some(50) || Instant::now() > deadline {
            break;
        }
    }
    signal(&writer, "KILL");
    let _ = writer.wait();
    let acked = last_acked.expect("the writer acknowledged writes");
    assert!(
        acked >= 50,
        "the writer acknowledged only {acked} writes in 20 s"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let table = EmbeddedTable::open(&dir.path().join("table.redb"), Arc::new(SystemClock)).unwrap();
    for i in 0..=acked {
        let found = rt
            .block_on(table.get(&Key::new("CRASH", format!("{i:08}"))))
            .unwrap();
        assert!(
            found.is_some(),
            "acknowledged write {i} of {acked} was lost"
        );
    }
}

#[test]
fn rotate_keys_adds_a_signing_key_and_keeps_the_two_newest() {
    let dir = helpers::temp_dir();
    for _ in 0..3 {
        let output = Command::new(binary())
            .args(["--data-dir"])
            .arg(dir.path())
            .arg("rotate-keys")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(String::from_utf8_lossy(&output.stdout).contains("new signing key"));
        std::thread::sleep(Duration::from_millis(2));
    }
    let keys = std::fs::read_dir(dir.path().join("keys/jwt"))
        .unwrap()
        .count();
    assert_eq!(keys, 2, "older keys are retired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chosen_payment_webhook_secret_is_the_one_the_server_keeps() {
    use clap::Parser as _;
    use secrecy::ExposeSecret as _;
    use storefront_local::{Cli, Server};

    let dir = helpers::temp_dir();
    let cli = Cli::try_parse_from(
        [
            "storefront-local",
            "--addr",
            "127.0.0.1:0",
            "--payment-webhook-secret",
            "  whsec_chosen_by_the_developer  ",
            "--data-dir",
        ]
        .into_iter()
        .map(std::ffi::OsString::from)
        .chain([dir.path().as_os_str().to_owned()]),
    )
    .expect("flags parse");
    let server = Server::start(cli.options).await.expect("starts");
    assert_eq!(
        server
            .embedded()
            .ctx
            .payment_webhook_secret
            .as_ref()
            .map(|s| s.expose_secret()),
        Some("whsec_chosen_by_the_developer"),
        "trimmed and kept"
    );
    assert!(server.generated_payment_secret().is_none());
    assert!(
        !dir.path().join("keys/payment-webhook.secret").exists(),
        "nothing is generated when a secret is chosen"
    );
    server.stop().await;
    assert!(
        Cli::try_parse_from(["storefront-local", "--payment-webhook-secret", " "]).is_err(),
        "an empty secret is refused, not used"
    );
}

/// Runs `storefront-local` with `args` over `data_dir` to its end: (exit code, stdout, stderr).
fn run_command(data_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary())
        .args(["--data-dir"])
        .arg(data_dir)
        .args(args)
        .output()
        .expect("storefront-local runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn dlq_lists_and_redrives_dead_letters_and_refuses_a_running_servers_data() {
    use storefront::queue::{Outgoing, Queue as _};
    let dir = helpers::temp_dir();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let jobs = [
        r#"{"kind":"delete_blob","key":"uploads/a"}"#,
        r#"{"kind":"delete_blob","key":"uploads/b"}"#,
    ];
    {
        let embedded = storefront::context::AppContext::embedded(
            dir.path(),
            "http://127.0.0.1:9",
            storefront::config::RateLimits::default(),
            Arc::new(SystemClock),
        )
        .unwrap();
        for job in jobs {
            rt.block_on(embedded.dead_letters.send(Outgoing::new(job)))
                .unwrap();
        }
    }
    let (code, out, err) = run_command(dir.path(), &["dlq", "list"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "2 message(s) in jobs-dlq", "{out}");
    assert!(
        lines[1].ends_with(jobs[0]) && lines[2].ends_with(jobs[1]),
        "{out}"
    );
    let first = lines[1].split('\t').next().unwrap();

    let (code, out, _) = run_command(dir.path(), &["dlq", "redrive", "--id", first]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with("1 message(s) moved from jobs-dlq to jobs"),
        "{out}"
    );
    let (code, _, err) = run_command(dir.path(), &["dlq", "redrive", "--id", first]);
    assert_eq!(code, 1);
    assert!(err.contains("holds no message"), "{err}");
    let (_, out, _) = run_command(dir.path(), &["dlq", "list", "--queue", "image-uploads"]);
    assert!(
        out.starts_with("0 message(s) in image-uploads-dlq"),
        "{out}"
    );

    // With the server running on the data directory, the tool refuses (it holds the files).
    let mut server = spawn(dir.path());
    wait_ready(&mut server);
    let (code, _, err) = run_command(dir.path(), &["dlq", "redrive"]);
    assert_eq!(code, 1);
    assert!(err.contains("in use by another running instance"), "{err}");
    stop_cleanly(&mut server);

    let (code, out, _) = run_command(dir.path(), &["dlq", "redrive"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("1 message(s) moved"), "{out}");
    let (_, out, _) = run_command(dir.path(), &["dlq", "list"]);
    assert!(out.starts_with("0 message(s) in jobs-dlq"), "{out}");
}
