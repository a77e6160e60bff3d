//! The NAT64 prefixes of the task's IPv6 path, shared by every check and the address guard:
//! the well-known 64:ff9b::/96 always, `resolver.nat64_prefixes` from config, and what RFC 7050
//! discovery (the AAAA of `ipv4only.arpa` through the configured resolver) last found. It
//! tells a check whether an IPv6 address is native or synthesized.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, RwLock};

use ipnet::Ipv6Net;

use crate::model::family::Family;
use crate::model::nat64::{self, KnownPrefix, PrefixSource, Via};
use crate::net::resolver::{DnsResolver, LookupError};

/// How many discovered prefixes the guard remembers after they are forgotten.
const MAX_REMEMBERED: usize = 64;

/// The name RFC 7050 discovery asks for.
pub const DISCOVERY_NAME: &str = "ipv4only.arpa";

/// The known prefixes, cheap to clone. The configured ones belong to one config generation
/// (a reload builds a new table, so a refused reload changes nothing); the discovered ones are
/// shared by every table made from the same agent, so what discovery learned survives reloads.
#[derive(Debug, Clone, Default)]
pub struct Nat64Table {
    configured: Arc<[Ipv6Net]>,
    discovered: Arc<RwLock<Vec<Ipv6Net>>>,
    /// Every prefix discovery ever learned in this process, for the guard only: a DNS64
    /// switched off and on again can answer a synthesized AAAA before the next round has
    /// re-learned its prefix, and a forgotten prefix must not reopen its forms.
    ever: Arc<RwLock<Vec<Ipv6Net>>>,
}

impl Nat64Table {
    /// A table that knows the well-known prefix and `configured`, and nothing discovered yet.
    pub fn new(configured: &[Ipv6Net]) -> Nat64Table {
        Nat64Table {
            configured: configured.into(),
            discovered: Arc::default(),
            ever: Arc::default(),
        }
    }

    /// A table with `configured` instead, sharing this one's discovered prefixes.
    pub fn with_configured(&self, configured: &[Ipv6Net]) -> Nat64Table {
        Nat64Table {
            configured: configured.into(),
            discovered: Arc::clone(&self.discovered),
            ever: Arc::clone(&self.ever),
        }
    }

    /// Replaces what discovery found; true when that changed anything.
    pub fn set_discovered(&self, prefixes: Vec<Ipv6Net>) -> bool {
        {
            // Bounded: a DNS64 answering a new prefix every round must not grow it forever.
            // Past the bound the current ones are still read (see `guard_readings`).
            let mut ever = self.ever.write().expect("nat64 table lock");
            for p in &prefixes {
                if !ever.contains(p) && ever.len() < MAX_REMEMBERED {
                    ever.push(*p);
                }
            }
        }
        let mut g = self.discovered.write().expect("nat64 table lock");
        let changed = *g != prefixes;
        *g = prefixes;
        changed
    }

    /// Every reading of `addr` as a synthesized address the guard must consider: under the
    /// well-known prefix, each configured one and each one discovery ever learned (not just the
    /// longest match, and not only the current ones), as (prefix, IPv4 address).
    pub fn guard_readings(&self, addr: Ipv6Addr) -> Vec<(Ipv6Net, std::net::Ipv4Addr)> {
        let ever = self.ever.read().expect("nat64 table lock");
        let discovered = self.discovered.read().expect("nat64 table lock");
        std::iter::once(&nat64::WELL_KNOWN)
            .chain(self.configured.iter())
            .chain(discovered.iter())
            .chain(ever.iter())
            .filter_map(|&p| nat64::extract(p, addr).map(|v4| (p, v4)))
            .collect()
    }

    /// Every known prefix once: well-known first, then configured, then discovered (a prefix
    /// both configured and discovered is listed as configured).
    pub fn known(&self) -> Vec<KnownPrefix> {
        let discovered = self.discovered.read().expect("nat64 table lock");
        let mut out = vec![KnownPrefix {
            prefix: nat64::WELL_KNOWN,
            source: PrefixSource::WellKnown,
        }];
        for (nets, source) in [
            (&self.configured[..], PrefixSource::Config),
            (&discovered[..], PrefixSource::Discovered),
        ] {
            for &prefix in nets {
                if !out.iter().any(|k| k.prefix == prefix) {
                    out.push(KnownPrefix { prefix, source });
                }
            }
        }
        out
    }

    /// Native, or the prefix and IPv4 address `addr` is synthesized from. The longest matching
    /// prefix wins, so a network-specific prefix inside another is read with its own layout.
    pub fn classify(&self, addr: Ipv6Addr) -> Via {
        // Per checked address, so no allocation: the lists are a handful of prefixes.
        let discovered = self.discovered.read().expect("nat64 table lock");
        std::iter::once(&nat64::WELL_KNOWN)
            .chain(self.configured.iter())
            .chain(discovered.iter())
            .filter(|p| p.contains(&addr))
            .max_by_key(|p| p.prefix_len())
            .and_then(|&prefix| {
                nat64::extract(prefix, addr).map(|ipv4| Via::Nat64 { prefix, ipv4 })
            })
            .unwrap_or(Via::Native)
    }

