//! The local server: every route of the route table and every queue worker in one process,
//! on the embedded adapters, so a laptop with only Rust runs the whole of Storefront.
//!
//! It also serves the blob store's presigned URLs under `/_blobs/`, checking each signature
//! as S3 would. Tests start it in-process with [`Server::start`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use secrecy::SecretString;
use storefront::blobs::embedded::{PresignRefusal, ROUTE_PREFIX};
use storefront::clock::SystemClock;
use storefront::config::RateLimits;
use storefront::context::{AppContext, Embedded};
use storefront::edge::dispatch;
use storefront::http::{refuse, ApiError, ClientIp, MAX_BODY_BYTES};
use storefront::jobs::images::ImageUploads;
use storefront::jobs::worker::Dispatcher;
use storefront::payments::local::ConfirmError;
use storefront::routes::ROUTES;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a stop waits for requests in flight before it gives up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often an idle worker looks for new jobs.
const WORKER_POLL: Duration = Duration::from_millis(100);
/// Where the local payment provider's confirm route lives (not part of the API).
const PAYMENTS_PATH: &str = "/_payments/";
/// How often the order expiry sweep runs (a schedule of one minute on AWS).
const EXPIRY_SWEEP: Duration = Duration::from_secs(1);
/// Uploads through presigned URLs may be larger than API bodies (images up to 10 MiB).
const MAX_UPLOAD_BYTES: usize = 10 * 1024 * 1024;

/// The command line: serve (the default), or rotate the signing keys.
#[derive(Debug, clap::Parser)]
#[command(
    name = "storefront-local",
    version,
    about = "Run the whole Storefront API locally"
)]
pub struct Cli {
    #[command(flatten)]
    pub options: Options,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add a new token signing key (it signs from now on; the previous one still verifies)
    /// and retire older ones. Locally, restart the server afterwards; with --aws, deploy.
    RotateKeys(RotateKeys),
    /// Inspect or redrive a dead-letter queue of the data directory (stop the server first:
    /// it holds the data directory while it runs).
    Dlq(Dlq),
}

#[derive(Debug, clap::Args)]
pub struct Dlq {
    #[command(subcommand)]
    pub action: DlqAction,
}

#[derive(Debug, clap::Subcommand)]
pub enum DlqAction {
    /// Print the messages waiting in a dead-letter queue, oldest first, one a line:
    /// its id and its job.
    List {
        #[arg(long, value_enum, default_value = "jobs")]
        queue: DeadLetters,
        /// The most messages printed.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Move messages of a dead-letter queue back to their queue, to be tried again.
    Redrive {
        #[arg(long, value_enum, default_value = "jobs")]
        queue: DeadLetters,
        /// Only this message (an id `dlq list` printed); every message without it.
        #[arg(long)]
        id: Option<String>,
    },
}

/// The dead-letter queues of the local server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeadLetters {
    /// The jobs queue's: events, webhook deliveries past their last attempt, refunds, …
    Jobs,
    /// The image worker's: upload notifications it could not handle.
    ImageUploads,
    /// The emails worker's: customer emails it could not write.
    Emails,
}

