//! The SSRF guard for outbound webhook deliveries: which endpoint URLs a shop may register,
//! and the connector every delivery goes through, which refuses to reach anything but the
//! public internet.
//!
//! A webhook endpoint is a URL a tenant chooses and Storefront then calls from inside its
//! own network, so without a guard it would be a way to read the cloud's metadata service
//! (and the credentials it hands out) or to probe private hosts. The check is made twice:
//!
//! - at registration, on the URL's form ([`check_url`]): https, no credentials, no local
//!   names, and an IP-literal host must be public ([`refusal`]);
//! - at every delivery, on the addresses the host resolves to *and* the address actually
//!   connected to ([`GuardedConnector`]), so a name that resolved to a public address when
//!   it was registered, or a moment before the connect, cannot be pointed at a private one
//!   (DNS rebinding).
//!
//! The ranges are IANA's special-purpose registries, written out because `Ipv4Addr::is_global`
//! and its kin are not stable:
//! <https://www.iana.org/assignments/iana-ipv4-special-registry/>,
//! <https://www.iana.org/assignments/iana-ipv6-special-registry/>. An IPv6 address that
//! embeds an IPv4 one is judged by the IPv4 address it reaches. See also OWASP's
//! <https://cheatsheetseries.owasp.org/cheatsheets/Server_Side_Request_Forgery_Prevention_Cheat_Sheet.html>.
//!
//! Only the local server may relax this, with `STOREFRONT_WEBHOOK_ALLOW_LOOPBACK=true`
//! ([`Policy::allow_loopback`]), so endpoints on the developer's own machine can be tried.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::Uri;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use url::{Host, Url};

/// The longest endpoint URL accepted, in bytes.
const MAX_URL_BYTES: usize = 2048;

/// How long resolving an endpoint's host and opening a connection to it may take. Both take
/// well under a second to a healthy endpoint, and this leaves most of a delivery's 15 s
/// (DESIGN.md, "Events and jobs") for the endpoint's answer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What may be reached: everything public, and loopback only when the local server allows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// `STOREFRONT_WEBHOOK_ALLOW_LOOPBACK=true`, honoured by the local server alone: this
    /// machine's loopback addresses (`127.0.0.0/8`, `::1`) may be reached, over plain http too.
    pub allow_loopback: bool,
}

/// IPv4 ranges no delivery may reach, most specific first (the first match names the
/// reason). Together they are every range in IANA's IPv4 special-purpose registry that is
/// not globally reachable, plus multicast.
const V4_REFUSED: &[(Ipv4Addr, u8, &str)] = &[
    // "This network" (RFC 791); connecting to 0.0.0.0 reaches this host on Linux.
    (Ipv4Addr::new(0, 0, 0, 0), 8, "unspecified"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, "private"),
    // Alibaba Cloud's metadata service, inside the shared address space.
    // <https://www.alibabacloud.com/help/en/ecs/user-guide/view-instance-metadata>
    (Ipv4Addr::new(100, 100, 100, 200), 32, "cloud metadata"),
    // RFC 6598.
    (
        Ipv4Addr::new(100, 64, 0, 0),
        10,
        "CGNAT (shared address space)",
    ),
    (Ipv4Addr::new(127, 0, 0, 0), 8, "loopback"),
    // EC2's instance metadata (IMDS) and ECS's task metadata and credentials; GCP's and
    // Azure's metadata services answer on 169.254.169.254 too.
    // <https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html>,
    // <https://docs.aws.amazon.com/AmazonECS/latest/developerguide/task-iam-roles.html>
    (Ipv4Addr::new(169, 254, 169, 254), 32, "cloud metadata"),
    (Ipv4Addr::new(169, 254, 170, 2), 32, "cloud metadata"),
    (Ipv4Addr::new(169, 254, 0, 0), 16, "link-local"),
    (Ipv4Addr::new(172, 16, 0, 0), 12, "private"),
    // Oracle Cloud's metadata service.
    // <https://docs.oracle.com/en-us/iaas/Content/Compute/Tasks/gettingmetadata.htm>
    (Ipv4Addr::new(192, 0, 0, 192), 32, "cloud metadata"),
    (Ipv4Addr::new(192, 0, 0, 0), 24, "IETF protocol assignments"),
    (Ipv4Addr::new(192, 0, 2, 0), 24, "documentation"),
    // RFC 7526 deprecated it; what answers there now is whoever still announces it.
    (Ipv4Addr::new(192, 88, 99, 0), 24, "6to4 relay anycast"),
    (Ipv4Addr::new(192, 168, 0, 0), 16, "private"),
    (Ipv4Addr::new(198, 18, 0, 0), 15, "benchmarking"),
    (Ipv4Addr::new(198, 51, 100, 0), 24, "documentation"),
    (Ipv4Addr::new(203, 0, 113, 0), 24, "documentation"),
    (Ipv4Addr::new(224, 0, 0, 0), 4, "multicast"),
    (Ipv4Addr::new(255, 255, 255, 255), 32, "broadcast"),
    (Ipv4Addr::new(240, 0, 0, 0), 4, "reserved"),
];

