//! `bench`: how each Lambda function binary compares with a hello-world `lambda_http` binary.
//!
//! ```text
//! cargo run --release -p storefront-tests --bin bench -- [--runs 5] [--invocations 200]
//! ```
//!
//! It builds every package under `functions/` as deployment does (together, with the
//! workspace release profile, for the host: this machine cannot run the arm64 binaries that
//! are deployed) and the `bench-hello` baseline, then runs each binary under a fake Lambda
//! Runtime API on 127.0.0.1, feeding it `events/<name>.json`. Per binary it reports the cold
//! start (process spawn to its first invocation response, median of `--runs` fresh
//! processes), warm latency (event handed out by `/next` to response received, p50 and p99
//! over `--invocations` per process), peak RSS (`VmHWM` just before the kill) and the binary
//! sizes, host and arm64 (`target/lambda/<name>/bootstrap` from `cargo lambda build`, if
//! present). The table goes to stdout, progress to stderr.
//!
//! Nothing reaches AWS: the SDK's endpoint is a closed loopback port, the credentials are
//! fake, and the SDK makes one attempt per call (no back-off), so functions that use the
//! table or a bucket answer with their failure path (`health` says 503).

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _, Result};
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

const USAGE: &str = "\
usage: cargo run --release -p storefront-tests --bin bench -- [options]

  --runs N             fresh processes (cold starts) per binary, default 5
  --invocations N      warm invocations per process, after the cold one, default 200
  --timeout-s N        longest wait for any one answer or exit, default 10
  --build-timeout-s N  longest wait for each cargo build (and its lock), default 3600
  --no-build           measure the binaries already in the target directory";

const API_PREFIX: &str = "/2018-06-01/runtime";
const TRACE_ID: &str = "Root=1-67891233-6a2c4b5e8f0d1c2b3a4f5e6d;Parent=53995c3f42cd8ad8;Sampled=0";
const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";
/// How long a `/next` event stays valid, as the runtime sees it.
const DEADLINE: Duration = Duration::from_secs(60);
/// Connections the fake Runtime API accepts from one process: a bound on a runaway client,
/// not a limit a healthy one meets. The runtime's client usually keeps one connection
/// alive, but with a slow handler (a 50 ms password hash) its pool opened a new one for
/// about one invocation in two, and 64 ran out 143 invocations into a run.
const MAX_CONNECTIONS: usize = 4096;
/// Largest request body read (Lambda's own limit for a response is 6 MB).
const MAX_BODY: usize = 8 << 20;
/// Events waiting for `/next`, and reports waiting for the benchmark.
const EVENT_QUEUE: usize = 4;
const REPORT_QUEUE: usize = 64;
/// Reports about other request ids tolerated while waiting for one.
const MAX_STRAY_REPORTS: usize = 16;
const METADATA_TIMEOUT: Duration = Duration::from_secs(120);

