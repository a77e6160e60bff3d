//! What ad-hoc `/probe` requests may reach. Two layers: the allowlist (`probe.allow`: host
//! patterns and CIDRs) decides which targets may be asked for; the metadata guard refuses, after
//! every resolution and on every redirect hop, the addresses no probe may ever touch — link-local
//! (IMDS 169.254.169.254, ECS task metadata and credentials 169.254.170.2), AWS's instance-local
//! IPv6 services (fd00:ec2::/32, IMDS at fd00:ec2::254), unspecified, multicast and broadcast —
//! including IPv6 forms that embed such an IPv4 address (mapped, compatible, translated, NAT64,
//! 6to4).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::model::failure::{Failure, FailureReason};
use crate::model::target::Host;

/// A rule every address must pass before anything is sent to it.
pub trait AddressPolicy: Send + Sync + 'static {
    /// `Ok` to allow; a `forbidden` failure to refuse.
    fn check(&self, addr: IpAddr) -> Result<(), Failure>;

    /// Checks a host a redirect leads to (before it is resolved). Default: IP literals go through
    /// [`AddressPolicy::check`], names pass (their addresses are checked once resolved).
    fn check_host(&self, host: &Host) -> Result<(), Failure> {
        match host {
            Host::Ip(ip) => self.check(*ip),
            Host::Name(_) => Ok(()),
        }
    }
}

/// Why `ip` may never be probed, or `None` when it may.
pub fn forbidden(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4).map(|why| format!("{ip} is {why}")),
        IpAddr::V6(v6) => {
            if let Some(why) = forbidden_v6(v6) {
                return Some(format!("{ip} is {why}"));
            }
            embedded_v4(v6).and_then(|(v4, how)| {
                forbidden_v4(v4).map(|why| format!("{ip} is {how} {v4}, which is {why}"))
            })
        }
    }
}

fn forbidden_v4(v4: Ipv4Addr) -> Option<&'static str> {
    let o = v4.octets();
    if o[0] == 169 && o[1] == 254 {
        Some(if v4 == Ipv4Addr::new(169, 254, 169, 254) {
            "the instance metadata service (link-local)"
        } else if v4 == Ipv4Addr::new(169, 254, 170, 2) {
            "the ECS task metadata and credentials endpoint (link-local)"
        } else {
            "link-local (169.254.0.0/16)"
        })
    } else if o[0] == 0 {
        Some("in 0.0.0.0/8 (this host)")
    } else if v4.is_multicast() {
        Some("multicast")
    } else if v4.is_broadcast() {
        Some("broadcast")
    } else {
        None
    }
}

fn forbidden_v6(v6: Ipv6Addr) -> Option<&'static str> {
    let s = v6.segments();
    if v6.is_unspecified() {
        Some("unspecified (::)")
    } else if s[0] & 0xffc0 == 0xfe80 {
        Some("link-local (fe80::/10)")
    } else if s[0] == 0xfd00 && s[1] == 0x0ec2 {
        Some(
            if v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
                "the instance metadata service over IPv6"
            } else {
                "an AWS instance-local service address (fd00:ec2::/32)"
            },
        )
    } else if v6.is_multicast() {
        Some("multicast")
    } else {
        None
    }
}

/// An IPv4 address carried inside an IPv6 one, and how.
fn embedded_v4(v6: Ipv6Addr) -> Option<(Ipv4Addr, &'static str)> {
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some((v4, "IPv4-mapped"));
    }
    if s[..6] == [0; 6] && !(s[6] == 0 && s[7] <= 1) {
        return Some((low, "IPv4-compatible"));
    }
    if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return Some((low, "IPv4-translated (::ffff:0:0/96) for"));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some((low, "NAT64 (64:ff9b::/96) for"));
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return Some((low, "local-use NAT64 (64:ff9b:1::/48) for"));
    }
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return Some((v4, "6to4 (2002::/16) for"));
    }
    None
}

/// The metadata guard as an address policy.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetadataGuard;

impl AddressPolicy for MetadataGuard {
    fn check(&self, addr: IpAddr) -> Result<(), Failure> {
        match forbidden(addr) {
            Some(why) => Err(Failure::new(
                FailureReason::Forbidden,
                format!("refused: {why}"),
            )),
            None => Ok(()),
        }
    }