/// IPv6 ranges no delivery may reach, most specific first. The forms that embed an IPv4
/// address are not here: [`refusal_v6`] judges them by that address.
const V6_REFUSED: &[(Ipv6Addr, u8, &str)] = &[
    (Ipv6Addr::UNSPECIFIED, 128, "unspecified"),
    (Ipv6Addr::LOCALHOST, 128, "loopback"),
    // RFC 6666.
    (
        Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
        64,
        "discard-only",
    ),
    (Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0), 10, "link-local"),
    // Deprecated by RFC 3879, but a network may still route it internally.
    (Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0), 10, "site-local"),
    // EC2's instance metadata over IPv6 (Nitro instances).
    // <https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/instancedata-data-retrieval.html>
    (
        Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
        128,
        "cloud metadata",
    ),
    // RFC 4193.
    (
        Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
        7,
        "unique-local",
    ),
    (Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0), 8, "multicast"),
    // RFC 4380: the client's IPv4 address is obfuscated in the last 32 bits and its server's
    // is in the middle, so there is no one IPv4 address to judge it by.
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        32,
        "Teredo (its IPv4 address is hidden)",
    ),
    (
        Ipv6Addr::new(0x2001, 0x2, 0, 0, 0, 0, 0, 0),
        48,
        "benchmarking",
    ),
    (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
        32,
        "documentation",
    ),
    (
        Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
        23,
        "IETF protocol assignments",
    ),
    // RFC 9637.
    (
        Ipv6Addr::new(0x3fff, 0, 0, 0, 0, 0, 0, 0),
        20,
        "documentation",
    ),
];

/// `::ffff:a.b.c.d` (RFC 4291 §2.5.5.2): a socket given one connects to `a.b.c.d` itself.
const V4_MAPPED: (Ipv6Addr, u8) = (Ipv6Addr::new(0, 0, 0, 0, 0, 0xffff, 0, 0), 96);
/// `::a.b.c.d` (RFC 4291 §2.5.5.1, deprecated).
const V4_COMPATIBLE: (Ipv6Addr, u8) = (Ipv6Addr::UNSPECIFIED, 96);
/// NAT64's well-known prefix (RFC 6052 §2.1): the IPv4 address is the last 32 bits.
const NAT64_WELL_KNOWN: (Ipv6Addr, u8) = (Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96);
/// NAT64's local-use prefix (RFC 8215), out of which an operator takes a prefix of any
/// length from /48 to /96 (RFC 6052 §2.2 says where the IPv4 address sits for each).
const NAT64_LOCAL_USE: (Ipv6Addr, u8) = (Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48);
/// 6to4 (RFC 3056): the IPv4 address is bits 16..48.
const SIX_TO_FOUR: (Ipv6Addr, u8) = (Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16);
/// Global unicast (RFC 4291 §2.4): everything IANA has handed to registries is in it, and
/// whatever is outside it and not judged above is reserved.
const GLOBAL_UNICAST: (Ipv6Addr, u8) = (Ipv6Addr::new(0x2000, 0, 0, 0, 0, 0, 0, 0), 3);

/// Why an address may not be reached, or `None` when it may (under `policy`).
pub fn refusal(ip: IpAddr, policy: Policy) -> Option<&'static str> {
    match ip {
        IpAddr::V4(ip) => refusal_v4(ip, policy),
        IpAddr::V6(ip) => refusal_v6(ip, policy),
    }
}

fn refusal_v4(ip: Ipv4Addr, policy: Policy) -> Option<&'static str> {
    if policy.allow_loopback && ip.is_loopback() {
        return None;
    }
    V4_REFUSED
        .iter()
        .find(|(network, len, _)| within_v4(ip, *network, *len))
        .map(|(_, _, reason)| *reason)
}