/// Lists or redrives a dead-letter queue of the data directory; answers what to print.
pub async fn dlq(options: &Options, dlq: &Dlq) -> anyhow::Result<String> {
    let embedded = AppContext::embedded(
        &options.data_dir,
        "http://127.0.0.1:0",
        RateLimits::default(),
        Arc::new(SystemClock),
    )?;
    let pick = |queue: DeadLetters| match queue {
        DeadLetters::Jobs => (&embedded.dead_letters, &embedded.jobs),
        DeadLetters::ImageUploads => (&embedded.image_dead_letters, &embedded.image_uploads),
        DeadLetters::Emails => (&embedded.email_dead_letters, &embedded.emails),
    };
    match &dlq.action {
        DlqAction::List { queue, limit } => {
            let (dead, _) = pick(*queue);
            let listed = dead.list(*limit).await?;
            let mut out = format!(
                "{} message(s) in {}{}",
                listed.len(),
                dead.name(),
                if listed.len() == *limit {
                    " (more may follow: raise --limit)"
                } else {
                    ""
                }
            );
            for message in listed {
                out.push_str(&format!("\n{}\t{}", message.id, message.body));
            }
            Ok(out)
        }
        DlqAction::Redrive { queue, id } => {
            let (dead, source) = pick(*queue);
            let moved = dead.move_to(source, id.clone()).await?;
            if moved == 0 {
                if let Some(id) = id {
                    anyhow::bail!("{} holds no message {id}", dead.name());
                }
            }
            Ok(format!(
                "{moved} message(s) moved from {} to {}; the server works them when it runs",
                dead.name(),
                source.name()
            ))
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct RotateKeys {
    /// Rotate the keys kept in SSM for a deployed stack (uses your AWS credentials).
    #[arg(long)]
    pub aws: bool,
    /// The SecureString parameter with the private keys (the stack's SigningKeysParameterName).
    #[arg(long, default_value = "/storefront/signing-keys")]
    pub signing_parameter: String,
    /// The String parameter with the public JWKS (the stack's JwksParameter).
    #[arg(long, default_value = "/storefront/jwks")]
    pub jwks_parameter: String,
    /// The alias of the customer-managed KMS key the signing keys are encrypted under
    /// (the stack's SigningKeysKmsAlias); made on first use.
    #[arg(long, default_value = "alias/storefront/signing-keys")]
    pub kms_alias: String,
}

/// The customer-managed KMS key under `alias`, made (with that alias) when there is none.
/// Its key policy is KMS's default, which leaves who may use it to IAM: template.yaml
/// grants decryption to the four functions that issue tokens, and to no other.
pub async fn ensure_kms_key(kms: &aws_sdk_kms::Client, alias: &str) -> anyhow::Result<String> {
    match kms.describe_key().key_id(alias).send().await {
        Ok(found) => {
            return found
                .key_metadata()
                .map(|key| key.arn().unwrap_or(key.key_id()).to_owned())
                .with_context(|| format!("KMS describes {alias} without its key"))
        }
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_not_found_exception()) => {}
        Err(e) => return Err(e).with_context(|| format!("looking up KMS key {alias}")),
    }
    let created = kms
        .create_key()
        .description("Storefront: encrypts the token signing keys in SSM")
        .send()
        .await
        .context("creating the signing keys' KMS key")?;
    let key = created
        .key_metadata()
        .context("KMS created a key without metadata")?;
    kms.create_alias()
        .alias_name(alias)
        .target_key_id(key.key_id())
        .send()
        .await
        .with_context(|| format!("naming the new KMS key {alias}"))?;
    Ok(key.arn().unwrap_or(key.key_id()).to_owned())
}

/// Rotates the signing keys of the data directory, or of SSM with `--aws`.
pub async fn rotate_keys(options: &Options, rotate: &RotateKeys) -> anyhow::Result<String> {
    if rotate.aws {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        let ssm = aws_sdk_ssm::Client::new(&sdk);
        let kms = aws_sdk_kms::Client::new(&sdk);
        ensure_kms_key(&kms, &rotate.kms_alias).await?;
        let kid = storefront::credentials::keys::rotate_aws(
            &ssm,
            &rotate.signing_parameter,
            &rotate.jwks_parameter,
            &rotate.kms_alias,
        )
        .await?;
        Ok(format!(
            "new signing key {kid} written to {} and {}; run `sam deploy` so every function reads the new JWKS",
            rotate.signing_parameter, rotate.jwks_parameter
        ))
    } else {
        let kid = storefront::credentials::keys::rotate_local(&options.data_dir)?;
        Ok(format!(
            "new signing key {kid} in {}; restart the server to sign with it (tokens of the previous key still verify)",
            options.data_dir.display()
        ))
    }
}

/// Command-line flags, each with an environment variable.
#[derive(Clone, Debug, clap::Args)]
pub struct Options {
    /// Address to listen on.
    #[arg(long, env = "STOREFRONT_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,
    /// Directory for the durable store, queue, blobs and keys (created if absent).
    #[arg(long, env = "STOREFRONT_DATA_DIR", default_value = ".storefront")]
    pub data_dir: PathBuf,
    /// The payment provider's webhook signing secret (`whsec_…`). Unset, one is generated in
    /// the data directory on first start and printed at every start.
    #[arg(
        long,
        env = PAYMENT_WEBHOOK_SECRET_ENV,
        hide_env_values = true,
        value_parser = non_empty_secret
    )]
    pub payment_webhook_secret: Option<SecretString>,
    /// Seconds an order waits for its payment before it is cancelled and its stock returned.
    #[arg(
        long,
        env = "STOREFRONT_ORDER_PAYMENT_WINDOW_S",
        default_value_t = storefront::config::DEFAULT_PAYMENT_WINDOW_S,
        value_parser = clap::value_parser!(i64).range(1..=7 * 24 * 3600)
    )]
    pub payment_window_s: i64,
    /// Stripe's secret key (`sk_test_…`): payments go to Stripe's API (or the fake at
    /// --stripe-api-base). Unset, the server's own local provider takes payments, confirmed
    /// at `POST /_payments/{id}/confirm`.
    #[arg(
        long,
        env = "STOREFRONT_STRIPE_SECRET_KEY",
        hide_env_values = true,
        value_parser = non_empty_secret
    )]
    pub stripe_secret_key: Option<SecretString>,
    /// Stripe's API, or a fake of it such as localstripe.
    #[arg(long, env = "STOREFRONT_STRIPE_API_BASE", default_value = storefront::payments::stripe::DEFAULT_API_BASE)]
    pub stripe_api_base: String,
    /// Let webhook endpoints be `http://127.0.0.1:…` (a receiver on this machine); never
    /// any other private address.
    #[arg(long, env = "STOREFRONT_WEBHOOK_ALLOW_LOOPBACK")]
    pub webhook_allow_loopback: bool,
    /// Seconds before each webhook delivery attempt, from the one before, comma-separated
    /// (`0,1,1`); unset, Standard Webhooks' schedule (0, 5 s, 5 min, … 24 h).
    #[arg(long, env = "STOREFRONT_WEBHOOK_RETRY_SCHEDULE", value_parser = retry_schedule)]
    pub webhook_retry_schedule: Option<storefront::domain::RetrySchedule>,
    /// The address customer emails come from; each is written to <data-dir>/outbox/ as an
    /// `.eml` file.
    #[arg(long, env = "STOREFRONT_EMAIL_SENDER", default_value = storefront::context::LOCAL_EMAIL_SENDER)]
    pub email_sender: String,
    /// The most connections served at once; more wait to be accepted.
    #[arg(long, env = "STOREFRONT_MAX_CONNECTIONS", default_value_t = 512)]
    pub max_connections: usize,
    /// Seconds a client may take to send a request's headers, or its body: a client that
    /// stalls (or holds a connection idle) is cut off after this.
    #[arg(long, env = "STOREFRONT_READ_TIMEOUT_S", default_value_t = 30)]
    pub read_timeout_s: u64,
}

