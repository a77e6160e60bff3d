//! The socket error queue (`IP_RECVERR` / `IPV6_RECVERR`, `recvmsg(MSG_ERRQUEUE)`): how `pmtu`
//! and `trace` learn of ICMP errors (Packet Too Big, Fragmentation Needed, Time Exceeded,
//! Destination Unreachable) about their own datagrams without a raw socket.
//!
//! Everything here goes through `nix`'s safe wrappers (`setsockopt`, `recvmsg`,
//! `ControlMessageOwned::Ipv4RecvErr`/`Ipv6RecvErr`) and `socket2` (hop limits, `TCP_MAXSEG`),
//! so the crate stays `#![forbid(unsafe_code)]`. Neither exposes `IP_MTU_DISCOVER`: IPv4 UDP
//! sockets keep the kernel default (`IP_PMTUDISC_WANT`: DF is set on every datagram that fits the
//! path MTU the kernel knows), which is what a probe needs; IPv6 sockets set `IPV6_DONTFRAG`, so
//! a datagram larger than a cached path MTU fails locally (`EMSGSIZE` with the MTU on the queue)
//! instead of being fragmented.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Where a queued error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The local stack (e.g. `EMSGSIZE` for a datagram above the known path MTU).
    Local,
    /// An ICMP (IPv4) message.
    Icmp,
    /// An ICMPv6 message.
    Icmp6,
    /// Anything else the kernel reports.
    Other,
}

/// One entry of a socket's error queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueuedError {
    /// The errno the kernel mapped it to (`EMSGSIZE`, `EHOSTUNREACH`, `ECONNREFUSED`, ...).
    pub errno: i32,
    /// Local stack, ICMP or ICMPv6.
    pub origin: Origin,
    /// The ICMP type (0 for local errors).
    pub icmp_type: u8,
    /// The ICMP code.
    pub icmp_code: u8,
    /// `ee_info`: the MTU for Packet Too Big / Fragmentation Needed / local `EMSGSIZE`.
    pub info: u32,
    /// The node that sent the ICMP message (a router, or the target itself).
    pub offender: Option<IpAddr>,
}

impl QueuedError {
    /// The path MTU this error reports: ICMPv6 type 2, ICMP type 3 code 4, or a local
    /// `EMSGSIZE`, with a plausible MTU.
    pub fn mtu(&self) -> Option<u32> {
        let says_mtu = match self.origin {
            Origin::Icmp6 => self.icmp_type == 2,
            Origin::Icmp => self.icmp_type == 3 && self.icmp_code == 4,
            Origin::Local => self.errno == libc::EMSGSIZE,
            Origin::Other => false,
        };
        (says_mtu && (68..=65_535).contains(&self.info)).then_some(self.info)
    }

    /// Time Exceeded (ICMP type 11, ICMPv6 type 3): a router on the way, at its hop.
    pub fn time_exceeded(&self) -> bool {
        matches!(
            (self.origin, self.icmp_type),
            (Origin::Icmp, 11) | (Origin::Icmp6, 3)
        )
    }

    /// Port unreachable from the destination (ICMP 3/3, ICMPv6 1/4): the probe got there.
    pub fn port_unreachable(&self) -> bool {
        matches!(
            (self.origin, self.icmp_type, self.icmp_code),
            (Origin::Icmp, 3, 3) | (Origin::Icmp6, 1, 4)
        )
    }
}

/// Turns on error-queue reporting for a socket of `family_v6`'s family (and, for IPv6,
/// `IPV6_DONTFRAG`).
pub fn enable<F: AsFd>(fd: &F, v6: bool) -> io::Result<()> {
    if v6 {
        setsockopt(fd, sockopt::Ipv6RecvErr, &true)?;
        setsockopt(fd, sockopt::Ipv6DontFrag, &true)?;
    } else {
        setsockopt(fd, sockopt::Ipv4RecvErr, &true)?;
    }
    Ok(())
}

/// The IPv4 path MTU the kernel holds for a connected socket (`IP_MTU`); `None` for IPv6 or
/// when unknown.
pub fn kernel_path_mtu_v4<F: AsFd>(fd: &F) -> Option<u32> {
    nix::sys::socket::getsockopt(fd, sockopt::IpMtu)
        .ok()
        .and_then(|m| u32::try_from(m).ok())
}

