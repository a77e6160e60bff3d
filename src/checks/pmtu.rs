//! `pmtu`: the path MTU to the family's first address, and black-hole detection.
//!
//! Two halves, both through the address guard:
//!
//! 1. UDP discovery, for the direction towards the target: a connected UDP socket with the
//!    error queue on (`src/net/errqueue.rs`) sends one datagram as large as the route MTU
//!    (don't-fragment: IPv4's default `IP_PMTUDISC_WANT`, IPv6's `IPV6_DONTFRAG`); a router
//!    that cannot forward it answers Fragmentation Needed / Packet Too Big with its MTU, which
//!    the kernel queues, and the next datagram is sized to that (at most four rounds). Targets
//!    need not answer UDP: only routers before a black hole answer.
//! 2. The TCP comparison, for the direction back: a transfer whose answer spans several
//!    full-size segments from the server, first with the default MSS, then, only when that
//!    one stalls, with `TCP_MAXSEG` advertised for a 1280-byte path. The first stalling and the
//!    second completing is `pmtu_blackhole` (Packet Too Big filtered somewhere); both stalling
//!    is the path being down (`timeout`). The transfer is a TLS handshake (the certificate
//!    chain) for a TLS target, and a plain `GET` of `pmtu.large_path` for a plain-HTTP one. A
//!    handshake that fails for any other reason still received the server's flight, so it
//!    counts as completed (certificates are the `tls` check's job); a GET that completes with
//!    too few bytes to span a full-size segment cannot tell anything and fails `other`,
//!    naming `pmtu.large_path`.
//!
//! The `pmtu:` section of targets and modules is read here: `transfer` (`auto`, `tls`, `http`,
//! `none`) and `large_path`. `auto` is `http` when `large_path` is set; else, for a target whose
//! chain has `tls` or `http` or whose port is 443 or 80, the target's scheme (`tls` for https);
//! else `none` (UDP discovery only).

use std::any::Any;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use rustls::pki_types::ServerName;
use serde::Deserialize;
use serde_saphyr::Spanned;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

use super::{Check, CheckContext, Configure, http, line_of};
use crate::model::check_kind::CheckKind;
use crate::model::failure::{Failure, FailureReason};
use crate::model::family::Family;
use crate::model::outcome::{CheckOutput, Measurement, Observations};
use crate::model::target::Target;
use crate::net::errqueue;

/// The path MTU found by UDP discovery.
static PATH_MTU: Measurement = Measurement {
    metric: "dualprobe_path_mtu_bytes",
    help: "Path MTU towards the target's first address: the smallest MTU a Packet Too Big / Fragmentation Needed reported, else the route MTU",
    blackbox: None,
    probe_help: "Path MTU towards the target's first address",
    key: "path_mtu",
    describe: Some(describe_mtu),
};

static MEASURED: &[&Measurement] = &[&PATH_MTU];

fn describe_mtu(mtu: i64) -> String {
    format!("path MTU {mtu}")
}

/// The smallest MTU every IPv6 link has, and the one the small TCP attempt is sized for.
pub const MIN_PATH_MTU: u32 = 1280;

/// IP + UDP header bytes of one datagram of `family`.
fn udp_overhead(family: Family) -> u32 {
    match family {
        Family::Ipv4 => 20 + 8,
        Family::Ipv6 => 40 + 8,
    }
}

/// The MSS a 1280-byte path carries: 1280 less the IP and TCP headers.
pub fn small_mss(family: Family) -> u32 {
    match family {
        Family::Ipv4 => MIN_PATH_MTU - 40,
        Family::Ipv6 => MIN_PATH_MTU - 60,
    }
}

/// IP + TCP header bytes of one segment of `family`.
fn tcp_overhead(family: Family) -> u32 {
    match family {
        Family::Ipv4 => 40,
        Family::Ipv6 => 60,
    }
}

/// The large transfer the TCP comparison makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// A TLS handshake: the server's certificate flight.
    Tls,
    /// A plain-HTTP `GET` of `pmtu.large_path`.
    Http,
    /// None: UDP discovery only.
    None,
}

