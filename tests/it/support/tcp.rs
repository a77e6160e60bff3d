//! Misbehaving TCP peers for `timeout` and `refused` on loopback, without netem or firewall
//! rules: a listener that never accepts, and a port with nothing on it.
//!
//! Why a full backlog gives a real timeout: Linux completes handshakes for a listener's accept
//! queue without the application calling `accept`, so a merely idle listener still "connects".
//! With `listen(0)` the queue holds one connection; once it is there, the kernel drops further
//! SYNs outright (a listen overflow, no RST), and the client's connect waits until its deadline.

use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use dualprobe::model::family::Family;
use socket2::{Domain, Protocol, Socket, Type};

use super::{loopback, with_free_port};

/// Listeners on 127.0.0.1 and [::1] (one port) that never accept, with a one-connection backlog.
pub struct NeverAccepting {
    port: u16,
    // Held, never read: dropping them would close the listeners and free the backlog.
    _listeners: Vec<Socket>,
    fillers: Vec<TcpStream>,
}

impl NeverAccepting {
    /// Backlog already full: every connect to it times out.
    pub fn full() -> NeverAccepting {
        let mut l = NeverAccepting::one_slot();
        for family in Family::ALL {
            let addr = SocketAddr::new(loopback(family), l.port);
            let filler = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
                .expect("the first connect fills the backlog");
            l.fillers.push(filler);
            // Prove the premise instead of trusting it: the next SYN must go unanswered.
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                other => panic!("connect to a full backlog on {addr} did not time out: {other:?}"),
            }
        }
        l
    }

    /// Backlog empty: exactly one connect per family completes, every later one times out.
    pub fn one_slot() -> NeverAccepting {
        let (port, listeners) = with_free_port(|port| {
            let mut listeners = Vec::new();
            for family in Family::ALL {
                let addr = SocketAddr::new(loopback(family), port);
                let socket =
                    Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
                socket.bind(&addr.into())?;
                socket.listen(0)?;
                listeners.push(socket);
            }
            Ok((port, listeners))
        });
        NeverAccepting {
            port,
            _listeners: listeners,
            fillers: Vec::new(),
        }
    }

    /// The port, the same on both families.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// A port with no listener on either loopback address: connects are refused (RST). Another
/// process could take it later; on a test machine's loopback that is vanishingly rare.
pub fn closed_port() -> u16 {
    with_free_port(|port| {
        // Bind both families to be sure the port was free on both, then release them.
        let v4 = std::net::TcpListener::bind(SocketAddr::new(loopback(Family::Ipv4), port))?;
        let v6 = std::net::TcpListener::bind(SocketAddr::new(loopback(Family::Ipv6), port))?;
        drop((v4, v6));
        Ok(port)
    })
}