fn refusal_v6(ip: Ipv6Addr, policy: Policy) -> Option<&'static str> {
    if policy.allow_loopback && ip.is_loopback() {
        return None;
    }
    if let Some((_, _, reason)) = V6_REFUSED
        .iter()
        .find(|(network, len, _)| within_v6(ip, *network, *len))
    {
        return Some(reason);
    }
    let o = ip.octets();
    let last_32 = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    // Only the mapped form reaches this machine's own 127.0.0.1; the others cross a
    // translator or a tunnel, whose loopback is not the one the local server allows.
    let elsewhere = Policy::default();
    if within(ip, V4_MAPPED) {
        return refusal_v4(last_32, policy);
    }
    if within(ip, V4_COMPATIBLE) || within(ip, NAT64_WELL_KNOWN) {
        return refusal_v4(last_32, elsewhere);
    }
    if within(ip, NAT64_LOCAL_USE) {
        // With a /96 prefix bits 48..96 are zero and the IPv4 address is the last 32 bits.
        // With a shorter prefix it sits in those middle bits instead, split around RFC 6052's
        // `u` octet; no public endpoint needs that form, so rather than guess the operator's
        // prefix length it is refused.
        return if o[6..12].iter().all(|&b| b == 0) {
            refusal_v4(last_32, elsewhere)
        } else {
            Some("local-use NAT64 not in its /96 form")
        };
    }
    if within(ip, SIX_TO_FOUR) {
        return refusal_v4(Ipv4Addr::new(o[2], o[3], o[4], o[5]), elsewhere);
    }
    if !within(ip, GLOBAL_UNICAST) {
        return Some("reserved");
    }
    None
}

fn within_v4(ip: Ipv4Addr, network: Ipv4Addr, prefix_len: u8) -> bool {
    // A shift by the full width is `None`: a /0 masks nothing in.
    let mask = u32::MAX
        .checked_shl(32 - u32::from(prefix_len))
        .unwrap_or(0);
    u32::from(ip) & mask == u32::from(network) & mask
}

fn within_v6(ip: Ipv6Addr, network: Ipv6Addr, prefix_len: u8) -> bool {
    let mask = u128::MAX
        .checked_shl(128 - u32::from(prefix_len))
        .unwrap_or(0);
    u128::from(ip) & mask == u128::from(network) & mask
}

fn within(ip: Ipv6Addr, (network, prefix_len): (Ipv6Addr, u8)) -> bool {
    within_v6(ip, network, prefix_len)
}

/// Why an endpoint URL is refused at registration (and again before each delivery).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UrlRefusal {
    /// The scheme is not https (or, on a local server that allows loopback, http to loopback).
    #[error("the URL must use https")]
    NotHttps,
    /// The URL carries a user name or password (`https://user:pw@…`): a secret that would
    /// be stored and shown as part of the URL; the endpoint's signing secret is the way to
    /// authenticate deliveries.
    #[error("the URL must not carry a user name or password")]
    Credentials,
    /// The URL names no host.
    #[error("the URL must name a host")]
    NoHost,
    /// The URL is longer than [`MAX_URL_BYTES`].
    #[error("the URL must be at most {} bytes long", MAX_URL_BYTES)]
    TooLong,
    /// The host is an IP address that may not be reached: why, and the address.
    #[error("the URL's host {1} is not publicly reachable ({0})")]
    Address(&'static str, String),
    /// The host is a name that can only mean this machine or a private network
    /// (`localhost`, `*.localhost`, `metadata.google.internal`, a name without a dot, …).
    #[error("the URL's host {0} is a local name, not a public one")]
    Localhost(String),
}

/// Checks a URL's form: https (http only under allow_loopback and only for a loopback IP
/// literal host or `localhost`), no user:password, a host, at most 2048 bytes, and an
/// IP-literal host must pass [`refusal`].
///
/// A host name passes if it may be public; where it points is only known at delivery, when
/// [`GuardedConnector`] checks it.
pub fn check_url(url: &Url, policy: Policy) -> Result<(), UrlRefusal> {
    if url.as_str().len() > MAX_URL_BYTES {
        return Err(UrlRefusal::TooLong);
    }
    let plain_http = match url.scheme() {
        "https" => false,
        "http" => true,
        _ => return Err(UrlRefusal::NotHttps),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlRefusal::Credentials);
    }
    let host = url.host().ok_or(UrlRefusal::NoHost)?;
    if plain_http && !(policy.allow_loopback && names_loopback(&host)) {
        return Err(UrlRefusal::NotHttps);
    }
    match host {
        // The url crate has already turned `0x7f.1`, `2130706433` and the like into the
        // address they stand for (WHATWG URL's IPv4 parser), so they are judged here.
        Host::Ipv4(ip) => check_address(IpAddr::V4(ip), policy),
        Host::Ipv6(ip) => check_address(IpAddr::V6(ip), policy),
        Host::Domain(name) => check_name(name, policy),
    }
}

fn check_address(ip: IpAddr, policy: Policy) -> Result<(), UrlRefusal> {
    match refusal(ip, policy) {
        Some(reason) => Err(UrlRefusal::Address(reason, ip.to_string())),
        None => Ok(()),
    }
}