/// The API Gateway v2 event the hello-world binary answers (it ignores the request anyway).
const HELLO_EVENT: &str = r#"{"version":"2.0","routeKey":"$default","rawPath":"/","rawQueryString":"","headers":{"accept":"*/*","host":"bench.execute-api.us-east-1.amazonaws.com","user-agent":"bench"},"requestContext":{"accountId":"123456789012","apiId":"bench","domainName":"bench.execute-api.us-east-1.amazonaws.com","domainPrefix":"bench","http":{"method":"GET","path":"/","protocol":"HTTP/1.1","sourceIp":"203.0.113.7","userAgent":"bench"},"requestId":"bench","routeKey":"$default","stage":"$default","time":"25/Nov/2025:15:35:00 +0000","timeEpoch":1764084900000},"isBase64Encoded":false}"#;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let options = Options::parse(std::env::args().skip(1))?;
    let interrupted = async {
        match tokio::signal::ctrl_c().await {
            Ok(()) => {}
            // Without a handler, only the end of the benchmark stops it.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    // Returning drops the benchmark's future, and with it (kill_on_drop) every child.
    tokio::select! {
        result = bench(&options) => result,
        () = interrupted => bail!("interrupted; every child process was killed"),
    }
}

#[derive(Clone, Debug)]
struct Options {
    runs: usize,
    invocations: usize,
    timeout: Duration,
    build_timeout: Duration,
    build: bool,
}

impl Options {
    fn parse(args: impl IntoIterator<Item = String>) -> Result<Self> {
        let mut options = Self {
            runs: 5,
            invocations: 200,
            timeout: Duration::from_secs(10),
            build_timeout: Duration::from_secs(3600),
            build: true,
        };
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((flag, value)) => (flag.to_owned(), Some(value.to_owned())),
                None => (arg.clone(), None),
            };
            match flag.as_str() {
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                "--no-build" => options.build = false,
                "--runs" | "--invocations" | "--timeout-s" | "--build-timeout-s" => {
                    let value = match inline {
                        Some(value) => value,
                        None => args
                            .next()
                            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?,
                    };
                    let n: u64 = value
                        .parse()
                        .with_context(|| format!("{flag} `{value}` is not a whole number"))?;
                    let within = |low: u64, high: u64| {
                        if (low..=high).contains(&n) {
                            Ok(n)
                        } else {
                            Err(anyhow!("{flag} must be between {low} and {high}"))
                        }
                    };
                    match flag.as_str() {
                        "--runs" => options.runs = usize::try_from(within(1, 1000)?)?,
                        "--invocations" => {
                            options.invocations = usize::try_from(within(1, 1_000_000)?)?
                        }
                        "--timeout-s" => options.timeout = Duration::from_secs(within(1, 600)?),
                        _ => options.build_timeout = Duration::from_secs(within(1, 86_400)?),
                    }
                }
                _ => bail!("unknown argument `{arg}`\n{USAGE}"),
            }
        }
        Ok(options)
    }
}

/// One binary to measure.
struct Target {
    /// What the table calls it.
    label: String,
    /// Its function name (for the environment and the ARN).
    name: String,
    host: PathBuf,
    arm64: Option<PathBuf>,
    /// The event it is fed, or why it is skipped.
    event: Result<Bytes, String>,
}

/// What the runs of one binary measured.
#[derive(Default)]
struct Measurement {
    cold: Vec<Duration>,
    warm: Vec<Duration>,
    hwm_kib: Vec<u64>,
    outcomes: BTreeMap<String, usize>,
    failure: Option<String>,
}

/// What one process measured.
struct RunResult {
    cold: Duration,
    warm: Vec<Duration>,
    hwm_kib: u64,
    outcomes: BTreeMap<String, usize>,
}

