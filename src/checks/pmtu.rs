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
//! 2. The TCP comparison, for the direction back (targets whose chain has `tls` or `http`, or
//!    port 443): the same TLS handshake — whose certificate chain spans several full-size
//!    segments from the server — first with the default MSS, then, only when that one stalls,
//!    with `TCP_MAXSEG` advertised for a 1280-byte path. The first stalling and the second
//!    completing is `pmtu_blackhole` (Packet Too Big filtered somewhere); both stalling is the
//!    path being down (`timeout`). A handshake that fails for any other reason still received
//!    the server's flight, so it counts as completed (certificates are the `tls` check's job).

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::future::BoxFuture;
use rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

use super::{Check, CheckContext};
use crate::model::check_kind::CheckKind;
use crate::model::failure::{Failure, FailureReason};
use crate::model::family::Family;
use crate::model::outcome::{CheckOutput, Measurement, Observations};
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

/// The `pmtu` check.
pub(super) struct Pmtu;

impl Check for Pmtu {
    fn measurements(&self) -> &'static [&'static Measurement] {
        MEASURED
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
            if !uses_tls(cx) {
                cx.debug("no tls/http in the chain and not port 443: UDP discovery only");
                return CheckOutput::pass(obs.measure(&PATH_MTU, i64::from(mtu)));
            }
            let tcp_budget = cx.timeout.saturating_sub(udp_budget) * 9 / 20;
            match handshake(cx, to, None, tcp_budget).await {
                Ok(()) => return CheckOutput::pass(obs.measure(&PATH_MTU, i64::from(mtu))),
                Err(f) if f.reason != FailureReason::Timeout => {
                    return CheckOutput::fail(f).with(obs);
                }
                Err(_) => {}
            }
            let mss = small_mss(cx.family);
            cx.debug(format!(
                "the handshake with the default MSS stalled; retrying with TCP_MAXSEG {mss}"
            ));
            match handshake(cx, to, Some(mss), tcp_budget).await {
                Ok(()) => {
                    obs.measured.clear();
                    CheckOutput::fail(Failure::new(
                        FailureReason::PmtuBlackhole,
                        format!(
                            "a TLS handshake with {to} stalls with full-size segments but completes with MSS {mss}: \
                             the path MTU is below {mtu} and Packet Too Big / Fragmentation Needed is filtered on the way back"
                        ),
                    ))
                    .with(obs)
                }
                Err(f) if f.reason == FailureReason::Timeout => CheckOutput::fail(Failure::new(
                    FailureReason::Timeout,
                    format!("TLS handshakes with {to} stall with the default MSS and with MSS {mss}: the path is down"),
                ))
                .with(obs),
                Err(f) => CheckOutput::fail(f).with(obs),
            }
        })
    }
}

/// Whether the target's server is expected to speak TLS on its port.
fn uses_tls(cx: &CheckContext<'_>) -> bool {
    cx.target.port == 443
        || cx
            .target
            .checks
            .iter()
            .any(|k| matches!(k, CheckKind::Tls | CheckKind::Http))
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
    fn the_small_mss_fits_a_1280_byte_path() {
        assert_eq!(small_mss(Family::Ipv6) + 60, MIN_PATH_MTU);
        assert_eq!(small_mss(Family::Ipv4) + 40, MIN_PATH_MTU);
        assert_eq!(udp_overhead(Family::Ipv6), 48);
    }
}
