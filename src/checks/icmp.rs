//! `icmp`: an echo request to the family's address (or each one, with `addresses: all`) through
//! an unprivileged ICMP datagram socket (`SOCK_DGRAM`, `IPPROTO_ICMP`/`IPPROTO_ICMPV6`), which
//! needs no capability: the kernel allows it to the groups in the sysctl
//! `net.ipv4.ping_group_range` (which governs ICMPv6 too) and refuses it with `EACCES` otherwise,
//! reported as `icmp_not_permitted`. The kernel picks the echo identifier (the socket's "port")
//! and fills the checksum, and hands back only the replies to this socket.

use std::net::{IpAddr, SocketAddr};

use futures_util::future::BoxFuture;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

use super::{Check, CheckContext};
use crate::model::failure::{Failure, FailureReason};
use crate::model::outcome::{CheckOutput, Observations};

/// The echo payload after the 8-byte ICMP header: 16 bytes, so a probe is 24 bytes of ICMP.
const PAYLOAD: &[u8; 16] = b"dualprobe-icmp!!";

/// The sysctl that decides who may open ICMP datagram sockets.
const SYSCTL: &str = "net.ipv4.ping_group_range";

/// The `icmp` check.
pub struct Icmp;

impl Check for Icmp {
    fn run<'a>(&'a self, cx: &'a mut CheckContext<'_>) -> BoxFuture<'a, CheckOutput> {
        Box::pin(async move {
            let addrs = match cx.connect_addresses().await {
                Ok(a) => a,
                Err(f) => return CheckOutput::fail(f),
            };
            let obs = Observations {
                addresses: addrs.clone(),
                ..Observations::default()
            };
            if addrs.is_empty() {
                return CheckOutput::fail(Failure::new(
                    FailureReason::Unreachable,
                    format!("no {} address to ping", cx.family),
                ))
                .with(obs);
            }
            for (seq, ip) in addrs.into_iter().enumerate() {
                // ICMP has no port; the attempt is named with port 0.
                cx.attempting(SocketAddr::new(ip, 0));
                let seq = u16::try_from(seq + 1).unwrap_or(u16::MAX);
                match echo(ip, seq).await {
                    Ok(()) => cx.debug(format!("echo reply from {ip}")),
                    Err(f) => {
                        cx.debug(format!("echo to {ip} failed: {f}"));
                        return CheckOutput::fail(f).with(obs);
                    }
                }
            }
            CheckOutput::pass(obs)
        })
    }
}

/// Sends one echo request to `ip` and waits (under the caller's deadline) for its reply.
pub async fn echo(ip: IpAddr, seq: u16) -> Result<(), Failure> {
    let socket = open(ip)?;
    let (request_type, reply_type) = match ip {
        IpAddr::V4(_) => (8u8, 0u8),
        IpAddr::V6(_) => (128u8, 129u8),
    };
    let mut packet = [0u8; 8 + PAYLOAD.len()];
    packet[0] = request_type;
    packet[6..8].copy_from_slice(&seq.to_be_bytes());
    packet[8..].copy_from_slice(PAYLOAD);
    let to = SocketAddr::new(ip, 0);
    socket
        .send_to(&packet, to)
        .await
        .map_err(|e| Failure::from_io(&format!("echo request to {ip}"), &e))?;
    let mut buf = [0u8; 1500];
    loop {
        let (n, from) = socket
            .recv_from(&mut buf)
            .await
            .map_err(|e| Failure::from_io(&format!("echo reply from {ip}"), &e))?;
        // The kernel strips the IP header and delivers only this socket's identifier; a reply
        // from elsewhere or to an earlier sequence is not ours.
        if n >= 8 && buf[0] == reply_type && buf[6..8] == seq.to_be_bytes() && from.ip() == ip {
            return Ok(());
        }
    }
}

/// An unprivileged ICMP socket of `ip`'s family, non-blocking, for tokio.
fn open(ip: IpAddr) -> Result<UdpSocket, Failure> {
    let (domain, protocol) = match ip {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    let socket = Socket::new(domain, Type::DGRAM, Some(protocol)).map_err(|e| {
        if e.kind() == std::io::ErrorKind::PermissionDenied {
            not_permitted(&e)
        } else {
            Failure::from_io("ICMP socket", &e)
        }
    })?;
    socket
        .set_nonblocking(true)
        .map_err(|e| Failure::from_io("ICMP socket", &e))?;
    UdpSocket::from_std(std::net::UdpSocket::from(socket))
        .map_err(|e| Failure::from_io("ICMP socket", &e))
}

/// `icmp_not_permitted`, naming the sysctl, its value and the agent's group.
fn not_permitted(err: &std::io::Error) -> Failure {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
        .map(|r| r.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_string());
    let gid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Gid:"))
                .and_then(|g| g.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_else(|| "unknown".to_string());
    Failure::new(
        FailureReason::IcmpNotPermitted,
        format!(
            "unprivileged ICMP socket refused ({err}): the agent's group {gid} is outside {SYSCTL} = \"{range}\"; set {SYSCTL} to include it (ECS: systemControls in the task definition)"
        ),
    )
}