async fn bench(options: &Options) -> Result<()> {
    let started = Instant::now();
    let load_at_start = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Workspace::load(&cargo).await?;
    eprintln!(
        "bench: workspace {}, target directory {}, functions: {}",
        workspace.root.display(),
        workspace.target_dir.display(),
        workspace.functions.join(", ")
    );

    let function_build: Vec<String> = ["build", "--release", "--manifest-path"]
        .into_iter()
        .map(String::from)
        .chain([workspace.manifest().display().to_string()])
        .chain(
            workspace
                .functions
                .iter()
                .flat_map(|f| ["-p".to_owned(), f.clone()]),
        )
        .collect();
    let hello_build: Vec<String> = [
        "build",
        "--release",
        "--manifest-path",
        &workspace.manifest().display().to_string(),
        "-p",
        "storefront-tests",
        "--bin",
        "bench-hello",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    if options.build {
        // The functions are built on their own, as deployment builds them: building them
        // together with this crate would unify its dependencies' features into theirs.
        cargo_build(&cargo, &function_build, options.build_timeout).await?;
        cargo_build(&cargo, &hello_build, options.build_timeout).await?;
    } else {
        eprintln!("bench: --no-build: measuring the binaries already built");
    }
    let built = started.elapsed();

    let release = workspace.target_dir.join("release");
    let arm64_dir = arm64_dir(&workspace.target_dir);
    let mut targets = vec![Target {
        label: "hello-world (`bench-hello`)".into(),
        name: "bench-hello".into(),
        host: release.join("bench-hello"),
        arm64: None,
        event: Ok(Bytes::from_static(HELLO_EVENT.as_bytes())),
    }];
    for name in &workspace.functions {
        let events = workspace.root.join("events").join(format!("{name}.json"));
        let event = match std::fs::read(&events) {
            Ok(bytes) => Ok(Bytes::from(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(format!("skipped: no events/{name}.json"))
            }
            Err(e) => return Err(e).with_context(|| format!("reading {}", events.display())),
        };
        targets.push(Target {
            label: format!("`{name}`"),
            name: name.clone(),
            host: release.join(name),
            arm64: arm64_dir
                .as_ref()
                .map(|dir| dir.join(name).join("bootstrap"))
                .filter(|path| path.is_file()),
            event,
        });
    }
    for target in &targets {
        if !target.host.is_file() {
            bail!(
                "{} is missing; build it (or run without --no-build)",
                target.host.display()
            );
        }
    }

    // The SDK's endpoint: a loopback port bound but not listening, so every connection is
    // refused at once, and no other process can take the port while it is held.
    let closed = TcpSocket::new_v4().context("creating a socket")?;
    closed
        .bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .context("binding a loopback port for the SDK endpoint")?;
    let endpoint = format!("http://{}", closed.local_addr()?);

    let mut measurements = Vec::with_capacity(targets.len());
    for target in &targets {
        let measurement = match &target.event {
            Ok(event) => measure(target, event, options, &endpoint).await,
            Err(why) => {
                eprintln!("bench: {}: {why}", target.name);
                Measurement::default()
            }
        };
        measurements.push(measurement);
    }
    drop(closed);

    let report = Report {
        options,
        targets: &targets,
        measurements: &measurements,
        arm64_dir: arm64_dir.as_deref(),
        load_at_start: load_at_start.trim(),
        endpoint: &endpoint,
        function_build: &function_build,
        hello_build: &hello_build,
    };
    print!("{}", report.render());
    let total = started.elapsed();
    println!(
        "\nThe whole run took {:.1} s ({:.1} s of it building, {:.1} s measuring).",
        total.as_secs_f64(),
        built.as_secs_f64(),
        (total - built).as_secs_f64()
    );
    Ok(())
}

/// The workspace as `cargo metadata` describes it.
struct Workspace {
    root: PathBuf,
    target_dir: PathBuf,
    /// Every package under `functions/`, each with one binary of the same name.
    functions: Vec<String>,
}

impl Workspace {
    async fn load(cargo: &std::ffi::OsStr) -> Result<Self> {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let mut command = Command::new(cargo);
        command
            .args([
                "metadata",
                "--format-version",
                "1",
                "--no-deps",
                "--manifest-path",
            ])
            .arg(&manifest)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        scrub_cargo_env(&mut command);
        let output = tokio::time::timeout(METADATA_TIMEOUT, command.output())
            .await
            .map_err(|_| anyhow!("cargo metadata took over {METADATA_TIMEOUT:?}"))?
            .context("running cargo metadata")?;
        if !output.status.success() {
            bail!("cargo metadata failed ({})", output.status);
        }
        let metadata: serde_json::Value =
            serde_json::from_slice(&output.stdout).context("parsing cargo metadata")?;
        let text = |key: &str| {
            metadata[key]
                .as_str()
                .map(PathBuf::from)
                .with_context(|| format!("cargo metadata has no {key}"))
        };
        let root = text("workspace_root")?;
        let target_dir = text("target_directory")?;
        let functions_dir = root.join("functions");
        let mut functions = Vec::new();
        for package in metadata["packages"].as_array().into_iter().flatten() {
            let in_functions = package["manifest_path"]
                .as_str()
                .and_then(|path| Path::new(path).parent()?.parent().map(Path::to_owned))
                .is_some_and(|dir| dir == functions_dir);
            if !in_functions {
                continue;
            }
            let name = package["name"]
                .as_str()
                .context("a package without a name")?;
            let has_bin = package["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|t| {
                    t["name"].as_str() == Some(name)
                        && t["kind"]
                            .as_array()
                            .is_some_and(|kinds| kinds.iter().any(|k| k == "bin"))
                });
            if !has_bin {
                bail!("functions/{name} has no binary named {name}");
            }
            functions.push(name.to_owned());
        }
        if functions.is_empty() {
            bail!("no package under {}", functions_dir.display());
        }
        functions.sort();
        Ok(Self {
            root,
            target_dir,
            functions,
        })
    }

    fn manifest(&self) -> PathBuf {
        self.root.join("Cargo.toml")
    }
}

/// Drops what `cargo run` set for this binary, so nested cargo sees the user's environment.
fn scrub_cargo_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_")
            || matches!(
                key,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            )
        {
            command.env_remove(key);
        }
    }
}