impl Transfer {
    fn as_str(self) -> &'static str {
        match self {
            Transfer::Tls => "tls",
            Transfer::Http => "http",
            Transfer::None => "none",
        }
    }
}

/// The `pmtu:` section of a target or module, as serde reads it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    transfer: Option<Spanned<String>>,
    large_path: Option<Spanned<String>>,
}

/// What `pmtu` reads back from a target (the defaults without a section).
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The transfer asked for; `None` is `auto`.
    pub transfer: Option<Transfer>,
    /// The path the plain-HTTP transfer GETs; `None`: the `http:` section's path (default `/`).
    pub large_path: Option<String>,
}

/// `target`'s `pmtu:` settings.
pub fn settings(target: &Target) -> &Settings {
    static DEFAULT: LazyLock<Settings> = LazyLock::new(Settings::default);
    target
        .settings
        .get::<Settings>(CheckKind::Pmtu)
        .unwrap_or(&DEFAULT)
}

/// The transfer `target`'s TCP comparison makes (`auto` resolved: see the module comment).
pub fn transfer(target: &Target) -> Transfer {
    let s = settings(target);
    if let Some(t) = s.transfer {
        return t;
    }
    if s.large_path.is_some() {
        return Transfer::Http;
    }
    let speaks_http = matches!(target.port, 80 | 443)
        || target
            .checks
            .iter()
            .any(|k| matches!(k, CheckKind::Tls | CheckKind::Http));
    match (speaks_http, http::scheme(target)) {
        (false, _) => Transfer::None,
        (true, http::Scheme::Https) => Transfer::Tls,
        (true, http::Scheme::Http) => Transfer::Http,
    }
}

/// The path the plain-HTTP transfer GETs.
fn large_path(target: &Target) -> String {
    settings(target)
        .large_path
        .clone()
        .unwrap_or_else(|| http::settings(target).path.clone())
}

/// A path that can go on a request line as it is: `/` first, then visible ASCII only.
fn is_request_path(p: &str) -> bool {
    p.starts_with('/') && p.bytes().all(|b| b.is_ascii_graphic())
}

impl Configure for Pmtu {
    type Raw = Raw;

    fn configure(
        raw: &Raw,
        field: &str,
        problem: &mut dyn FnMut(Option<u64>, String, String),
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let mut ok = true;
        let mut s = Settings::default();
        if let Some(t) = &raw.transfer {
            s.transfer = match t.value.trim() {
                "auto" => None,
                "tls" => Some(Transfer::Tls),
                "http" => Some(Transfer::Http),
                "none" => Some(Transfer::None),
                _ => {
                    ok = false;
                    problem(
                        line_of(t),
                        format!("{field}.transfer"),
                        format!("`{}` is not auto, tls, http or none", t.value),
                    );
                    None
                }
            };
        }
        if let Some(p) = &raw.large_path {
            if !is_request_path(&p.value) {
                ok = false;
                problem(
                    line_of(p),
                    format!("{field}.large_path"),
                    format!(
                        "`{}` is not a request path: it starts with / and has no spaces or control characters (percent-encode them)",
                        p.value
                    ),
                );
            } else if let Some(t @ (Transfer::Tls | Transfer::None)) = s.transfer {
                ok = false;
                problem(
                    line_of(p),
                    format!("{field}.large_path"),
                    format!(
                        "only applies to `transfer: http` (or auto), not `{}`",
                        t.as_str()
                    ),
                );
            }
            s.large_path = Some(p.value.clone());
        }
        ok.then(|| Arc::new(s) as Arc<dyn Any + Send + Sync>)
    }

    /// A target whose section asks for the plain-HTTP transfer defaults to port 80.
    fn default_port(raw: &Raw) -> Option<u16> {
        let transfer = raw.transfer.as_ref().map(|t| t.value.trim());
        match transfer {
            Some("http") => Some(80),
            None | Some("auto") if raw.large_path.is_some() => Some(80),
            _ => None,
        }
    }
}

/// The `pmtu` check.
pub struct Pmtu;

