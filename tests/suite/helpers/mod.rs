//! Test harness: temporary data directories, the in-process local server, and moto's
//! server (started once per test run on a free loopback port, stopped when the run ends).

pub mod api;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use storefront::clock::{Clock, SystemClock};
use storefront::config::RateLimits;
use storefront::context::{AppContext, Embedded};
use storefront_local::{Options, Server};

/// A fresh, empty directory removed when dropped.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("storefront-test-")
        .tempdir()
        .expect("temp dir")
}

/// The embedded adapters over a fresh directory (kept alive by the returned guard).
pub fn embedded(clock: Arc<dyn Clock>) -> (Embedded, tempfile::TempDir) {
    let dir = temp_dir();
    let embedded = AppContext::embedded(
        dir.path(),
        "http://127.0.0.1:9",
        RateLimits::default(),
        clock,
    )
    .expect("embedded adapters open");
    (embedded, dir)
}

/// An API request as a client sends it: a bearer token and a JSON body, each if given.
pub fn api_request(
    method: http::Method,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> lambda_http::Request {
    let mut builder = http::Request::builder()
        .method(method)
        .uri(path)
        .header("user-agent", "storefront-tests/1");
    if let Some(token) = token {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    let body = match body {
        Some(body) => {
            builder = builder.header("content-type", "application/json");
            lambda_http::Body::from(body.to_string())
        }
        None => lambda_http::Body::Empty,
    };
    builder.body(body).expect("request")
}

pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A unique name for a table, queue or bucket, so tests sharing moto never collide.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
}

/// The local server on a free port over a fresh data directory.
pub struct LocalServer {
    pub server: Server,
    pub client: reqwest::Client,
    _dir: tempfile::TempDir,
}

impl LocalServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// The local server with some of its options changed by `choose`.
    pub async fn start_with(choose: impl FnOnce(&mut Options)) -> Self {
        let dir = temp_dir();
        let mut options = Options::new("127.0.0.1:0".parse().expect("addr"), dir.path().to_owned());
        choose(&mut options);
        let server = Server::start(options).await.expect("local server starts");
        Self {
            server,
            client: reqwest::Client::new(),
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    /// A raw TCP connection to the server, for what an HTTP client will not send.
    pub async fn connect(&self) -> tokio::net::TcpStream {
        let addr = self.server.url().trim_start_matches("http://").to_owned();
        tokio::net::TcpStream::connect(addr)
            .await
            .expect("connects")
    }
}

/// Reads what the server sends on `stream` until it closes it or `within` passes (a
/// bound that only ends a test that would otherwise hang; nothing asserts on time).
pub async fn read_until_closed(
    stream: &mut tokio::net::TcpStream,
    within: Duration,
) -> Option<String> {
    use tokio::io::AsyncReadExt as _;
    let mut seen = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut seen)).await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&seen).into_owned())
}

/// moto's server for this test run.
pub struct Moto {
    pub endpoint: String,
    _process: Child,
}

/// Where the test setup installed moto (see .ci/test), or `moto_server` on the PATH.
fn moto_command() -> PathBuf {
    if let Some(path) = std::env::var_os("STOREFRONT_MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let venv = std::env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cache/storefront/venv/bin/storefront-moto-server"));
    match venv {
        Some(path) if path.exists() => path,
        _ => PathBuf::from("moto_server"),
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Starts moto once for the whole run. A watcher shell stops it when this process exits,
/// so no server outlives the tests.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        let port = free_port();
        let script = format!(
            "\"$0\" -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; trap 'kill $m 2>/dev/null' EXIT; \
             while kill -0 {parent} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done",
            parent = std::process::id()
        );
        let command = moto_command();
        let process = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(&command)
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start moto ({}): {e}; run .ci/test, which installs it", command.display()));
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not start on port {port} within 60 s ({})", command.display());
            std::thread::sleep(Duration::from_millis(100));
        }
        Moto { endpoint, _process: process }
    })
}

/// An SDK configuration pointed at moto, never at a real AWS account.
pub async fn moto_sdk() -> aws_config::SdkConfig {
    let moto = moto();
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test", "test", None, None, "moto",
        ))
        .endpoint_url(&moto.endpoint)
        .load()
        .await
}

/// An S3 client for moto (path-style addressing, as moto's single host needs).
pub async fn moto_s3() -> aws_sdk_s3::Client {
    let sdk = moto_sdk().await;
    let config = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// What happens to the first transaction through a [`FirstTransaction`] table, just before
/// it would reach the store: `Err` fails it with that error (it never reaches the store),
/// `Ok` lets it through once the hook has done its work (a concurrent writer's change).
pub type Hook = Box<
    dyn Fn() -> futures_util::future::BoxFuture<'static, Result<(), storefront::store::StoreError>>
        + Send
        + Sync,
>;

/// A table that runs a hook ahead of the first transaction through it, and passes every
/// request on to `inner`: a race, made to happen at the one moment a test needs it.
pub struct FirstTransaction {
    inner: Arc<dyn storefront::store::Table>,
    armed: std::sync::atomic::AtomicBool,
    hook: Hook,
}

impl FirstTransaction {
    pub fn new(inner: Arc<dyn storefront::store::Table>, hook: Hook) -> Self {
        Self {
            inner,
            armed: std::sync::atomic::AtomicBool::new(true),
            hook,
        }
    }
}

#[async_trait::async_trait]
impl storefront::store::Table for FirstTransaction {
    async fn get(
        &self,
        key: &storefront::store::Key,
    ) -> Result<Option<storefront::store::Item>, storefront::store::StoreError> {
        self.inner.get(key).await
    }
    async fn get_many(
        &self,
        keys: &[storefront::store::Key],
        consistency: storefront::store::Consistency,
    ) -> Result<Vec<Option<storefront::store::Item>>, storefront::store::StoreError> {
        self.inner.get_many(keys, consistency).await
    }
    async fn put(
        &self,
        item: storefront::store::Item,
        condition: Option<storefront::store::Condition>,
    ) -> Result<(), storefront::store::StoreError> {
        self.inner.put(item, condition).await
    }
    async fn update(
        &self,
        key: &storefront::store::Key,
        ops: Vec<storefront::store::UpdateOp>,
        condition: Option<storefront::store::Condition>,
    ) -> Result<storefront::store::Item, storefront::store::StoreError> {
        self.inner.update(key, ops, condition).await
    }
    async fn delete(
        &self,
        key: &storefront::store::Key,
        condition: Option<storefront::store::Condition>,
    ) -> Result<Option<storefront::store::Item>, storefront::store::StoreError> {
        self.inner.delete(key, condition).await
    }
    async fn query(
        &self,
        query: storefront::store::Query,
    ) -> Result<storefront::store::Page, storefront::store::StoreError> {
        self.inner.query(query).await
    }
    async fn transact(
        &self,
        ops: Vec<storefront::store::TxOp>,
    ) -> Result<(), storefront::store::StoreError> {
        if self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
            (self.hook)().await?;
        }
        self.inner.transact(ops).await
    }
}