async fn cargo_build(cargo: &std::ffi::OsStr, args: &[String], limit: Duration) -> Result<()> {
    eprintln!("bench: $ cargo {}", args.join(" "));
    // Cargo's stdout goes to stderr too: stdout is the report's.
    let stdout = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stderr")?;
    let mut command = Command::new(cargo);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    scrub_cargo_env(&mut command);
    let started = Instant::now();
    let mut child = command.spawn().context("starting cargo")?;
    let status = match tokio::time::timeout(limit, child.wait()).await {
        Ok(status) => status.context("waiting for cargo")?,
        Err(_) => bail!("cargo build took over {} s; killed", limit.as_secs()),
    };
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    eprintln!("bench: built in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Where `cargo lambda build` put its `<name>/bootstrap` files: `<target>/lambda`, or, when
/// CARGO_TARGET_DIR is unset, the target directory `.ci/run` uses by default.
fn arm64_dir(target_dir: &Path) -> Option<PathBuf> {
    let mut candidates = vec![target_dir.join("lambda")];
    if std::env::var_os("CARGO_TARGET_DIR").is_none() {
        if let Some(home) = std::env::var_os("HOME") {
            candidates.push(PathBuf::from(home).join(".cache/storefront/target/lambda"));
        }
    }
    candidates.into_iter().find(|dir| dir.is_dir())
}

/// Runs `options.runs` fresh processes of `target`; stops at the first failed run.
async fn measure(target: &Target, event: &Bytes, options: &Options, endpoint: &str) -> Measurement {
    let mut measurement = Measurement::default();
    for run in 1..=options.runs {
        match run_once(target, event, run, options, endpoint).await {
            Ok(result) => {
                let mut warm = result.warm.clone();
                warm.sort();
                eprintln!(
                    "bench: {} run {run}/{}: cold {:.1} ms, warm p50 {:.0} µs, p99 {:.0} µs, VmHWM {:.1} MiB",
                    target.name,
                    options.runs,
                    ms(result.cold),
                    percentile(&warm, 0.50).map_or(f64::NAN, us),
                    percentile(&warm, 0.99).map_or(f64::NAN, us),
                    result.hwm_kib as f64 / 1024.0,
                );
                measurement.cold.push(result.cold);
                measurement.warm.extend(result.warm);
                measurement.hwm_kib.push(result.hwm_kib);
                for (outcome, n) in result.outcomes {
                    *measurement.outcomes.entry(outcome).or_default() += n;
                }
            }
            Err(e) => {
                eprintln!(
                    "bench: {} run {run}/{} failed: {e:#}",
                    target.name, options.runs
                );
                measurement.failure = Some(format!("run {run} failed: {e:#}"));
                break;
            }
        }
    }
    measurement.cold.sort();
    measurement.warm.sort();
    measurement
}

/// One fresh process: its cold start, then `options.invocations` warm invocations, then its
/// peak RSS, then the kill. Any early return drops (and so kills) the child.
async fn run_once(
    target: &Target,
    event: &Bytes,
    run: usize,
    options: &Options,
    endpoint: &str,
) -> Result<RunResult> {
    let mut runtime = FakeRuntime::start(&target.name, options.timeout).await?;
    let mut outcomes = BTreeMap::new();

    // The first event waits in the queue, so the first `/next` is answered at once.
    let id = request_id(run, 0);
    runtime.push(&id, event.clone())?;
    let mut command = lambda_command(&target.host, &target.name, runtime.addr, endpoint);
    let spawned_at = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("starting {}", target.host.display()))?;
    let pid = child.id().context("the child has no pid")?;
    let first = runtime
        .wait_for(&id, &mut child)
        .await
        .context("cold invocation")?;
    let cold = first.at.saturating_duration_since(spawned_at);
    *outcomes.entry(first.summary()).or_default() += 1;

    let mut warm = Vec::with_capacity(options.invocations);
    for n in 1..=options.invocations {
        let id = request_id(run, n);
        runtime.push(&id, event.clone())?;
        let outcome = runtime
            .wait_for(&id, &mut child)
            .await
            .with_context(|| format!("warm invocation {n}"))?;
        warm.push(
            outcome
                .latency
                .context("a response for an event never handed out")?,
        );
        *outcomes.entry(outcome.summary()).or_default() += 1;
    }

    if let Some(status) = child.try_wait().context("checking the child")? {
        bail!("exited ({status}) before its memory could be read");
    }
    let hwm_kib = read_vm_hwm(pid)?;
    stop(&mut child, options.timeout).await;
    Ok(RunResult {
        cold,
        warm,
        hwm_kib,
        outcomes,
    })
}

fn request_id(run: usize, n: usize) -> String {
    format!("bench000-{run:04x}-4000-8000-{n:012x}")
}

/// The function's process with a Lambda-like environment that can reach only loopback.
fn lambda_command(path: &Path, function: &str, api: SocketAddr, endpoint: &str) -> Command {
    let mut command = Command::new(path);
    command
        .env_clear()
        .current_dir(std::env::temp_dir())
        .envs([
            ("AWS_LAMBDA_RUNTIME_API", api.to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", function.to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            ("AWS_LAMBDA_INITIALIZATION_TYPE", "on-demand".to_owned()),
            (
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{function}"),
            ),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2025/11/25/[$LATEST]00000000000000000000000000bench".to_owned(),
            ),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_DEFAULT_REGION", REGION.to_owned()),
            ("AWS_ACCESS_KEY_ID", "bench".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "bench".to_owned()),
            ("AWS_SESSION_TOKEN", "bench".to_owned()),
            ("AWS_ENDPOINT_URL", endpoint.to_owned()),
            // One attempt per call: a refused connection fails at once instead of backing off.
            ("AWS_MAX_ATTEMPTS", "1".to_owned()),
            ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
            (
                "AWS_CONFIG_FILE",
                "/nonexistent/bench/aws/config".to_owned(),
            ),
            (
                "AWS_SHARED_CREDENTIALS_FILE",
                "/nonexistent/bench/aws/credentials".to_owned(),
            ),
            ("STOREFRONT_TABLE", "bench".to_owned()),
            (
                "STOREFRONT_QUEUE_URL",
                format!("{endpoint}/{ACCOUNT}/bench-jobs"),
            ),
            ("STOREFRONT_BUCKET", "bench-uploads".to_owned()),
            ("RUST_LOG", "warn".to_owned()),
            ("TZ", ":UTC".to_owned()),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    command
}

/// The peak resident set size of `pid`, in KiB.
fn read_vm_hwm(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .with_context(|| format!("no VmHWM in {path}"))
}

/// Kills the child and reaps it, waiting at most `limit`.
async fn stop(child: &mut Child, limit: Duration) {
    if let Err(e) = child.start_kill() {
        eprintln!("bench: killing the child: {e}");
    }
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => eprintln!("bench: reaping the child: {e}"),
        Err(_) => eprintln!(
            "bench: the child outlived its kill by {} s",
            limit.as_secs()
        ),
    }
}

// ---------------------------------------------------------------------------------------
// The fake Lambda Runtime API.

/// An event waiting for `/next`.
struct Invocation {
    id: String,
    body: Bytes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Response,
    InvocationError,
    InitError,
}

/// A POST the process made.
struct Outcome {
    id: Option<String>,
    kind: Kind,
    body: Bytes,
    /// When its body had arrived.
    at: Instant,
    /// Since `/next` handed out its event.
    latency: Option<Duration>,
}

impl Outcome {
    /// "HTTP 503", "batch response, 1 failed item(s)", "invocation error …": what the notes count.
    fn summary(&self) -> String {
        let json: Option<serde_json::Value> = serde_json::from_slice(&self.body).ok();
        match self.kind {
            Kind::Response => match json {
                Some(v) if v.get("statusCode").is_some() => {
                    format!("HTTP {}", v["statusCode"])
                }
                Some(v) if v["batchItemFailures"].is_array() => {
                    let failed = v["batchItemFailures"].as_array().map_or(0, Vec::len);
                    format!("batch response, {failed} failed item(s)")
                }
                _ => "response".to_owned(),
            },
            Kind::InvocationError => format!(
                "invocation error {}",
                json.as_ref()
                    .and_then(|v| v["errorType"].as_str())
                    .unwrap_or("(untyped)")
            ),
            Kind::InitError => "init error".to_owned(),
        }
    }
}

/// What the server's connections share.
struct Shared {
    function: String,
    events: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    delivered: Mutex<HashMap<String, Instant>>,
    outcomes: mpsc::Sender<Outcome>,
    wait: Duration,
}

impl Shared {
    fn delivered(&self) -> MutexGuard<'_, HashMap<String, Instant>> {
        self.delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// A Runtime API for one process, on an ephemeral 127.0.0.1 port; dropping it stops it.
struct FakeRuntime {
    addr: SocketAddr,
    events: mpsc::Sender<Invocation>,
    outcomes: mpsc::Receiver<Outcome>,
    server: JoinHandle<()>,
    wait: Duration,
}

impl Drop for FakeRuntime {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeRuntime {
    async fn start(function: &str, wait: Duration) -> Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding the fake Runtime API")?;
        let addr = listener.local_addr()?;
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let (outcomes_tx, outcomes_rx) = mpsc::channel(REPORT_QUEUE);
        let shared = Arc::new(Shared {
            function: function.to_owned(),
            events: tokio::sync::Mutex::new(events_rx),
            delivered: Mutex::new(HashMap::new()),
            outcomes: outcomes_tx,
            wait,
        });
        let server = tokio::spawn(accept(listener, shared));
        Ok(Self {
            addr,
            events: events_tx,
            outcomes: outcomes_rx,
            server,
            wait,
        })
    }

    /// Queues an event for the next `/next`.
    fn push(&self, id: &str, body: Bytes) -> Result<()> {
        self.events
            .try_send(Invocation {
                id: id.to_owned(),
                body,
            })
            .map_err(|_| anyhow!("the event queue is full or closed"))
    }

    /// Waits (at most `self.wait`) for the process to answer `id`, failing early if it
    /// reports an init error or exits.
    async fn wait_for(&mut self, id: &str, child: &mut Child) -> Result<Outcome> {
        let deadline = tokio::time::Instant::now() + self.wait;
        for _ in 0..MAX_STRAY_REPORTS {
            let outcome = tokio::select! {
                biased;
                outcome = self.outcomes.recv() => outcome.context("the fake Runtime API stopped")?,
                status = child.wait() => {
                    let status = status.context("waiting for the child")?;
                    bail!("the process exited ({status}) before answering{}", self.init_error());
                }
                () = tokio::time::sleep_until(deadline) => {
                    bail!("no answer within {} s", self.wait.as_secs());
                }
            };
            match outcome.kind {
                Kind::InitError => bail!(
                    "the process reported an init error: {}",
                    String::from_utf8_lossy(&outcome.body)
                ),
                _ if outcome.id.as_deref() == Some(id) => return Ok(outcome),
                _ => eprintln!(
                    "bench: ignoring a report for {:?} while waiting for {id}",
                    outcome.id
                ),
            }
        }
        bail!("over {MAX_STRAY_REPORTS} reports for other invocations while waiting for {id}")
    }

    /// The init error already reported, if any, as a suffix for a message.
    fn init_error(&mut self) -> String {
        let mut found = String::new();
        while let Ok(outcome) = self.outcomes.try_recv() {
            if outcome.kind == Kind::InitError {
                found = format!(
                    "; it reported an init error: {}",
                    String::from_utf8_lossy(&outcome.body)
                );
            }
        }
        found
    }
}

/// Serves at most MAX_CONNECTIONS connections; aborting the task closes them all.
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    for _ in 0..MAX_CONNECTIONS {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                eprintln!("bench: the fake Runtime API stopped accepting: {e}");
                break;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            eprintln!("bench: TCP_NODELAY: {e}");
        }
        let shared = shared.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| serve(shared.clone(), req));
            // An error here is the process closing the connection (or being killed).
            if let Err(e) = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                if !e.is_incomplete_message() && !e.is_closed() {
                    eprintln!("bench: fake Runtime API connection: {e}");
                }
            }
        });
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