impl Check for Pmtu {
    fn measurements(&self) -> &'static [&'static Measurement] {
        MEASURED
    }

    /// A plain-HTTP transfer cannot go to a TLS server.
    fn validate(&self, target: &Target) -> Result<(), String> {
        if transfer(target) == Transfer::Http && http::scheme(target) == http::Scheme::Https {
            let asked = if settings(target).transfer.is_some() {
                "`pmtu.transfer: http`"
            } else {
                "`pmtu.large_path`"
            };
            return Err(format!(
                "{asked} is a plain-HTTP GET, but this target speaks TLS (`tls` in its checks, port 443 or `http.scheme: https`): set `pmtu.transfer: tls`, or `http.scheme: http` for a plain-HTTP server"
            ));
        }
        Ok(())
    }

    fn run<'a>(&'a self, cx: &'a mut CheckContext<'_>) -> BoxFuture<'a, CheckOutput> {
        Box::pin(async move {
            let addrs = match cx.connect_addresses().await {
                Ok(a) => a,
                Err(f) => return CheckOutput::fail(f),
            };
            let Some(ip) = addrs.first().copied() else {
                return CheckOutput::fail(Failure::new(
                    FailureReason::Unreachable,
                    format!("no {} address", cx.family),
                ));
            };
            let to = SocketAddr::new(ip, cx.target.port);
            if let Err(f) = cx.env.check_socket(to) {
                return CheckOutput::fail(f);
            }
            cx.attempting(to);
            let mut obs = Observations {
                remote: Some(to),
                ..Observations::default()
            };
            let udp_budget = cx.timeout / 4;
            let mtu = match discover(cx, to, udp_budget).await {
                Ok(m) => m,
                Err(f) => return CheckOutput::fail(f).with(obs),
            };
            let transfer = transfer(cx.target);
            if transfer == Transfer::None {
                cx.debug(
                    "no tls/http in the chain, port not 443 or 80, no pmtu.large_path: UDP discovery only",
                );
                return CheckOutput::pass(obs.measure(&PATH_MTU, i64::from(mtu)));
            }
            let what = match transfer {
                Transfer::Http => format!("GET {}", large_path(cx.target)),
                _ => "a TLS handshake".to_string(),
            };
            let tcp_budget = cx.timeout.saturating_sub(udp_budget) * 9 / 20;
            match attempt(cx, transfer, to, None, tcp_budget).await {
                Ok(bytes) => {
                    // Fewer bytes than one full-size segment of a 1500-byte link: this answer
                    // would have crossed the black hole too, so a pass would mean nothing.
                    let full = mtu.min(1500) - tcp_overhead(cx.family);
                    if let Some(n) = bytes
                        && n <= full as usize
                    {
                        return CheckOutput::fail(Failure::new(
                            FailureReason::Other,
                            format!(
                                "{what} from {to} answered {n} bytes, no more than one {full}-byte segment: \
                                 too few to tell a black hole; point pmtu.large_path at a larger response (e.g. 100 kB)"
                            ),
                        ))
                        .with(obs);
                    }
                    return CheckOutput::pass(obs.measure(&PATH_MTU, i64::from(mtu)));
                }
                Err(f) if f.reason != FailureReason::Timeout => {
                    return CheckOutput::fail(f).with(obs);
                }
                Err(_) => {}
            }
            let mss = small_mss(cx.family);
            cx.debug(format!(
                "{what} with the default MSS stalled; retrying with TCP_MAXSEG {mss}"
            ));
            match attempt(cx, transfer, to, Some(mss), tcp_budget).await {
                Ok(_) => {
                    obs.measured.clear();
                    CheckOutput::fail(Failure::new(
                        FailureReason::PmtuBlackhole,
                        format!(
                            "{what} from {to} stalls with full-size segments but completes with MSS {mss}: \
                             the path MTU is below {mtu} and Packet Too Big / Fragmentation Needed is filtered on the way back"
                        ),
                    ))
                    .with(obs)
                }
                Err(f) if f.reason == FailureReason::Timeout => CheckOutput::fail(Failure::new(
                    FailureReason::Timeout,
                    format!("{what} from {to} stalls with the default MSS and with MSS {mss}: the path is down"),
                ))
                .with(obs),
                Err(f) => CheckOutput::fail(f).with(obs),
            }
        })
    }
}