    /// [`Nat64Table::classify`] for any address: `None` for IPv4 (and IPv4-mapped) addresses.
    pub fn classify_ip(&self, addr: IpAddr) -> Option<Via> {
        match addr {
            IpAddr::V6(v6) if Family::of(addr) == Family::Ipv6 => Some(self.classify(v6)),
            _ => None,
        }
    }
}

/// What one discovery round found.
#[derive(Debug)]
pub enum Discovery {
    /// Prefixes read from the answer (possibly none that RFC 6052 allows).
    Found {
        /// The prefixes.
        prefixes: Vec<Ipv6Net>,
        /// Answers that revealed no usable prefix (for the log).
        ignored: Vec<Ipv6Addr>,
    },
    /// `ipv4only.arpa` has no AAAA: the resolver does no DNS64.
    NoDns64,
    /// The lookup failed; what was known stays.
    Failed(LookupError),
}

/// One RFC 7050 round: asks `resolver` for the AAAA of `ipv4only.arpa`.
pub async fn discover(resolver: &DnsResolver) -> Discovery {
    match resolver.lookup(DISCOVERY_NAME, Family::Ipv6).await {
        Ok(answer) => {
            let addrs: Vec<Ipv6Addr> = answer
                .addresses
                .iter()
                .filter_map(|a| match a {
                    IpAddr::V6(v6) => Some(*v6),
                    IpAddr::V4(_) => None,
                })
                .collect();
            let prefixes = nat64::prefixes_from_answers(&addrs);
            let ignored = addrs
                .iter()
                .copied()
                .filter(|a| !prefixes.iter().any(|p| p.contains(a)))
                .collect();
            Discovery::Found { prefixes, ignored }
        }
        Err(LookupError::NoData { .. } | LookupError::NxDomain { .. }) => Discovery::NoDns64,
        Err(e) => Discovery::Failed(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_is_recognized_without_anything_learned() {
        let t = Nat64Table::default();
        assert_eq!(
            t.classify("64:ff9b::198.51.100.10".parse().unwrap()),
            Via::Nat64 {
                prefix: nat64::WELL_KNOWN,
                ipv4: "198.51.100.10".parse().unwrap()
            }
        );
        assert_eq!(t.classify("2001:db8::10".parse().unwrap()), Via::Native);
        assert_eq!(t.classify_ip("::ffff:192.0.2.1".parse().unwrap()), None);
    }

    #[test]
    fn remembered_prefixes_are_bounded_and_current_ones_always_read() {
        let t = Nat64Table::default();
        let net = |i: u16| -> Ipv6Net { format!("2001:db8:{i:x}::/96").parse().unwrap() };
        for i in 0..70 {
            t.set_discovered(vec![net(i)]);
        }
        assert_eq!(t.ever.read().unwrap().len(), MAX_REMEMBERED);
        let addr = |i: u16| nat64::embed(net(i), "169.254.0.9".parse().unwrap());
        // Past the bound, but current: read.
        assert_eq!(t.guard_readings(addr(69)).len(), 1);
        // Within the bound: read after being forgotten.
        t.set_discovered(Vec::new());
        assert_eq!(t.guard_readings(addr(3)).len(), 1);
        assert!(t.guard_readings(addr(69)).is_empty());
    }

    #[test]
    fn configured_and_discovered_prefixes_classify() {
        let t = Nat64Table::new(&["2001:db8:64::/96".parse().unwrap()]);
        let a: Ipv6Addr = "2001:db8:64::c633:640a".parse().unwrap();
        assert_eq!(t.classify(a).as_str(), "nat64");
        assert!(t.set_discovered(vec!["2001:db8:1:2::/64".parse().unwrap()]));
        assert!(!t.set_discovered(vec!["2001:db8:1:2::/64".parse().unwrap()]));
        let b: Ipv6Addr = "2001:db8:1:2:c6:3364:a00:0".parse().unwrap();
        assert_eq!(
            t.classify(b),
            Via::Nat64 {
                prefix: "2001:db8:1:2::/64".parse().unwrap(),
                ipv4: "198.51.100.10".parse().unwrap()
            }
        );
        let sources: Vec<&str> = t.known().iter().map(|k| k.source.as_str()).collect();
        assert_eq!(sources, ["well_known", "config", "discovered"]);
        let reloaded = t.with_configured(&[]);
        assert_eq!(reloaded.classify(a), Via::Native);
        assert_eq!(
            reloaded.classify(b).as_str(),
            "nat64",
            "discovered prefixes are shared"
        );
        assert_eq!(
            t.classify(a).as_str(),
            "nat64",
            "the old generation's table is unchanged"
        );
    }
}