async fn serve(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(route(&shared, req).await.unwrap_or_else(|e| {
        reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{{\"errorMessage\":{:?}}}", format!("{e:#}")),
        )
    }))
}

async fn route(shared: &Shared, req: Request<Incoming>) -> Result<Response<Full<Bytes>>> {
    let not_found = || reply(StatusCode::NOT_FOUND, r#"{"errorType":"NotFound"}"#);
    let Some(rest) = req.uri().path().strip_prefix(API_PREFIX) else {
        return Ok(not_found());
    };
    if rest == "/invocation/next" {
        return if req.method() == Method::GET {
            next_event(shared).await
        } else {
            Ok(reply(StatusCode::METHOD_NOT_ALLOWED, ""))
        };
    }
    let (id, kind) = if rest == "/init/error" {
        (None, Kind::InitError)
    } else {
        match rest
            .strip_prefix("/invocation/")
            .and_then(|tail| tail.rsplit_once('/'))
        {
            Some((id, "response")) => (Some(id.to_owned()), Kind::Response),
            Some((id, "error")) => (Some(id.to_owned()), Kind::InvocationError),
            _ => return Ok(not_found()),
        }
    };
    if req.method() != Method::POST {
        return Ok(reply(StatusCode::METHOD_NOT_ALLOWED, ""));
    }
    let body = Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| anyhow!("reading the request body: {e}"))?
        .to_bytes();
    let at = Instant::now();
    let latency = id
        .as_ref()
        .and_then(|id| shared.delivered().remove(id))
        .map(|delivered| at.saturating_duration_since(delivered));
    let outcome = Outcome {
        id,
        kind,
        body,
        at,
        latency,
    };
    if shared.outcomes.try_send(outcome).is_err() {
        eprintln!("bench: dropped a report: the benchmark is not reading them");
    }
    Ok(reply(StatusCode::ACCEPTED, r#"{"status":"OK"}"#))
}

/// `GET /next`: the next queued event, waiting for one at most `shared.wait`.
async fn next_event(shared: &Shared) -> Result<Response<Full<Bytes>>> {
    let next = async { shared.events.lock().await.recv().await };
    let Ok(Some(invocation)) = tokio::time::timeout(shared.wait, next).await else {
        return Ok(reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"errorType":"NoEvent","errorMessage":"the benchmark queued no event in time"}"#,
        ));
    };
    let deadline_ms = (SystemTime::now() + DEADLINE)
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_millis();
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(CONTENT_TYPE, "application/json")
        .header("Lambda-Runtime-Aws-Request-Id", invocation.id.as_str())
        .header("Lambda-Runtime-Deadline-Ms", deadline_ms.to_string())
        .header(
            "Lambda-Runtime-Invoked-Function-Arn",
            format!(
                "arn:aws:lambda:{REGION}:{ACCOUNT}:function:{}",
                shared.function
            ),
        )
        .header("Lambda-Runtime-Trace-Id", TRACE_ID)
        .body(Full::new(invocation.body))?;
    shared.delivered().insert(invocation.id, Instant::now());
    Ok(response)
}