/// One transfer with `to` advertising `mss` when set, within `budget`: `Ok` with the bytes a
/// GET received (`None` for a handshake), `timeout` when it stalled.
async fn attempt(
    cx: &mut CheckContext<'_>,
    transfer: Transfer,
    to: SocketAddr,
    mss: Option<u32>,
    budget: Duration,
) -> Result<Option<usize>, Failure> {
    match transfer {
        Transfer::Http => get(cx, to, mss, budget).await.map(Some),
        _ => handshake(cx, to, mss, budget).await.map(|()| None),
    }
}

/// Enough of a GET's answer to have crossed the path in many full-size segments.
const READ_CAP: usize = 64 * 1024;

/// One plain-HTTP `GET` of the target's large path from `to`, advertising `mss` when set,
/// within `budget`: the bytes received when the answer ended (EOF, its `Content-Length`, or
/// [`READ_CAP`]); a stall is `timeout`, naming how many bytes had come.
async fn get(
    cx: &mut CheckContext<'_>,
    to: SocketAddr,
    mss: Option<u32>,
    budget: Duration,
) -> Result<usize, Failure> {
    let path = large_path(cx.target);
    if !is_request_path(&path) {
        return Err(Failure::new(
            FailureReason::Other,
            format!("`{path}` is not a request path"),
        ));
    }
    let host = cx.target.host.url_host();
    let host = match cx.target.port {
        80 => host,
        port => format!("{host}:{port}"),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: dualprobe/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        env!("CARGO_PKG_VERSION")
    );
    let mut got = 0usize;
    let mut head = Vec::new();
    let fetch = async {
        let mut stream = super::tcp::connect_with_mss(to, mss).await?;
        let io = |e: std::io::Error| Failure::from_io(&format!("GET {path} from {to}"), &e);
        stream.write_all(request.as_bytes()).await.map_err(io)?;
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = stream.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            got += n;
            if head.len() < 4096 {
                head.extend_from_slice(&buf[..n.min(4096 - head.len())]);
            }
            if got >= READ_CAP || response_length(&head).is_some_and(|len| got >= len) {
                break;
            }
        }
        Ok::<_, Failure>(())
    };
    let result = tokio::time::timeout(budget, fetch).await;
    let status = String::from_utf8_lossy(head.split(|b| *b == b'\r').next().unwrap_or_default())
        .into_owned();
    match result {
        Err(_) => Err(Failure::new(
            FailureReason::Timeout,
            format!(
                "GET {path} from {to} stalled after {got} bytes for {}",
                humantime::format_duration(budget)
            ),
        )),
        Ok(Ok(())) => {
            cx.debug(format!(
                "GET {path} from {to} (MSS {mss:?}): {got} bytes, `{status}`"
            ));
            Ok(got)
        }
        Ok(Err(f)) => Err(cx.nat64_failure(to, f)),
    }
}

/// Header and body bytes of a response whose head (`HTTP/1.1 ...` up to the blank line) is in
/// `head` and that has a `Content-Length`; `None` until the head is complete or without one.
fn response_length(head: &[u8]) -> Option<usize> {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let text = std::str::from_utf8(&head[..end]).ok()?;
    let body: usize = text.lines().find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse().ok())?
    })?;
    Some(end + body)
}