/// A UDP socket connected to `to` with error-queue reporting on. The caller has passed `to`
/// through the address guard.
pub async fn udp_socket(to: SocketAddr) -> io::Result<UdpSocket> {
    let bind: SocketAddr = match to {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(bind).await?;
    enable(&socket, to.is_ipv6())?;
    socket.connect(to).await?;
    Ok(socket)
}

/// Sets the hop limit (IPv4 TTL, IPv6 unicast hops) of a socket.
pub fn set_hop_limit<F: AsFd>(fd: &F, v6: bool, hops: u32) -> io::Result<()> {
    let s = socket2::SockRef::from(fd);
    if v6 {
        s.set_unicast_hops_v6(hops)
    } else {
        s.set_ttl_v4(hops)
    }
}

/// Reads one entry of `fd`'s error queue without blocking: `Ok(None)` when it is empty.
pub fn read_now<F: AsFd>(fd: &F) -> io::Result<Option<QueuedError>> {
    let mut buf = [0u8; 64];
    let mut iov = [io::IoSliceMut::new(&mut buf)];
    let mut cmsg = nix::cmsg_space!(libc::sock_extended_err, libc::sockaddr_in6);
    let msg = match recvmsg::<SockaddrStorage>(
        fd.as_fd().as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(m) => m,
        Err(nix::errno::Errno::EAGAIN) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Ok(cmsgs) = msg.cmsgs() else {
        return Ok(None);
    };
    for c in cmsgs {
        let (ee, offender) = match c {
            ControlMessageOwned::Ipv4RecvErr(ee, addr) => (
                ee,
                addr.map(|a| IpAddr::V4(Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr)))),
            ),
            ControlMessageOwned::Ipv6RecvErr(ee, addr) => (
                ee,
                addr.map(|a| IpAddr::V6(Ipv6Addr::from(a.sin6_addr.s6_addr))),
            ),
            _ => continue,
        };
        return Ok(Some(QueuedError {
            errno: i32::try_from(ee.ee_errno).unwrap_or(0),
            origin: match ee.ee_origin {
                libc::SO_EE_ORIGIN_LOCAL => Origin::Local,
                libc::SO_EE_ORIGIN_ICMP => Origin::Icmp,
                libc::SO_EE_ORIGIN_ICMP6 => Origin::Icmp6,
                _ => Origin::Other,
            },
            icmp_type: ee.ee_type,
            icmp_code: ee.ee_code,
            info: ee.ee_info,
            // An unspecified offender (local errors) is no offender.
            offender: offender.filter(|a| !a.is_unspecified()),
        }));
    }
    Ok(None)
}

/// Waits until `socket`'s error queue has an entry and reads it. The caller bounds the wait.
pub async fn read(socket: &UdpSocket) -> io::Result<QueuedError> {
    loop {
        let got = socket
            .async_io(Interest::ERROR, || match read_now(socket) {
                Ok(Some(e)) => Ok(Some(e)),
                Ok(None) => Err(io::ErrorKind::WouldBlock.into()),
                Err(e) => Err(e),
            })
            .await?;
        if let Some(e) = got {
            return Ok(e);
        }
    }
}

/// Sends one `len`-byte datagram on a connected socket. A local `EMSGSIZE` (the datagram is
/// above the path MTU the kernel already knows) is not an error: the queue then holds the MTU.
pub async fn send_sized(socket: &UdpSocket, len: usize) -> io::Result<()> {
    let payload = vec![0u8; len];
    match socket.send(&payload).await {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn port_unreachable_on_loopback_is_queued_with_the_offender() {
        let port = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap().port()
        };
        let to: SocketAddr = (Ipv4Addr::LOCALHOST, port).into();
        let socket = udp_socket(to).await.unwrap();
        send_sized(&socket, 32).await.unwrap();
        let e = tokio::time::timeout(std::time::Duration::from_secs(2), read(&socket))
            .await
            .expect("ICMP port unreachable within 2s")
            .unwrap();
        assert!(e.port_unreachable(), "{e:?}");
        assert_eq!(e.offender, Some(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        // Loopback: 65536, reported capped at 65535.
        assert!(kernel_path_mtu_v4(&socket).is_some_and(|m| m >= 65_535));
    }
}