/// Refuses names that can only mean this machine or a private network, so the shop hears
/// at once rather than from failed deliveries (they would be refused there too, by address).
fn check_name(name: &str, policy: Policy) -> Result<(), UrlRefusal> {
    let bare = name.trim_end_matches('.').to_ascii_lowercase();
    // RFC 6761 §6.3: `localhost` and every name under it are loopback.
    let loopback = bare == "localhost" || bare.ends_with(".localhost");
    let local = loopback
        // A name without a dot is completed from the resolver's search domains, i.e. it
        // names a host on our own network (GCE resolves plain `metadata` to its metadata
        // service that way).
        || !bare.contains('.')
        // ICANN reserved `.internal` for private use, so it is never a public name; GCP's
        // metadata service is `metadata.google.internal`.
        // <https://cloud.google.com/compute/docs/metadata/querying-metadata>
        || bare.ends_with(".internal")
        // RFC 6762 (multicast DNS) and RFC 8375 (home networks).
        || bare.ends_with(".local")
        || bare.ends_with(".home.arpa");
    if local && !(loopback && policy.allow_loopback) {
        return Err(UrlRefusal::Localhost(name.to_owned()));
    }
    Ok(())
}

/// Whether plain http may go to this host on a local server that allows loopback.
fn names_loopback(host: &Host<&str>) -> bool {
    match host {
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
        Host::Domain(name) => name.trim_end_matches('.').eq_ignore_ascii_case("localhost"),
    }
}

/// A hyper-util connector that resolves the endpoint's host itself, refuses the whole
/// connection if any address it resolves to is refused, connects only to the addresses it
/// checked, and checks the connected socket's peer once more.
///
/// Refusing when any address is refused, not only skipping the bad ones, is deliberate: a
/// name that resolves to one public and one private address is an attack, and a retry must
/// not land on the private one.
#[derive(Clone, Debug)]
pub struct GuardedConnector {
    policy: Policy,
    connect_timeout: Duration,
}

impl GuardedConnector {
    /// A connector that reaches what `policy` allows, giving up when resolving the host and
    /// connecting take longer than `connect_timeout` together.
    pub fn new(policy: Policy, connect_timeout: Duration) -> Self {
        Self {
            policy,
            connect_timeout,
        }
    }

    async fn connect(self, dst: Uri) -> io::Result<TokioIo<TcpStream>> {
        let target = Target::of(&dst)?;
        let within = self.connect_timeout;
        let (host, port) = (target.host.clone(), target.port);
        tokio::time::timeout(within, self.connect_to(target))
            .await
            .map_err(|_| {
                io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("connecting to {host}:{port} took longer than {within:?}"),
                )
            })?
    }

    #[tracing::instrument(name = "webhook connect", skip_all, fields(host = %target.host, port = target.port))]
    async fn connect_to(self, target: Target) -> io::Result<TokioIo<TcpStream>> {
        let addresses = resolve(&target).await?;
        admit(&target, &addresses, self.policy)?;
        let mut last_error = None;
        for address in addresses {
            let stream = match TcpStream::connect(address).await {
                Ok(stream) => stream,
                Err(e) => {
                    last_error = Some(e);
                    continue;
                }
            };
            // What the socket is connected to, not what was asked for: the last word on
            // where the request's bytes will go.
            let peer = stream.peer_addr()?;
            if let Some(reason) = refusal(peer.ip(), self.policy) {
                return Err(refused(&target.host, peer.ip(), reason));
            }
            // A delivery is one small request; waiting to coalesce its writes only adds latency.
            stream.set_nodelay(true)?;
            return Ok(TokioIo::new(stream));
        }
        let cause = last_error.map_or_else(|| "no address".to_owned(), |e| e.to_string());
        Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!("connecting to {}:{}: {cause}", target.host, target.port),
        ))
    }
}

type Connecting = Pin<Box<dyn Future<Output = io::Result<TokioIo<TcpStream>>> + Send>>;

impl tower_service::Service<Uri> for GuardedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Connecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        Box::pin(self.clone().connect(dst))
    }
}

/// Where a connection is asked to go.
#[derive(Debug)]
struct Target {
    /// The host as the URI names it, without an IPv6 literal's brackets.
    host: String,
    port: u16,
    plain_http: bool,
}

impl Target {
    fn of(dst: &Uri) -> io::Result<Self> {
        let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
        let plain_http = match dst.scheme_str() {
            Some("https") => false,
            Some("http") => true,
            other => {
                return Err(invalid(format!(
                    "a webhook endpoint's scheme must be https, not {}",
                    other.unwrap_or("none")
                )))
            }
        };
        let host = dst
            .host()
            .ok_or_else(|| invalid("a webhook endpoint's URI has no host".to_owned()))?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let port = dst.port_u16().unwrap_or(if plain_http { 80 } else { 443 });
        Ok(Self {
            host: host.to_owned(),
            port,
            plain_http,
        })
    }
}