impl Options {
    /// The defaults `storefront-local` starts with, on `addr` over `data_dir`.
    pub fn new(addr: SocketAddr, data_dir: PathBuf) -> Self {
        Self {
            addr,
            data_dir,
            payment_webhook_secret: None,
            payment_window_s: storefront::config::DEFAULT_PAYMENT_WINDOW_S,
            stripe_secret_key: None,
            stripe_api_base: storefront::payments::stripe::DEFAULT_API_BASE.to_owned(),
            webhook_allow_loopback: false,
            webhook_retry_schedule: None,
            email_sender: storefront::context::LOCAL_EMAIL_SENDER.to_owned(),
            max_connections: 512,
            read_timeout_s: 30,
        }
    }
}

/// Limits on what one client can hold of the server.
#[derive(Clone, Copy, Debug)]
struct ConnectionLimits {
    max_connections: usize,
    read_timeout: Duration,
}

/// A secret given on the command line or in the environment, trimmed; empty is unset.
fn non_empty_secret(raw: &str) -> Result<SecretString, String> {
    match raw.trim() {
        "" => Err("is empty; unset it to have one generated".into()),
        secret => Ok(SecretString::from(secret.to_owned())),
    }
}

fn retry_schedule(raw: &str) -> Result<storefront::domain::RetrySchedule, String> {
    storefront::domain::RetrySchedule::parse(raw).map_err(|e| e.to_string())
}