fn reply(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

// ---------------------------------------------------------------------------------------
// The report.

struct Report<'a> {
    options: &'a Options,
    targets: &'a [Target],
    measurements: &'a [Measurement],
    arm64_dir: Option<&'a Path>,
    load_at_start: &'a str,
    endpoint: &'a str,
    function_build: &'a [String],
    hello_build: &'a [String],
}

impl Report<'_> {
    fn render(&self) -> String {
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("model name"))
                    .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let cpus = std::thread::available_parallelism().map_or(0, usize::from);
        line(String::new());
        line("## Storefront functions vs. a hello-world `lambda_http` binary".into());
        line(String::new());
        line(format!(
            "- **Host builds, not arm64.** Deployment runs arm64 (`provided.al2023`); this \
             machine ({}-{}, {cpu}, {cpus} CPUs, load average at start {}) cannot run arm64 \
             binaries, so every timing and RSS below is of the host build of the same \
             code and profile. The arm64 column is size only: `<target>/lambda/<name>/bootstrap` \
             from `cargo lambda build --release --arm64`, {}.",
            std::env::consts::ARCH,
            std::env::consts::OS,
            self.load_at_start,
            match self.arm64_dir {
                Some(dir) => format!("read from `{}`{}", dir.display(), self.arm64_age()),
                None => "which has not been run in this target directory (—)".to_owned(),
            }
        ));
        line(format!(
            "- Built with the workspace `[profile.release]`: `cargo {}` (the functions \
             together, as `.ci/run` builds them for deployment) and `cargo {}`.",
            self.function_build[..2].join(" ") + " " + &self.function_build[4..].join(" "),
            self.hello_build[..2].join(" ") + " " + &self.hello_build[4..].join(" "),
        ));
        line(format!(
            "- Each binary runs under a fake Lambda Runtime API on 127.0.0.1 (a fresh server \
             and process per run), with `AWS_LAMBDA_FUNCTION_MEMORY_SIZE=256` (not enforced), \
             fake credentials and `AWS_ENDPOINT_URL={}`, a closed loopback port, with \
             `AWS_MAX_ATTEMPTS=1`: every AWS call fails at once with a refused connection, so \
             a function that touches the table or a bucket runs its failure path.",
            self.endpoint
        ));
        line(format!(
            "- Cold start: process spawn → its first invocation response received (init + \
             first invoke; the event is queued before the spawn), median of {} runs. Warm: \
             event handed out by `/next` → response received, p50/p99 over {} runs × {} \
             invocations. Peak RSS: the largest `VmHWM` of the runs, read just before each \
             kill. MB and MiB here are 2^20 bytes.",
            self.options.runs, self.options.runs, self.options.invocations
        ));
        line(String::new());
        line("| binary | size (host) | size (arm64) | cold start median (ms) | × hello | warm p50 (µs) | warm p99 (µs) | peak RSS (MB) | × hello |".into());
        line("|---|--:|--:|--:|--:|--:|--:|--:|--:|".into());
        let hello = self.measurements.first();
        let hello_cold = hello.and_then(|m| median(&m.cold));
        let hello_rss = hello.and_then(|m| m.hwm_kib.iter().max().copied());
        for (target, m) in self.targets.iter().zip(self.measurements) {
            let cold = median(&m.cold);
            let rss = m.hwm_kib.iter().max().copied();
            let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
                (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
                _ => "—".to_owned(),
            };
            line(format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                target.label,
                size(Some(&target.host)),
                size(target.arm64.as_ref()),
                cold.map_or_else(dash, |d| format!("{:.1}", ms(d))),
                ratio(cold.map(ms), hello_cold.map(ms)),
                percentile(&m.warm, 0.50).map_or_else(dash, |d| format!("{:.0}", us(d))),
                percentile(&m.warm, 0.99).map_or_else(dash, |d| format!("{:.0}", us(d))),
                rss.map_or_else(dash, |kib| format!("{:.1}", kib as f64 / 1024.0)),
                ratio(rss.map(|k| k as f64), hello_rss.map(|k| k as f64)),
            ));
        }
        line(String::new());
        line("What each binary answered (all invocations, cold and warm):".into());
        line(String::new());
        for (target, m) in self.targets.iter().zip(self.measurements) {
            let mut notes: Vec<String> = m
                .outcomes
                .iter()
                .map(|(outcome, n)| format!("{outcome} ×{n}"))
                .collect();
            if let Err(why) = &target.event {
                notes.push(why.clone());
            } else if m.cold.is_empty() && m.failure.is_none() {
                notes.push("not measured".to_owned());
            }
            if let Some(failure) = &m.failure {
                notes.push(format!("**{failure}**"));
            }
            let event = if target.name == "bench-hello" {
                "built-in API Gateway v2 `GET /`".to_owned()
            } else {
                format!("`events/{}.json`", target.name)
            };
            line(format!(
                "- {} ({event}): {}",
                target.label,
                if notes.is_empty() {
                    "nothing".to_owned()
                } else {
                    notes.join(", ")
                }
            ));
        }
        out
    }

    /// How long ago the newest arm64 bootstrap was written.
    fn arm64_age(&self) -> String {
        let newest = self
            .targets
            .iter()
            .filter_map(|t| t.arm64.as_ref())
            .filter_map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
            .max();
        match newest.and_then(|t| t.elapsed().ok()) {
            Some(age) => format!(" (newest written {:.0} min ago)", age.as_secs_f64() / 60.0),
            None => String::new(),
        }
    }
}

fn dash() -> String {
    "—".to_owned()
}

fn size(path: Option<&PathBuf>) -> String {
    match path.and_then(|p| std::fs::metadata(p).ok()) {
        Some(meta) => format!("{:.2} MiB", meta.len() as f64 / 1_048_576.0),
        None => dash(),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// The median of sorted samples (the mean of the middle two when their count is even).
fn median(sorted: &[Duration]) -> Option<Duration> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

/// The nearest-rank percentile of sorted samples.
fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}