/// UDP path MTU discovery towards `to` (guarded by the caller) within `budget`.
async fn discover(
    cx: &mut CheckContext<'_>,
    to: SocketAddr,
    budget: Duration,
) -> Result<u32, Failure> {
    let socket = errqueue::udp_socket(to)
        .await
        .map_err(|e| Failure::from_io(&format!("udp socket to {to}"), &e))?;
    let overhead = udp_overhead(cx.family);
    // The route MTU: IPv4 asks the kernel (`IP_MTU`); IPv6 sends an oversized datagram that
    // never leaves (DONTFRAG: a local EMSGSIZE whose queued entry carries the route MTU).
    let mut mtu = match cx.family {
        Family::Ipv4 => errqueue::kernel_path_mtu_v4(&socket).unwrap_or(1500),
        Family::Ipv6 => {
            send(&socket, 65_535 - 40 - 8, to).await?;
            match errqueue::read_now(&socket) {
                Ok(Some(e)) => e.mtu().unwrap_or(1500),
                // It went out whole: the route carries the largest IPv6 packet (loopback).
                _ => 65_535,
            }
        }
    };
    let deadline = tokio::time::Instant::now() + budget;
    for _ in 0..4 {
        let size = mtu.saturating_sub(overhead) as usize;
        send(&socket, size, to).await?;
        cx.debug(format!("sent a {mtu}-byte don't-fragment datagram to {to}"));
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Ok(got) = tokio::time::timeout(wait, errqueue::read(&socket)).await else {
            break;
        };
        let e = got.map_err(|e| Failure::from_io(&format!("error queue of {to}"), &e))?;
        cx.debug(format!("error queue: {e:?}"));
        match e.mtu() {
            Some(m) if m < mtu => mtu = m,
            _ => break,
        }
    }
    if cx.family == Family::Ipv4
        && let Some(m) = errqueue::kernel_path_mtu_v4(&socket)
    {
        mtu = mtu.min(m);
    }
    Ok(mtu)
}

async fn send(socket: &tokio::net::UdpSocket, size: usize, to: SocketAddr) -> Result<(), Failure> {
    errqueue::send_sized(socket, size)
        .await
        .map_err(|e| Failure::from_io(&format!("send to {to}"), &e))
}

/// One TLS handshake with `to` within `budget`, advertising `mss` when set. `Ok` when the
/// server's flight arrived (the handshake completed or failed on what it received); a stall is
/// `timeout`.
async fn handshake(
    cx: &mut CheckContext<'_>,
    to: SocketAddr,
    mss: Option<u32>,
    budget: Duration,
) -> Result<(), Failure> {
    let sni = cx.target.tls_server_name();
    let server_name = ServerName::try_from(sni.clone()).map_err(|e| {
        Failure::new(
            FailureReason::TlsError,
            format!("`{sni}` is not a valid TLS server name: {e}"),
        )
    })?;
    let connector = TlsConnector::from(cx.target.tls.client_config.clone());
    let attempt = async {
        let stream = super::tcp::connect_with_mss(to, mss).await?;
        connector
            .connect(server_name, stream)
            .await
            .map_err(|e| super::tls::classify(&e))
    };
    match tokio::time::timeout(budget, attempt).await {
        Err(_) => Err(Failure::new(
            FailureReason::Timeout,
            format!(
                "TLS handshake with {to} stalled for {}",
                humantime::format_duration(budget)
            ),
        )),
        Ok(Ok(_)) => {
            cx.debug(format!("TLS handshake with {to} (MSS {mss:?}) completed"));
            Ok(())
        }
        Ok(Err(f))
            if matches!(
                f.reason,
                FailureReason::CertInvalid | FailureReason::TlsError
            ) =>
        {
            cx.debug(format!(
                "TLS handshake with {to} (MSS {mss:?}) got the server's flight: {f}"
            ));
            Ok(())
        }
        Ok(Err(f)) => Err(cx.nat64_failure(to, f)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_response_length_needs_the_whole_head_and_a_content_length() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\ncontent-length: 10\r\n\r\n0123";
        assert_eq!(response_length(head), Some(head.len() - 4 + 10));
        assert_eq!(response_length(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n"), None);
        assert_eq!(response_length(b"HTTP/1.1 200 OK\r\n\r\n"), None);
        assert!(is_request_path("/big?x=1"));
        assert!(!is_request_path("big"));
        assert!(!is_request_path("/a b"));
        assert!(!is_request_path("/a\r\nX: y"));
    }

    #[test]
    fn the_small_mss_fits_a_1280_byte_path() {
        assert_eq!(small_mss(Family::Ipv6) + 60, MIN_PATH_MTU);
        assert_eq!(small_mss(Family::Ipv4) + 40, MIN_PATH_MTU);
        assert_eq!(udp_overhead(Family::Ipv6), 48);
    }
}
