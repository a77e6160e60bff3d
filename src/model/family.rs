//! The address family a probe is pinned to, and the rules that tie addresses and DNS record types to it.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// One IP address family. Every probe runs over exactly one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// IPv4: A records, IPv4 sockets.
    Ipv4,
    /// IPv6: AAAA records, IPv6 sockets.
    Ipv6,
}

impl Family {
    /// Both families, in label order.
    pub const ALL: [Family; 2] = [Family::Ipv4, Family::Ipv6];

    /// The value of the `family` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }

    /// The family whose packets reach `addr`. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is
    /// IPv6 syntax, but a dual-stack socket reaches it over IPv4, so it counts as IPv4: an "ipv6"
    /// probe must never pass over IPv4.
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }

    /// `4` or `6`, as blackbox_exporter's `probe_ip_protocol` reports it.
    pub fn ip_version(self) -> u8 {
        match self {
            Family::Ipv4 => 4,
            Family::Ipv6 => 6,
        }
    }

    /// Parses `ipv4`/`ipv6` (also `4`/`6`, `ip4`/`ip6`, as users type them).
    pub fn parse(s: &str) -> Option<Family> {
        match s.to_ascii_lowercase().as_str() {
            "ipv4" | "ip4" | "4" | "inet" => Some(Family::Ipv4),
            "ipv6" | "ip6" | "6" | "inet6" => Some(Family::Ipv6),
            _ => None,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