/// Where the payment provider's webhook secret comes from.
pub const PAYMENT_WEBHOOK_SECRET_ENV: &str = "STOREFRONT_PAYMENT_WEBHOOK_SECRET";

/// A running local server.
pub struct Server {
    url: String,
    embedded: Embedded,
    /// Whether the payment webhook secret was generated (and so must be shown to the user).
    generated_payment_secret: bool,
    stop: watch::Sender<bool>,
    http: JoinHandle<()>,
    worker: JoinHandle<()>,
    email_worker: JoinHandle<()>,
    image_worker: JoinHandle<()>,
    relay: JoinHandle<()>,
    expiry: JoinHandle<()>,
    payments: JoinHandle<()>,
}

impl Server {
    /// Opens the data directory, binds the address and starts serving and working.
    pub async fn start(options: Options) -> anyhow::Result<Self> {
        let limits = RateLimits::from_env()?;
        let listener = TcpListener::bind(options.addr)
            .await
            .with_context(|| format!("cannot listen on {}", options.addr))?;
        let url = format!("http://{}", listener.local_addr()?);
        let mut embedded =
            AppContext::embedded(&options.data_dir, &url, limits, Arc::new(SystemClock))?;
        let generated_payment_secret = options.payment_webhook_secret.is_none();
        let payment_secret = match options.payment_webhook_secret {
            Some(chosen) => chosen,
            None => storefront::credentials::files::load_or_create_webhook_secret(
                &options
                    .data_dir
                    .join("keys")
                    .join(storefront::credentials::files::PAYMENT_WEBHOOK_SECRET_FILE),
            )?,
        };
        embedded.ctx.payment_webhook_secret = Some(payment_secret);
        embedded.ctx.session_lifetime = storefront::config::session_lifetime()?;
        embedded.ctx.audit_retention = storefront::config::audit_retention()?;
        embedded.ctx.payment_window = chrono::Duration::seconds(options.payment_window_s);
        embedded.ctx.email_sender = Some(options.email_sender.clone());
        embedded.ctx.webhooks = storefront::config::WebhookSettings {
            schedule: options.webhook_retry_schedule.unwrap_or_default(),
            allow_loopback: options.webhook_allow_loopback,
        };
        let (payment_events, announced) = tokio::sync::mpsc::unbounded_channel();
        match options.stripe_secret_key {
            Some(key) => {
                embedded.ctx.payments = Arc::new(
                    storefront::payments::stripe::StripePayments::new(
                        &options.stripe_api_base,
                        key,
                    )
                    .context("setting up Stripe's API client")?,
                );
            }
            None => {
                embedded.local_payments =
                    embedded.local_payments.clone().announcing(payment_events);
                embedded.ctx.payments = Arc::new(embedded.local_payments.clone());
            }
        }
        // Jobs the last run received but never finished (it was killed) come back now
        // rather than after their visibility timeout: this process holds the queues alone.
        for queue in [&embedded.jobs, &embedded.image_uploads, &embedded.emails] {
            let released = queue.release_in_flight().await?;
            if released > 0 {
                tracing::info!(
                    queue = queue.name(),
                    released,
                    "jobs of the last run are retried"
                );
            }
        }
        let waiting = embedded.blobs.announce_waiting().await?;
        if waiting > 0 {
            tracing::info!(
                waiting,
                "uploads waiting since the last run are queued again"
            );
        }
        let (stop, stopped) = watch::channel(false);
        let worker = tokio::spawn(storefront::jobs::run_queue(
            embedded.ctx.clone(),
            Arc::new(embedded.jobs.clone()),
            Arc::new(Dispatcher),
            WORKER_POLL,
            stopped.clone(),
        ));
        let email_worker = tokio::spawn(storefront::jobs::run_queue(
            embedded.ctx.clone(),
            Arc::new(embedded.emails.clone()),
            Arc::new(Dispatcher),
            WORKER_POLL,
            stopped.clone(),
        ));
        let image_worker = tokio::spawn(storefront::jobs::run_queue(
            embedded.ctx.clone(),
            Arc::new(embedded.image_uploads.clone()),
            Arc::new(ImageUploads::default()),
            WORKER_POLL,
            stopped.clone(),
        ));
        let relay = tokio::spawn(storefront::jobs::outbox::run_relay(
            embedded.ctx.clone(),
            WORKER_POLL,
            stopped.clone(),
        ));
        let expiry = tokio::spawn(sweep_expired_orders(embedded.ctx.clone(), stopped.clone()));
        let payments = tokio::spawn(deliver_payment_events(
            embedded.ctx.clone(),
            announced,
            stopped.clone(),
        ));
        let limits = ConnectionLimits {
            max_connections: options.max_connections.max(1),
            read_timeout: Duration::from_secs(options.read_timeout_s.max(1)),
        };
        let http = tokio::spawn(serve(listener, embedded.clone(), limits, stopped));
        Ok(Self {
            url,
            embedded,
            generated_payment_secret,
            stop,
            http,
            worker,
            email_worker,
            image_worker,
            relay,
            expiry,
            payments,
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:3000`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The payment webhook secret the server made (kept in the data directory), when
    /// `STOREFRONT_PAYMENT_WEBHOOK_SECRET` did not choose one: the user configures the
    /// payment provider with it, so the server prints it at start.
    pub fn generated_payment_secret(&self) -> Option<&SecretString> {
        self.embedded
            .ctx
            .payment_webhook_secret
            .as_ref()
            .filter(|_| self.generated_payment_secret)
    }

    /// The adapters behind the server (tests look at the store and queues directly).
    pub fn embedded(&self) -> &Embedded {
        &self.embedded
    }

    /// Stops accepting, lets requests in flight finish, and stops the relay and the workers.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.http.await;
        let _ = self.relay.await;
        let _ = self.worker.await;
        let _ = self.email_worker.await;
        let _ = self.image_worker.await;
        let _ = self.expiry.await;
        let _ = self.payments.await;
    }
}

/// Cancels unpaid orders past their payment window, every [`EXPIRY_SWEEP`], until stopped
/// (on AWS, the `orders-expire` function on a schedule).
async fn sweep_expired_orders(ctx: AppContext, mut stopped: watch::Receiver<bool>) {
    loop {
        if let Err(e) = storefront::orders::expire_overdue(&ctx).await {
            tracing::warn!(
                error = format!("{e:#}"),
                "order expiry sweep failed; it runs again"
            );
        }
        tokio::select! {
            _ = tokio::time::sleep(EXPIRY_SWEEP) => {}
            _ = stopped.changed() => return,
        }
    }
}

/// Delivers the local payment provider's events to the server's own payment webhook,
/// signed with its webhook secret as Stripe signs them, until stopped.
async fn deliver_payment_events(
    ctx: AppContext,
    mut announced: tokio::sync::mpsc::UnboundedReceiver<String>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        let body = tokio::select! {
            body = announced.recv() => match body {
                Some(body) => body,
                None => return,
            },
            _ = stopped.changed() => return,
        };
        let Some(secret) = ctx.payment_webhook_secret.as_ref() else {
            tracing::warn!("a local payment event is dropped: no webhook secret");
            continue;
        };
        let signature = storefront::credentials::stripe_signature::sign(
            body.as_bytes(),
            secret,
            ctx.clock.now().timestamp(),
        );
        let request = http::Request::post("/v1/payments/webhook")
            .header(http::header::CONTENT_TYPE, "application/json")
            .header("stripe-signature", signature)
            .body(lambda_http::Body::Text(body));
        match request {
            Ok(mut request) => {
                request
                    .extensions_mut()
                    .insert(ClientIp("127.0.0.1".to_owned()));
                let answer = dispatch(&ctx, ROUTES, request).await;
                tracing::info!(
                    status = answer.status().as_u16(),
                    "local payment event delivered"
                );
            }
            Err(e) => tracing::warn!(error = %e, "a local payment event does not build"),
        }
    }
}

/// `POST /_payments/{id}/confirm` with `{"client_secret": …}`: the local provider's
/// stand-in for a card form. The payment succeeds and its event reaches the webhook.
async fn confirm_payment(
    embedded: &Embedded,
    read_timeout: Duration,
    req: http::Request<Incoming>,
) -> LocalResponse {
    #[derive(serde::Deserialize)]
    struct Confirm {
        client_secret: String,
    }
    let problem = |error: ApiError| into_local(refuse(&embedded.ctx, error));
    let path = req.uri().path().to_owned();
    let Some(payment_id) = path
        .strip_prefix(PAYMENTS_PATH)
        .and_then(|rest| rest.strip_suffix("/confirm"))
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .map(str::to_owned)
    else {
        return problem(ApiError::not_found("No such local payment route."));
    };
    if req.method() != Method::POST {
        return problem(ApiError::MethodNotAllowed {
            allow: vec![Method::POST],
        });
    }
    let bytes = match read_body(req.into_body(), MAX_BODY_BYTES, read_timeout).await {
        Ok(bytes) => bytes,
        Err(_) => return problem(ApiError::bad_request("The body could not be read.")),
    };
    let Ok(confirm) = serde_json::from_slice::<Confirm>(&bytes) else {
        return problem(ApiError::bad_request(
            "Send {\"client_secret\": …}, as POST /v1/orders/{id}/payment answered it.",
        ));
    };
    match embedded
        .local_payments
        .confirm(&payment_id, &confirm.client_secret)
        .await
    {
        Ok(()) => into_local(
            storefront::http::json(
                StatusCode::OK,
                &serde_json::json!({"id": payment_id, "status": "succeeded"}),
            )
            .unwrap_or_else(|e| refuse(&embedded.ctx, e)),
        ),
        Err(ConfirmError::NoSuchPayment) => {
            problem(ApiError::not_found("No local payment has this id."))
        }
        Err(ConfirmError::Refused) => problem(ApiError::Conflict {
            slug: "payment-not-confirmable",
            detail: "The client secret is not this payment's, or it is confirmed already.".into(),
        }),
        Err(ConfirmError::Store(e)) => problem(e.into()),
    }
}

/// Ctrl-C and SIGTERM, listened for from the moment this is made: build it before telling
/// anyone the server is ready, so a signal sent right after the ready line stops the server
/// cleanly instead of killing it.
pub struct ShutdownSignal {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignal {
    /// Installs the handlers now.
    pub fn listen() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves on the first Ctrl-C or SIGTERM.
    pub async fn recv(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Accepts connections while fewer than `max_connections` are open (the rest wait in the
/// listen backlog), and cuts off a client that takes longer than `read_timeout` to send
/// a request's headers (an idle keep-alive connection included) or its body.
async fn serve(
    listener: TcpListener,
    embedded: Embedded,
    limits: ConnectionLimits,
    mut stopped: watch::Receiver<bool>,
) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let embedded = Arc::new(embedded);
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let permit = tokio::select! {
            permit = open.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = stopped.changed() => break,
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                let embedded = embedded.clone();
                let service = hyper::service::service_fn(move |req| {
                    let embedded = embedded.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            route(&embedded, peer, limits.read_timeout, req).await,
                        )
                    }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(limits.read_timeout)
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    drop(permit);
                });
            }
            _ = stopped.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after {DRAIN_TIMEOUT:?}; stopping anyway");
    }
}

type LocalResponse = http::Response<Full<Bytes>>;

/// Reads at most `limit` bytes of a body, in at most `timeout`.
async fn read_body(body: Incoming, limit: usize, timeout: Duration) -> Result<Bytes, BodyRefused> {
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(_)) => Err(BodyRefused::TooLarge),
        Err(_) => Err(BodyRefused::TooSlow),
    }
}

/// Why a request body was not read whole.
enum BodyRefused {
    TooLarge,
    TooSlow,
}

/// 408 for a client that stopped sending its body (RFC 9110 §15.5.9).
fn too_slow(embedded: &Embedded) -> LocalResponse {
    let mut response = into_local(refuse(
        &embedded.ctx,
        ApiError::bad_request("The request body did not arrive in time."),
    ));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    response.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    response
}

async fn route(
    embedded: &Embedded,
    peer: SocketAddr,
    read_timeout: Duration,
    req: http::Request<Incoming>,
) -> LocalResponse {
    if req.uri().path().starts_with(ROUTE_PREFIX) {
        return blob(embedded, read_timeout, req).await;
    }
    if req.uri().path().starts_with(IMAGES_PATH) {
        return image(embedded, &req).await;
    }
    if req.uri().path().starts_with(PAYMENTS_PATH) {
        return confirm_payment(embedded, read_timeout, req).await;
    }
    let (parts, body) = req.into_parts();
    let bytes = match read_body(body, MAX_BODY_BYTES, read_timeout).await {
        Ok(bytes) => bytes,
        Err(BodyRefused::TooLarge) => {
            let problem = ApiError::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            };
            return into_local(refuse(&embedded.ctx, problem));
        }
        Err(BodyRefused::TooSlow) => return too_slow(embedded),
    };
    let mut req = http::Request::from_parts(parts, body_of(bytes));
    req.extensions_mut().insert(ClientIp(peer.ip().to_string()));
    into_local(dispatch(&embedded.ctx, ROUTES, req).await)
}

fn body_of(bytes: Bytes) -> lambda_http::Body {
    if bytes.is_empty() {
        lambda_http::Body::Empty
    } else {
        match String::from_utf8(bytes.to_vec()) {
            Ok(text) => lambda_http::Body::Text(text),
            Err(e) => lambda_http::Body::Binary(e.into_bytes()),
        }
    }
}

fn into_local(response: storefront::http::Response) -> LocalResponse {
    let (parts, body) = response.into_parts();
    let bytes = match body {
        lambda_http::Body::Empty => Bytes::new(),
        lambda_http::Body::Text(text) => Bytes::from(text),
        lambda_http::Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    http::Response::from_parts(parts, Full::new(bytes))
}

/// Serves a presigned blob URL: PUT stores, GET reads, both only with a valid signature.
async fn blob(
    embedded: &Embedded,
    read_timeout: Duration,
    req: http::Request<Incoming>,
) -> LocalResponse {
    let blobs = &embedded.blobs;
    let key = req.uri().path().trim_start_matches(ROUTE_PREFIX).to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let method = req.method().clone();
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let content_length = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let outcome = match method {
        // Checked from the URL and headers first: a forged, expired or oversized upload is
        // refused before a byte of its body is read, and the body is read no further than
        // the signed length.
        Method::PUT => match blobs.admit_put(&key, &query, content_type.as_deref(), content_length)
        {
            Ok(admitted) => {
                let limit = usize::try_from(admitted.length)
                    .unwrap_or(usize::MAX)
                    .min(MAX_UPLOAD_BYTES);
                match read_body(req.into_body(), limit, read_timeout).await {
                    Ok(body) => blobs
                        .store_put(admitted, body)
                        .await
                        .map(|()| (StatusCode::OK, None)),
                    Err(BodyRefused::TooLarge) => Err(PresignRefusal::WrongContentLength),
                    Err(BodyRefused::TooSlow) => return with_cors(too_slow(embedded)),
                }
            }
            Err(refusal) => Err(refusal),
        },
        Method::GET => match blobs.serve_get(&key, &query).await {
            Ok(Some(blob)) => Ok((StatusCode::OK, Some(blob))),
            Ok(None) => {
                let problem = ApiError::not_found("Nothing has been uploaded to this URL.");
                return with_cors(into_local(refuse(&embedded.ctx, problem)));
            }
            Err(refusal) => Err(refusal),
        },
        // A browser's CORS preflight for a presigned PUT with its Content-Type, answered as
        // the bucket's CORS rule in template.yaml answers it on S3.
        Method::OPTIONS => {
            let mut response = http::Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::NO_CONTENT;
            let headers = response.headers_mut();
            for (name, value) in [
                ("access-control-allow-methods", "GET, PUT"),
                ("access-control-allow-headers", "content-type"),
                ("access-control-max-age", "600"),
            ] {
                headers.insert(name, http::HeaderValue::from_static(value));
            }
            return with_cors(response);
        }
        _ => {
            let problem = ApiError::MethodNotAllowed {
                allow: vec![Method::GET, Method::PUT, Method::OPTIONS],
            };
            return into_local(refuse(&embedded.ctx, problem));
        }
    };
    let response = match outcome {
        Ok((status, blob)) => {
            let mut response = http::Response::new(Full::new(
                blob.as_ref().map(|b| b.bytes.clone()).unwrap_or_default(),
            ));
            *response.status_mut() = status;
            if let Some(ct) = blob.and_then(|b| http::HeaderValue::from_str(&b.content_type).ok()) {
                response
                    .headers_mut()
                    .insert(http::header::CONTENT_TYPE, ct);
            }
            let request_id = embedded.ctx.ids.next(storefront::ids::IdKind::Request);
            if let Ok(value) = http::HeaderValue::from_str(&request_id) {
                response
                    .headers_mut()
                    .insert(storefront::http::REQUEST_ID, value);
            }
            response
        }
        Err(PresignRefusal::StoreFailed) => into_local(refuse(
            &embedded.ctx,
            storefront::http::internal(anyhow::anyhow!("the local blob store failed")),
        )),
        Err(refusal) => {
            tracing::info!(key, reason = %refusal, "presigned request refused");
            into_local(refuse(
                &embedded.ctx,
                ApiError::Forbidden(refusal.to_string()),
            ))
        }
    };
    with_cors(response)
}

/// The path under which the local server serves product images, as CloudFront does on AWS.
const IMAGES_PATH: &str = "/images/";

/// Serves a product image (an original or a thumbnail the worker made) at its stable
/// address, to anyone, cacheable for a year: its key never names other bytes. Only objects
/// under `images/` are served; uploads never are.
async fn image(embedded: &Embedded, req: &http::Request<Incoming>) -> LocalResponse {
    let key = req.uri().path().trim_start_matches('/');
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let problem = ApiError::MethodNotAllowed {
            allow: vec![Method::GET, Method::HEAD],
        };
        return into_local(refuse(&embedded.ctx, problem));
    }
    let found = match storefront::blobs::validate_key(key) {
        Ok(()) => storefront::blobs::Blobs::get(&embedded.blobs, key).await,
        Err(e) => Err(e),
    };
    match found {
        Ok(Some(blob)) => {
            let body = if req.method() == Method::HEAD {
                Bytes::new()
            } else {
                blob.bytes
            };
            let mut response = http::Response::new(Full::new(body));
            let headers = response.headers_mut();
            let cache_control = blob
                .cache_control
                .as_deref()
                .unwrap_or(storefront::jobs::images::IMMUTABLE);
            for (name, value) in [
                (http::header::CONTENT_TYPE, blob.content_type.as_str()),
                (http::header::CACHE_CONTROL, cache_control),
                (http::header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ] {
                if let Ok(value) = http::HeaderValue::from_str(value) {
                    headers.insert(name, value);
                }
            }
            with_cors(response)
        }
        Ok(None) | Err(storefront::blobs::BlobError::Invalid(_)) => into_local(refuse(
            &embedded.ctx,
            ApiError::not_found("No image is served at this address."),
        )),
        Err(e) => into_local(refuse(&embedded.ctx, storefront::http::internal(e))),
    }
}

/// Lets a browser page on any origin use a presigned URL, as the bucket's CORS rule does.
fn with_cors(mut response: LocalResponse) -> LocalResponse {
    response.headers_mut().insert(
        "access-control-allow-origin",
        http::HeaderValue::from_static("*"),
    );
    response
}
