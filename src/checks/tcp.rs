//! `tcp`: connect to the family's address (or each one, with `addresses: all`).

use std::net::SocketAddr;

use futures_util::future::BoxFuture;
use socket2::SockRef;
use tokio::net::{TcpSocket, TcpStream};

use crate::model::failure::Failure;
use crate::model::outcome::{CheckOutput, Observations};
use super::{Check, CheckContext};

/// The `tcp` check.
pub(super) struct Tcp;

impl Check for Tcp {

    fn run<'a>(&'a self, cx: &'a mut CheckContext<'_>) -> BoxFuture<'a, CheckOutput> {
        Box::pin(async move {
            let addrs = match cx.connect_addresses().await {
                Ok(a) => a,
                Err(f) => return CheckOutput::fail(f),
            };
            let mut obs = Observations {
                addresses: addrs.clone(),
                ..Observations::default()
            };
            let mut kept = None;
            for ip in addrs {
                let sa = SocketAddr::new(ip, cx.target.port);
                match cx.connect(sa).await {
                    Ok(stream) => {
                        cx.debug(format!("connected to {sa}"));
                        obs.remote.get_or_insert(sa);
                        kept.get_or_insert(stream);
                    }
                    Err(f) => {
                        cx.debug(format!("connect to {sa} failed: {f}"));
                        return CheckOutput::fail(f).with(obs);
                    }
                }
            }
            match kept {
                Some(stream) => {
                    cx.set_connection(stream);
                    CheckOutput::pass(obs)
                }
                None => CheckOutput::fail(Failure::new(
                    crate::model::failure::FailureReason::Unreachable,
                    format!("no {} address to connect to", cx.family),
                )),
            }
        })
    }
}

/// Opens a TCP connection on a socket of exactly `addr`'s family (IPv6 sockets are v6-only, so
/// nothing falls back to IPv4). The caller's deadline bounds the connect. tokio creates the
/// socket non-blocking in the `socket` call itself, which saves two `fcntl`s per check.
pub async fn connect(addr: SocketAddr) -> Result<TcpStream, Failure> {
    connect_with_mss(addr, None).await
}

/// [`connect`] advertising `mss` (`TCP_MAXSEG`) when set: `pmtu`'s small-segment attempt.
pub async fn connect_with_mss(addr: SocketAddr, mss: Option<u32>) -> Result<TcpStream, Failure> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4(),
        SocketAddr::V6(_) => TcpSocket::new_v6(),
    }
    .map_err(|e| Failure::from_io("socket", &e))?;
    if addr.is_ipv6() {
        SockRef::from(&socket)
            .set_only_v6(true)
            .map_err(|e| Failure::from_io("socket", &e))?;
    }
    socket
        .set_nodelay(true)
        .map_err(|e| Failure::from_io("socket", &e))?;
    if let Some(mss) = mss {
        SockRef::from(&socket)
            .set_tcp_mss(mss)
            .map_err(|e| Failure::from_io("TCP_MAXSEG", &e))?;
    }
    socket
        .connect(addr)
        .await
        .map_err(|e| Failure::from_io(&format!("connect {addr}"), &e))
}