    fn check_host(&self, host: &Host) -> Result<(), Failure> {
        match host {
            Host::Ip(ip) => self.check(*ip),
            Host::Name(_) => Ok(()),
        }
    }
}

/// One `probe.allow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AllowEntry {
    /// `*.example.com` (any name under it) or `example.com` (exactly).
    Name { suffix: String, wildcard: bool },
    /// A CIDR (or a single address) that IP-literal targets must fall in.
    Net(IpNet),
}

/// The `probe.allow` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist {
    entries: Vec<AllowEntry>,
}

impl Allowlist {
    /// Parses entries: `*.amazonaws.com`, `example.com`, `192.0.2.0/24`, `2001:db8::1`.
    pub fn parse(entries: &[String]) -> Result<Allowlist, (usize, String)> {
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            let e = e.trim();
            if let Ok(net) = e.parse::<IpNet>() {
                out.push(AllowEntry::Net(net.trunc()));
            } else if let Ok(ip) = e.parse::<IpAddr>() {
                out.push(AllowEntry::Net(IpNet::from(ip)));
            } else if let Some(rest) = e.strip_prefix("*.") {
                if rest.is_empty() || rest.contains('*') {
                    return Err((
                        i,
                        format!("`{e}`: a wildcard may only lead, as in *.example.com"),
                    ));
                }
                out.push(AllowEntry::Name {
                    suffix: rest.trim_end_matches('.').to_ascii_lowercase(),
                    wildcard: true,
                });
            } else if e == "*" {
                return Err((
                    i,
                    "`*` would allow every host; list the domains or CIDRs instead".into(),
                ));
            } else if e.is_empty() || e.contains(['*', '/', ':', ' ']) {
                return Err((
                    i,
                    format!("`{e}` is not a host pattern (*.example.com) or a CIDR (192.0.2.0/24)"),
                ));
            } else {
                out.push(AllowEntry::Name {
                    suffix: e.trim_end_matches('.').to_ascii_lowercase(),
                    wildcard: false,
                });
            }
        }
        Ok(Allowlist { entries: out })
    }

    /// True when the list has no entry (every ad-hoc target is refused).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Names must match a pattern; IP literals must fall in a CIDR. An IPv4-mapped IPv6 literal
    /// (`::ffff:a.b.c.d`) is its IPv4 address on the wire (dual-stack sockets reach it over
    /// IPv4), so it is matched as that address: `::/0` must not let it past IPv4 entries.
    pub fn allows(&self, host: &Host) -> bool {
        let ip = match host {
            Host::Ip(IpAddr::V6(v6)) => {
                Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(*v6), IpAddr::V4))
            }
            Host::Ip(ip) => Some(*ip),
            Host::Name(_) => None,
        };
        self.entries.iter().any(|e| match (e, host) {
            (AllowEntry::Net(net), Host::Ip(_)) => ip.is_some_and(|ip| net.contains(&ip)),
            (AllowEntry::Name { suffix, wildcard }, Host::Name(n)) => {
                let n = n.trim_end_matches('.');
                if *wildcard {
                    n.len() > suffix.len()
                        && n.ends_with(suffix.as_str())
                        && n.as_bytes()[n.len() - suffix.len() - 1] == b'.'
                } else {
                    n == suffix
                }
            }
            _ => false,
        })
    }
}

/// The policy for ad-hoc probes: the metadata guard on every address, and the allowlist on every
/// redirect hop.
#[derive(Debug, Clone)]
pub struct AdhocPolicy {
    /// Which hosts may be asked for.
    pub allow: Allowlist,
}

impl AddressPolicy for AdhocPolicy {
    fn check(&self, addr: IpAddr) -> Result<(), Failure> {
        MetadataGuard.check(addr)
    }

    fn check_host(&self, host: &Host) -> Result<(), Failure> {
        MetadataGuard.check_host(host)?;
        if self.allow.allows(host) {
            Ok(())
        } else {
            Err(Failure::new(
                FailureReason::Forbidden,
                format!("refused: {host} is not in probe.allow"),
            ))
        }
    }
}
