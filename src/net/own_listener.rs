//! The agent's own listen socket, so that no check (scheduled, ad hoc, or a redirect hop of
//! either) is sent back into the agent: a redirect to our own `/probe` once fanned one request out
//! into 24 internal probes in 21 ms. Two layers, because one cannot see everything:
//! - by address: the listen port on a loopback, unspecified or local interface address is refused
//!   before anything connects to it (what a literal target or redirect hop names);
//! - by origin: every HTTP request a check sends carries this process's random id in
//!   [`ORIGIN_HEADER`], and `/probe` refuses a request that carries it (a host name that resolves
//!   to us, a NAT or load-balancer path back to the task: routes no address test can see).

use std::net::{IpAddr, SocketAddr};

use crate::model::failure::{Failure, FailureReason};

/// The header every HTTP check request carries: the sending agent's origin id.
pub const ORIGIN_HEADER: &str = "x-dualprobe-origin";

/// Where this agent listens, and the id its own checks' requests carry.
#[derive(Debug)]
pub struct OwnListener {
    /// The listen port: only connections to it can reach the agent.
    port: u16,
    /// The listen address when it is one address; `None` for an unspecified one.
    bound: Option<IpAddr>,
    /// `[::]` also accepts IPv4 (the socket is not v6-only); `0.0.0.0` only IPv4.
    accepts_ipv4: bool,
    /// `0.0.0.0` does not accept IPv6.
    accepts_ipv6: bool,
    /// The host's interface addresses at start: an unspecified listen address is reachable on
    /// each (the task ENI's address in Fargate, which does not change while the task runs).
    local: Vec<IpAddr>,
    /// Random per process, so that another agent's checks are not refused.
    origin: String,
}

impl OwnListener {
    /// The listener at `listen` (the bound socket's address), reading the interface addresses.
    pub fn new(listen: SocketAddr) -> OwnListener {
        let local = if_addrs::get_if_addrs()
            .map(|ifs| ifs.into_iter().map(|i| i.ip().to_canonical()).collect())
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "cannot list interface addresses; only loopback and the listen address are known as this agent's own");
                Vec::new()
            });
        OwnListener::with_local_addresses(listen, local)
    }

    /// As [`OwnListener::new`] with the interface addresses given (tests).
    pub fn with_local_addresses(listen: SocketAddr, local: Vec<IpAddr>) -> OwnListener {
        let ip = listen.ip().to_canonical();
        let unspecified = ip.is_unspecified();
        OwnListener {
            port: listen.port(),
            bound: (!unspecified).then_some(ip),
            accepts_ipv4: ip.is_ipv4() || (unspecified && ip.is_ipv6()),
            accepts_ipv6: ip.is_ipv6(),
            local,
            origin: format!("{:016x}", fastrand::u64(..)),
        }
    }

    /// The value of [`ORIGIN_HEADER`] on this agent's own check requests.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// True when a connection to `addr` would reach this agent's listener.
    pub fn is_own(&self, addr: SocketAddr) -> bool {
        if addr.port() != self.port {
            return false;
        }
        let ip = addr.ip().to_canonical();
        match self.bound {
            Some(bound) => ip == bound || (bound.is_loopback() && ip.is_unspecified()),
            None => {
                let family_ok = if ip.is_ipv4() {
                    self.accepts_ipv4
                } else {
                    self.accepts_ipv6
                };
                family_ok && (ip.is_loopback() || ip.is_unspecified() || self.local.contains(&ip))
            }
        }
    }

    /// A `forbidden` failure when `addr` is this agent's own listener.
    pub fn check(&self, addr: SocketAddr) -> Result<(), Failure> {
        if self.is_own(addr) {
            return Err(Failure::new(
                FailureReason::Forbidden,
                format!("{addr} is this agent's own listener (a check must not loop back into it)"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn which_addresses_are_our_own() {
        let eni: IpAddr = "192.0.2.10".parse().unwrap();
        let eni6: IpAddr = "2001:db8::10".parse().unwrap();
        let any = OwnListener::with_local_addresses(sa("[::]:9469"), vec![eni, eni6]);
        for own in [
            "127.0.0.1:9469",
            "127.9.9.9:9469",
            "[::1]:9469",
            "0.0.0.0:9469",
            "[::]:9469",
            "192.0.2.10:9469",
            "[2001:db8::10]:9469",
            "[::ffff:127.0.0.1]:9469",
            "[::ffff:192.0.2.10]:9469",
        ] {
            assert!(any.is_own(sa(own)), "{own}");
            assert_eq!(
                any.check(sa(own)).unwrap_err().reason,
                FailureReason::Forbidden
            );
        }
        for other in ["127.0.0.1:9470", "192.0.2.11:9469", "[2001:db8::11]:9469"] {
            assert!(!any.is_own(sa(other)), "{other}");
            assert!(any.check(sa(other)).is_ok());
        }
        // 0.0.0.0 takes no IPv6; one bound address is only itself.
        let v4 = OwnListener::with_local_addresses(sa("0.0.0.0:9469"), vec![eni6]);
        assert!(v4.is_own(sa("127.0.0.1:9469")));
        assert!(!v4.is_own(sa("[::1]:9469")));
        assert!(!v4.is_own(sa("[2001:db8::10]:9469")));
        let lo = OwnListener::with_local_addresses(sa("127.0.0.1:9469"), vec![eni]);
        assert!(lo.is_own(sa("127.0.0.1:9469")));
        assert!(lo.is_own(sa("0.0.0.0:9469")));
        assert!(!lo.is_own(sa("127.0.0.2:9469")));
        assert!(!lo.is_own(sa("192.0.2.10:9469")));
        // Each process has its own origin id.
        assert_ne!(any.origin(), v4.origin());
    }
}