/// The addresses to try: an IP literal as it is, a name as DNS answers now.
async fn resolve(target: &Target) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = target.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, target.port)]);
    }
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| io::Error::new(e.kind(), format!("resolving {}: {e}", target.host)))?
        .collect();
    if addresses.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("resolving {}: no addresses", target.host),
        ));
    }
    Ok(addresses)
}

/// Refuses the connection unless every address may be reached, and plain http unless it
/// goes only to loopback on a local server that allows it.
fn admit(target: &Target, addresses: &[SocketAddr], policy: Policy) -> io::Result<()> {
    for address in addresses {
        if let Some(reason) = refusal(address.ip(), policy) {
            return Err(refused(&target.host, address.ip(), reason));
        }
    }
    if target.plain_http
        && !(policy.allow_loopback && addresses.iter().all(|a| a.ip().is_loopback()))
    {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "refusing plain http to {}: webhook deliveries use https",
                target.host
            ),
        ));
    }
    Ok(())
}

/// The error a refused address becomes: `PermissionDenied`, so a caller can tell it from an
/// endpoint that is merely down, with the address and the reason in its message.
fn refused(host: &str, ip: IpAddr, reason: &str) -> io::Error {
    tracing::warn!(%host, %ip, reason, "webhook endpoint refused");
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!(
            "refusing to connect to {host}: its address {ip} is not publicly reachable ({reason})"
        ),
    )
}

