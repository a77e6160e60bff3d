//! `tcp`: connect to the family's address (or each one, with `addresses: all`).

use std::net::SocketAddr;

use futures_util::future::BoxFuture;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};

use super::{CheckOutput, Failure, Observations, ProbeContext, Prober};

/// The `tcp` prober.
pub struct Tcp;

impl Prober for Tcp {
    fn name(&self) -> &'static str {
        "tcp"
    }

    fn probe<'a>(&'a self, cx: &'a mut ProbeContext<'_>) -> BoxFuture<'a, CheckOutput> {
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
                match connect(sa).await {
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
                    super::FailureReason::Unreachable,
                    format!("no {} address to connect to", cx.family),
                )),
            }
        })
    }
}

/// Opens a TCP connection on a socket of exactly `addr`'s family (IPv6 sockets are v6-only, so
/// nothing falls back to IPv4). The caller's deadline bounds the connect.
pub async fn connect(addr: SocketAddr) -> Result<TcpStream, Failure> {
    let domain = Domain::for_address(addr);
    let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))
        .map_err(|e| Failure::from_io("socket", &e))?;
    if addr.is_ipv6() {
        socket
            .set_only_v6(true)
            .map_err(|e| Failure::from_io("socket", &e))?;
    }
    socket
        .set_nonblocking(true)
        .map_err(|e| Failure::from_io("socket", &e))?;
    socket
        .set_tcp_nodelay(true)
        .map_err(|e| Failure::from_io("socket", &e))?;
    let socket = TcpSocket::from_std_stream(socket.into());
    socket
        .connect(addr)
        .await
        .map_err(|e| Failure::from_io(&format!("connect {addr}"), &e))
}
