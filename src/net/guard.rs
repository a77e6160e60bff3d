//! What ad-hoc `/probe` requests may reach. Two layers: the allowlist (`probe.allow`: host
//! patterns and CIDRs) decides which targets may be asked for; the metadata guard refuses, after
//! every resolution and on every redirect hop, the addresses no probe may ever touch — link-local
//! (IMDS 169.254.169.254, ECS task metadata and credentials 169.254.170.2), AWS's instance-local
//! IPv6 services (fd00:ec2::/32, IMDS at fd00:ec2::254), unspecified, multicast and broadcast —
//! including IPv6 forms that embed such an IPv4 address (mapped, compatible, translated, 6to4,
//! and NAT64 under the well-known prefix, the local-use block and every prefix the agent learned
//! or was configured with: a learned prefix can only add refusals, never lift one).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::model::failure::{Failure, FailureReason};
use crate::model::nat64::{self as rfc6052, Via};
use crate::model::target::Host;
use crate::net::nat64::Nat64Table;

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

/// Why `ip` may never be probed, or `None` when it may, by the fixed rules (the well-known and
/// local-use NAT64 forms included).
pub fn forbidden(ip: IpAddr) -> Option<String> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4).map(|why| format!("{ip} is {why}")),
        IpAddr::V6(v6) => {
            if let Some(why) = forbidden_v6(v6) {
                return Some(format!("{ip} is {why}"));
            }
            embedded_v4(v6).into_iter().find_map(|(v4, how)| {
                forbidden_v4(v4).map(|why| format!("{ip} is {how} {v4}, which is {why}"))
            })
        }
    }
}

/// [`forbidden`], and also an IPv6 address that `nat64` reads as synthesized from a forbidden
/// IPv4 address (under a configured or discovered prefix).
pub fn forbidden_with(ip: IpAddr, nat64: &Nat64Table) -> Option<String> {
    if let Some(why) = forbidden(ip) {
        return Some(why);
    }
    let IpAddr::V6(v6) = ip else { return None };
    match nat64.classify(v6) {
        Via::Nat64 { prefix, ipv4 } => forbidden_v4(ipv4)
            .map(|why| format!("{ip} is NAT64 ({prefix}) for {ipv4}, which is {why}")),
        Via::Native => None,
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

/// The IPv4 addresses an IPv6 one may carry, and how: every reading the fixed rules know. An
/// address in the local-use block 64:ff9b:1::/48 is read under every RFC 6052 length from /48
/// up (longest first), since a network may carve its prefix out of that block at any of them,
/// and a translator may ignore the suffix bits. A reading in 0.0.0.0/8 is the block's own zero
/// padding, not an address anyone could reach, so it is not one.
fn embedded_v4(v6: Ipv6Addr) -> Vec<(Ipv4Addr, &'static str)> {
    let s = v6.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return vec![(v4, "IPv4-mapped")];
    }
    if s[..6] == [0; 6] && !(s[6] == 0 && s[7] <= 1) {
        return vec![(low, "IPv4-compatible")];
    }
    if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return vec![(low, "IPv4-translated (::ffff:0:0/96) for")];
    }
    if rfc6052::WELL_KNOWN.contains(&v6) {
        return vec![(low, "NAT64 (64:ff9b::/96) for")];
    }
    if rfc6052::LOCAL_USE.contains(&v6) {
        return [96u8, 64, 56, 48]
            .into_iter()
            .filter_map(|len| {
                let net = ipnet::Ipv6Net::new(v6, len).ok()?.trunc();
                rfc6052::extract(net, v6)
                    .filter(|v4| v4.octets()[0] != 0)
                    .map(|v4| (v4, "local-use NAT64 (64:ff9b:1::/48) for"))
            })
            .collect();
    }
    if s[0] == 0x2002 {
        let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
        return vec![(v4, "6to4 (2002::/16) for")];
    }
    Vec::new()
}

/// The metadata guard as an address policy, reading synthesized addresses under the prefixes
/// `nat64` knows.
#[derive(Debug, Clone, Default)]
pub struct MetadataGuard {
    /// The NAT64 prefixes of the agent (the well-known one when nothing was learned).
    pub nat64: Nat64Table,
}

impl AddressPolicy for MetadataGuard {
    fn check(&self, addr: IpAddr) -> Result<(), Failure> {
        match forbidden_with(addr, &self.nat64) {
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
/// redirect hop. A synthesized IPv6 literal must be allowed twice: as itself, and as the IPv4
/// address it carries (the packets end there), so `2001:db8::/32` in `probe.allow` does not let
/// a NAT64 literal reach an IPv4 address the list does not name.
#[derive(Debug, Clone)]
pub struct AdhocPolicy {
    /// Which hosts may be asked for.
    pub allow: Allowlist,
    /// The address rules under the agent's NAT64 prefixes.
    pub guard: MetadataGuard,
}

impl AddressPolicy for AdhocPolicy {
    fn check(&self, addr: IpAddr) -> Result<(), Failure> {
        self.guard.check(addr)
    }

    fn check_host(&self, host: &Host) -> Result<(), Failure> {
        self.guard.check_host(host)?;
        if !self.allow.allows(host) {
            return Err(Failure::new(
                FailureReason::Forbidden,
                format!("refused: {host} is not in probe.allow"),
            ));
        }
        if let Host::Ip(IpAddr::V6(v6)) = host
            && let Via::Nat64 { prefix, ipv4 } = self.guard.nat64.classify(*v6)
            && !self.allow.allows(&Host::Ip(IpAddr::V4(ipv4)))
        {
            return Err(Failure::new(
                FailureReason::Forbidden,
                format!(
                    "refused: {host} is NAT64 ({prefix}) for {ipv4}, which is not in probe.allow"
                ),
            ));
        }
        Ok(())
    }
}