/// The HTTPS client deliveries use: guarded connects, https only (or http too under
/// allow_loopback), HTTP/1.1, no redirects followed (hyper's client never follows them),
/// no proxy.
pub fn client(
    policy: Policy,
) -> anyhow::Result<Client<HttpsConnector<GuardedConnector>, Full<Bytes>>> {
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_native_roots()
        .context("loading the system's CA certificates for webhook deliveries")?;
    let builder = if policy.allow_loopback {
        // The connector still refuses plain http to anything but loopback.
        builder.https_or_http()
    } else {
        builder.https_only()
    };
    let connector = builder
        .enable_http1()
        .wrap_connector(GuardedConnector::new(policy, CONNECT_TIMEOUT));
    Ok(Client::builder(TokioExecutor::new()).build(connector))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;
    use tower_service::Service as _;

    const LOOPBACK_ALLOWED: Policy = Policy {
        allow_loopback: true,
    };

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    fn uri(s: &str) -> Uri {
        s.parse().unwrap()
    }

    #[test]
    fn every_address_gets_the_verdict_its_range_calls_for() {
        let cases: &[(&str, Option<&str>)] = &[
            // Public.
            ("93.184.216.34", None),
            ("8.8.8.8", None),
            ("11.0.0.1", None),
            ("100.63.255.255", None),
            ("100.128.0.1", None),
            ("172.15.255.255", None),
            ("172.32.0.1", None),
            ("192.169.0.1", None),
            ("198.20.0.1", None),
            ("223.255.255.255", None),
            ("2606:4700::1111", None),
            ("2001:4860:4860::8888", None),
            ("::ffff:93.184.216.34", None),
            ("64:ff9b::5db8:d822", None),
            ("64:ff9b:1::5db8:d822", None),
            ("2002:5db8:d822::1", None),
            // IPv4.
            ("0.0.0.0", Some("unspecified")),
            ("0.1.2.3", Some("unspecified")),
            ("10.0.0.1", Some("private")),
            ("10.255.255.255", Some("private")),
            ("100.64.0.1", Some("CGNAT (shared address space)")),
            ("100.127.255.255", Some("CGNAT (shared address space)")),
            ("100.100.100.200", Some("cloud metadata")),
            ("127.0.0.1", Some("loopback")),
            ("127.1.2.3", Some("loopback")),
            ("169.254.169.254", Some("cloud metadata")),
            ("169.254.170.2", Some("cloud metadata")),
            ("169.254.1.1", Some("link-local")),
            ("172.16.0.1", Some("private")),
            ("172.31.255.255", Some("private")),
            ("192.0.0.1", Some("IETF protocol assignments")),
            ("192.0.0.192", Some("cloud metadata")),
            ("192.0.2.1", Some("documentation")),
            ("192.88.99.1", Some("6to4 relay anycast")),
            ("192.168.1.1", Some("private")),
            ("198.18.0.1", Some("benchmarking")),
            ("198.19.255.255", Some("benchmarking")),
            ("198.51.100.1", Some("documentation")),
            ("203.0.113.1", Some("documentation")),
            ("224.0.0.1", Some("multicast")),
            ("239.255.255.250", Some("multicast")),
            ("240.0.0.1", Some("reserved")),
            ("255.255.255.254", Some("reserved")),
            ("255.255.255.255", Some("broadcast")),
            // IPv6.
            ("::", Some("unspecified")),
            ("::1", Some("loopback")),
            ("100::1", Some("discard-only")),
            ("fe80::1", Some("link-local")),
            ("febf::1", Some("link-local")),
            ("fec0::1", Some("site-local")),
            ("fc00::1", Some("unique-local")),
            ("fd12:3456::1", Some("unique-local")),
            ("fd00:ec2::254", Some("cloud metadata")),
            ("ff02::1", Some("multicast")),
            ("2001::1", Some("Teredo (its IPv4 address is hidden)")),
            (
                "2001:0:4136:e378:8000:63bf:3fff:fdd2",
                Some("Teredo (its IPv4 address is hidden)"),
            ),
            ("2001:2::1", Some("benchmarking")),
            ("2001:10::1", Some("IETF protocol assignments")),
            ("2001:db8::1", Some("documentation")),
            ("3fff::1", Some("documentation")),
            ("5f00::1", Some("reserved")),
            ("4000::1", Some("reserved")),
            // IPv6 forms of an IPv4 address, judged by that address.
            ("::ffff:10.0.0.1", Some("private")),
            ("::ffff:169.254.169.254", Some("cloud metadata")),
            ("::ffff:7f00:1", Some("loopback")),
            ("::127.0.0.1", Some("loopback")),
            ("::10.0.0.1", Some("private")),
            ("64:ff9b::a9fe:a9fe", Some("cloud metadata")),
            ("64:ff9b::7f00:1", Some("loopback")),
            ("64:ff9b:1::a00:1", Some("private")),
            (
                "64:ff9b:1:a9fe:a9:fe00::",
                Some("local-use NAT64 not in its /96 form"),
            ),
            ("2002:0a00:0001::1", Some("private")),
            ("2002:a9fe:a9fe::", Some("cloud metadata")),
            // SIIT's `::ffff:0:a.b.c.d` (RFC 2765, obsolete) is not a form we translate.
            ("::ffff:0:a00:1", Some("reserved")),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter_map(|(address, expected)| {
                let ip: IpAddr = address.parse().unwrap();
                let got = refusal(ip, Policy::default());
                (got != *expected).then(|| format!("{address}: expected {expected:?}, got {got:?}"))
            })
            .collect();
        assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));
    }

    #[test]
    fn every_range_in_the_tables_is_written_as_its_network_address() {
        for (network, len, reason) in V4_REFUSED {
            assert!(*len <= 32, "{network}/{len}");
            let host_bits =
                u32::from(*network) & !u32::MAX.checked_shl(32 - u32::from(*len)).unwrap_or(0);
            assert_eq!(host_bits, 0, "{network}/{len} ({reason}) has host bits set");
        }
        for (network, len, reason) in V6_REFUSED {
            assert!(*len <= 128, "{network}/{len}");
            let host_bits =
                u128::from(*network) & !u128::MAX.checked_shl(128 - u32::from(*len)).unwrap_or(0);
            assert_eq!(host_bits, 0, "{network}/{len} ({reason}) has host bits set");
        }
    }

    #[test]
    fn loopback_is_allowed_only_when_the_local_server_allows_it() {
        for address in ["127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"] {
            let ip: IpAddr = address.parse().unwrap();
            assert_eq!(
                refusal(ip, Policy::default()),
                Some("loopback"),
                "{address}"
            );
            assert_eq!(refusal(ip, LOOPBACK_ALLOWED), None, "{address}");
        }
    }

    #[test]
    fn allowing_loopback_allows_nothing_else_private() {
        for address in [
            "10.0.0.1",
            "169.254.169.254",
            "0.0.0.0",
            "::",
            "fd00:ec2::254",
            "::ffff:10.0.0.1",
        ] {
            let ip: IpAddr = address.parse().unwrap();
            assert!(refusal(ip, LOOPBACK_ALLOWED).is_some(), "{address}");
        }
    }

    #[test]
    fn a_translated_or_tunnelled_loopback_address_is_refused_even_when_loopback_is_allowed() {
        // They reach a translator's or a relay's loopback, not this machine's.
        for address in ["64:ff9b::7f00:1", "::127.0.0.1", "2002:7f00:1::1"] {
            let ip: IpAddr = address.parse().unwrap();
            assert_eq!(refusal(ip, LOOPBACK_ALLOWED), Some("loopback"), "{address}");
        }
    }

    #[test]
    fn a_public_https_url_is_accepted() {
        assert_eq!(
            check_url(&url("https://shop.example/hook"), Policy::default()),
            Ok(())
        );
        assert_eq!(
            check_url(
                &url("https://93.184.216.34:8443/hook?x=1"),
                Policy::default()
            ),
            Ok(())
        );
    }

    #[test]
    fn a_url_that_is_not_https_is_refused() {
        for s in [
            "http://shop.example/hook",
            "ftp://shop.example/",
            "ws://shop.example/",
        ] {
            assert_eq!(
                check_url(&url(s), Policy::default()),
                Err(UrlRefusal::NotHttps),
                "{s}"
            );
            assert_eq!(
                check_url(&url(s), LOOPBACK_ALLOWED),
                Err(UrlRefusal::NotHttps),
                "{s}"
            );
        }
    }

    #[test]
    fn an_http_loopback_url_is_accepted_only_when_the_local_server_allows_loopback() {
        for s in [
            "http://127.0.0.1:8080/hook",
            "http://localhost:8080/hook",
            "http://[::1]:8080/",
        ] {
            assert!(check_url(&url(s), Policy::default()).is_err(), "{s}");
            assert_eq!(check_url(&url(s), LOOPBACK_ALLOWED), Ok(()), "{s}");
        }
    }

    #[test]
    fn a_url_with_a_user_name_or_password_is_refused() {
        for s in [
            "https://user:pw@shop.example/",
            "https://user@shop.example/",
            "https://:pw@shop.example/",
        ] {
            assert_eq!(
                check_url(&url(s), Policy::default()),
                Err(UrlRefusal::Credentials),
                "{s}"
            );
        }
    }

    #[test]
    fn a_url_longer_than_2048_bytes_is_refused() {
        let base = "https://shop.example/";
        let fits = format!("{base}{}", "a".repeat(MAX_URL_BYTES - base.len()));
        let too_long = format!("{fits}a");
        assert_eq!(check_url(&url(&fits), Policy::default()), Ok(()));
        assert_eq!(
            check_url(&url(&too_long), Policy::default()),
            Err(UrlRefusal::TooLong)
        );
    }

    #[test]
    fn a_url_whose_host_is_a_private_address_is_refused_with_the_reason() {
        assert_eq!(
            check_url(&url("https://10.1.2.3/"), Policy::default()),
            Err(UrlRefusal::Address("private", "10.1.2.3".to_owned()))
        );
        assert_eq!(
            check_url(&url("https://[::ffff:7f00:1]/"), Policy::default()),
            Err(UrlRefusal::Address(
                "loopback",
                "::ffff:127.0.0.1".to_owned()
            ))
        );
        assert_eq!(
            check_url(&url("https://[fd00:ec2::254]/"), LOOPBACK_ALLOWED),
            Err(UrlRefusal::Address(
                "cloud metadata",
                "fd00:ec2::254".to_owned()
            ))
        );
    }

    #[test]
    fn an_address_written_in_hex_or_as_one_number_is_judged_by_the_address_it_means() {
        for s in [
            "https://0x7f.1/",
            "https://2130706433/",
            "https://0177.0.0.1/",
        ] {
            assert!(
                matches!(
                    check_url(&url(s), Policy::default()),
                    Err(UrlRefusal::Address("loopback", _))
                ),
                "{s}"
            );
        }
        assert!(matches!(
            check_url(&url("https://0xa9.0xfe.0xa9.0xfe/"), Policy::default()),
            Err(UrlRefusal::Address("cloud metadata", _))
        ));
    }

    #[test]
    fn localhost_is_refused_unless_the_local_server_allows_loopback() {
        for s in [
            "https://localhost/",
            "https://LOCALHOST./",
            "https://api.localhost/",
        ] {
            assert!(
                matches!(
                    check_url(&url(s), Policy::default()),
                    Err(UrlRefusal::Localhost(_))
                ),
                "{s}"
            );
            assert_eq!(check_url(&url(s), LOOPBACK_ALLOWED), Ok(()), "{s}");
        }
    }

    #[test]
    fn a_local_or_metadata_name_is_refused_even_when_loopback_is_allowed() {
        for s in [
            "https://metadata.google.internal/computeMetadata/v1/",
            "https://metadata/",
            "https://ip-10-0-0-1.ec2.internal/",
            "https://printer.local/",
            "https://router.home.arpa/",
        ] {
            assert!(
                matches!(
                    check_url(&url(s), LOOPBACK_ALLOWED),
                    Err(UrlRefusal::Localhost(_))
                ),
                "{s}"
            );
        }
    }

    #[test]
    fn a_refusal_reads_as_a_sentence_naming_the_address_and_why() {
        let refusal = UrlRefusal::Address("cloud metadata", "169.254.169.254".to_owned());
        assert_eq!(
            refusal.to_string(),
            "the URL's host 169.254.169.254 is not publicly reachable (cloud metadata)"
        );
        assert_eq!(
            UrlRefusal::TooLong.to_string(),
            "the URL must be at most 2048 bytes long"
        );
    }

    fn target(host: &str, plain_http: bool) -> Target {
        Target {
            host: host.to_owned(),
            port: 443,
            plain_http,
        }
    }

    #[test]
    fn a_name_that_resolves_to_one_public_and_one_private_address_is_refused() {
        let addresses: Vec<SocketAddr> = vec![
            "93.184.216.34:443".parse().unwrap(),
            "10.0.0.1:443".parse().unwrap(),
        ];
        let e = admit(
            &target("rebind.example", false),
            &addresses,
            Policy::default(),
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("10.0.0.1"), "{e}");
        assert!(e.to_string().contains("private"), "{e}");
    }

    #[test]
    fn a_name_that_resolves_only_to_public_addresses_is_admitted() {
        let addresses: Vec<SocketAddr> = vec![
            "93.184.216.34:443".parse().unwrap(),
            "[2606:2800:220:1:248:1893:25c8:1946]:443".parse().unwrap(),
        ];
        admit(
            &target("shop.example", false),
            &addresses,
            Policy::default(),
        )
        .unwrap();
    }

    #[tokio::test]
    async fn plain_http_to_anything_but_loopback_is_refused_before_connecting() {
        // Refused before any connect, so no packet leaves for the public address.
        for policy in [Policy::default(), LOOPBACK_ALLOWED] {
            let e = GuardedConnector::new(policy, Duration::from_secs(1))
                .call(uri("http://93.184.216.34/"))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
            assert!(e.to_string().contains("plain http"), "{e}");
        }
    }

    #[tokio::test]
    async fn connecting_to_a_loopback_listener_is_refused_and_nothing_reaches_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut connector = GuardedConnector::new(Policy::default(), Duration::from_secs(5));
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .unwrap();
        let e = connector
            .call(uri(&format!("https://127.0.0.1:{port}/hook")))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("127.0.0.1"), "{e}");
        assert!(e.to_string().contains("loopback"), "{e}");
        let accepted = tokio::time::timeout(Duration::from_millis(100), listener.accept()).await;
        assert!(
            accepted.is_err(),
            "the refused connector reached the listener"
        );
    }

    #[tokio::test]
    async fn connecting_to_a_loopback_listener_succeeds_when_loopback_is_allowed() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stream = GuardedConnector::new(LOOPBACK_ALLOWED, Duration::from_secs(5))
            .call(uri(&format!("https://127.0.0.1:{}/hook", address.port())))
            .await
            .unwrap();
        assert_eq!(stream.inner().peer_addr().unwrap(), address);
        let (_, from) = listener.accept().await.unwrap();
        assert_eq!(from, stream.inner().local_addr().unwrap());
    }

    #[tokio::test]
    async fn a_host_name_that_resolves_to_loopback_is_refused() {
        let e = GuardedConnector::new(Policy::default(), Duration::from_secs(5))
            .call(uri("https://localhost:9/"))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains("loopback"), "{e}");
    }

    #[tokio::test]
    async fn an_ipv6_literal_is_judged_without_its_brackets() {
        let e = GuardedConnector::new(Policy::default(), Duration::from_secs(5))
            .call(uri("https://[::ffff:169.254.169.254]/latest/meta-data/"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains("cloud metadata"), "{e}");
    }

    /// The error and its causes, one after another, as a delivery would log them.
    fn chain(e: &(dyn std::error::Error + 'static)) -> String {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }

    #[tokio::test]
    async fn the_delivery_client_refuses_a_loopback_endpoint() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let request = http::Request::post(format!("https://127.0.0.1:{port}/hook"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let e = client(Policy::default())
            .unwrap()
            .request(request)
            .await
            .unwrap_err();
        assert!(chain(&e).contains("loopback"), "{}", chain(&e));
    }

    #[tokio::test]
    async fn the_delivery_client_reaches_plain_http_on_loopback_when_the_local_server_allows_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buffer = [0_u8; 1024];
            while !request.ends_with(b"{}") {
                let n = stream.read(&mut buffer).await.unwrap();
                assert!(n > 0, "the client closed before sending its body");
                request.extend_from_slice(&buffer[..n]);
            }
            stream
                .write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")
                .await
                .unwrap();
            String::from_utf8(request).unwrap()
        });
        let request = http::Request::post(format!("http://127.0.0.1:{port}/hook"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .unwrap();
        let response = client(LOOPBACK_ALLOWED)
            .unwrap()
            .request(request)
            .await
            .unwrap();
        assert_eq!(response.status(), http::StatusCode::NO_CONTENT);
        assert!(server.await.unwrap().starts_with("POST /hook HTTP/1.1\r\n"));
    }
}
