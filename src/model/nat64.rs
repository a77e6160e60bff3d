//! NAT64 address synthesis (RFC 6052) as plain data: the prefix lengths a NAT64 prefix may have,
//! where the IPv4 address sits inside a synthesized IPv6 address, and what an IPv6 path is —
//! native, or through a NAT64 translator for an IPv4 address. The resolver-facing side (learning
//! prefixes by RFC 7050) is `crate::net::nat64`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv6Net;
use serde::Serialize;

/// The well-known prefix (RFC 6052 §2.1): recognized whether or not anything was learned.
pub const WELL_KNOWN: Ipv6Net =
    match Ipv6Net::new(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96) {
        Ok(n) => n,
        Err(_) => panic!("64:ff9b::/96 is a valid prefix"),
    };

/// The local-use prefix block (RFC 8215). Networks carve their own NAT64 prefix out of it at
/// any RFC 6052 length, so the guard reads an address in it under every length that fits.
pub const LOCAL_USE: Ipv6Net = match Ipv6Net::new(Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0), 48)
{
    Ok(n) => n,
    Err(_) => panic!("64:ff9b:1::/48 is a valid prefix"),
};

/// The IPv4 addresses `ipv4only.arpa` has (RFC 7050 §2.2): what a DNS64 synthesizes into the
/// AAAA answers prefix discovery reads.
pub const WELL_KNOWN_IPV4: [Ipv4Addr; 2] =
    [Ipv4Addr::new(192, 0, 0, 170), Ipv4Addr::new(192, 0, 0, 171)];

/// The prefix lengths RFC 6052 §2.2 allows.
pub const LENGTHS: [u8; 6] = [32, 40, 48, 56, 64, 96];

/// Why a prefix cannot be a NAT64 prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    /// Not /32, /40, /48, /56, /64 or /96.
    #[error("has length /{0}; a NAT64 prefix is /32, /40, /48, /56, /64 or /96 (RFC 6052)")]
    Length(u8),
    /// Bits set after the prefix length.
    #[error("has bits set after its length (did you mean {0}?)")]
    HostBits(Ipv6Net),
    /// A range whose addresses mean something else to every host, where a translator's
    /// addresses would be confused with (or give access to) local or special ones.
    #[error("lies in {0}, which cannot hold a NAT64 prefix")]
    Special(&'static str),
}

/// Checks that `net` can be a NAT64 prefix: an RFC 6052 length, no host bits, not inside a
/// special range (IPv4-mapped/compatible/translated space, link-local, multicast, AWS's
/// instance-local fd00:ec2::/32, 6to4). A prefix learned from DNS goes through this too, so a
/// hostile answer cannot declare such a range "NAT64".
pub fn check_prefix(net: Ipv6Net) -> Result<(), PrefixError> {
    if !LENGTHS.contains(&net.prefix_len()) {
        return Err(PrefixError::Length(net.prefix_len()));
    }
    if net.trunc() != net {
        return Err(PrefixError::HostBits(net.trunc()));
    }
    let s = net.network().segments();
    let special = if s[..5] == [0; 5] {
        Some("::/80 (IPv4-compatible, IPv4-mapped and IPv4-translated addresses)")
    } else if s[0] & 0xffc0 == 0xfe80 {
        Some("fe80::/10 (link-local)")
    } else if s[0] & 0xff00 == 0xff00 {
        Some("ff00::/8 (multicast)")
    } else if s[0] == 0xfd00 && s[1] == 0x0ec2 {
        Some("fd00:ec2::/32 (AWS instance-local services)")
    } else if s[0] == 0x2002 {
        Some("2002::/16 (6to4)")
    } else {
        None
    };
    match special {
        Some(what) => Err(PrefixError::Special(what)),
        None => Ok(()),
    }
}

/// The byte positions (0-based, in the 16-byte address) that carry the IPv4 address for a
/// prefix of `len` bits: RFC 6052 §2.2's figure, skipping bits 64–71 (the "u" octet).
fn positions(len: u8) -> [usize; 4] {
    match len {
        32 => [4, 5, 6, 7],
        40 => [5, 6, 7, 9],
        48 => [6, 7, 9, 10],
        56 => [7, 9, 10, 11],
        64 => [9, 10, 11, 12],
        _ => [12, 13, 14, 15],
    }
}

/// The IPv4 address `addr` carries when it lies in `prefix` (whose length must be one of
/// [`LENGTHS`]); `None` when it does not lie there, or when its "u" octet (bits 64–71) is set,
/// which RFC 6052 forbids in a synthesized address for lengths under 96.
pub fn extract(prefix: Ipv6Net, addr: Ipv6Addr) -> Option<Ipv4Addr> {
    if !prefix.contains(&addr) || !LENGTHS.contains(&prefix.prefix_len()) {
        return None;
    }
    let o = addr.octets();
    if prefix.prefix_len() < 96 && o[8] != 0 {
        return None;
    }
    let [a, b, c, d] = positions(prefix.prefix_len()).map(|i| o[i]);
    Some(Ipv4Addr::new(a, b, c, d))
}

/// The address a translator with `prefix` uses for `v4` (suffix bits zero).
pub fn embed(prefix: Ipv6Net, v4: Ipv4Addr) -> Ipv6Addr {
    let mut o = prefix.trunc().network().octets();
    for (i, b) in positions(prefix.prefix_len()).into_iter().zip(v4.octets()) {
        o[i] = b;
    }
    Ipv6Addr::from(o)
}

/// The prefixes an AAAA answer for `ipv4only.arpa` reveals (RFC 7050 §3): for each address, the
/// first RFC 6052 length (longest first, /96 being what almost every network uses) at which one
/// of [`WELL_KNOWN_IPV4`] sits, whose suffix bits are zero, and which [`check_prefix`] accepts.
/// Deduplicated, in answer order.
pub fn prefixes_from_answers(answers: &[Ipv6Addr]) -> Vec<Ipv6Net> {
    let mut out: Vec<Ipv6Net> = Vec::new();
    for &addr in answers {
        let found = LENGTHS.iter().rev().find_map(|&len| {
            let net = Ipv6Net::new(addr, len).ok()?.trunc();
            let v4 = extract(net, addr)?;
            (WELL_KNOWN_IPV4.contains(&v4) && embed(net, v4) == addr && check_prefix(net).is_ok())
                .then_some(net)
        });
        if let Some(net) = found
            && !out.contains(&net)
        {
            out.push(net);
        }
    }
    out
}

/// Where a NAT64 prefix is known from: the `source` label of `dualprobe_nat64_prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PrefixSource {
    /// 64:ff9b::/96, always known.
    WellKnown,
    /// `resolver.nat64_prefixes`.
    Config,
    /// Learned from `ipv4only.arpa` (RFC 7050).
    Discovered,
}

impl PrefixSource {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PrefixSource::WellKnown => "well_known",
            PrefixSource::Config => "config",
            PrefixSource::Discovered => "discovered",
        }
    }
}

/// A known NAT64 prefix and where it is known from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KnownPrefix {
    /// The prefix.
    pub prefix: Ipv6Net,
    /// Where it came from.
    pub source: PrefixSource,
}

/// How an IPv6 check's packets went: to the address itself, or through a NAT64 translator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// A native IPv6 address.
    Native,
    /// A synthesized address: `prefix` with `ipv4` embedded.
    Nat64 {
        /// The NAT64 prefix it lies in.
        prefix: Ipv6Net,
        /// The IPv4 address the translator forwards to.
        ipv4: Ipv4Addr,
    },
}

impl Via {
    /// The value of the `via` label: `native` or `nat64`.
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Native => "native",
            Via::Nat64 { .. } => "nat64",
        }
    }

    /// What the path is, in words, for details and logs.
    pub fn describe(self, addr: Ipv6Addr) -> String {
        match self {
            Via::Native => format!("{addr} (native IPv6)"),
            Via::Nat64 { prefix, ipv4 } => format!("{addr} (NAT64 via {prefix} to {ipv4})"),
        }
    }
}

/// The path asserted by `expect.via.ipv6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ViaKind {
    /// Native IPv6 only.
    Native,
    /// Through NAT64.
    Nat64,
}

impl ViaKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ViaKind::Native => "native",
            ViaKind::Nat64 => "nat64",
        }
    }

    /// Whether `via` is this kind.
    pub fn matches(self, via: Via) -> bool {
        self.as_str() == via.as_str()
    }
}

/// The path one IPv6 cycle used: the address connected to (or resolved, when nothing
/// connected) and how it is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Path {
    /// The address.
    pub address: Ipv6Addr,
    /// Native or through NAT64.
    pub via: Via,
}

impl Serialize for Ipv6Path {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("address", &self.address)?;
        m.serialize_entry("via", self.via.as_str())?;
        if let Via::Nat64 { prefix, ipv4 } = self.via {
            m.serialize_entry("nat64_prefix", &prefix)?;
            m.serialize_entry("ipv4", &ipv4)?;
        }
        m.end()
    }
}

impl fmt::Display for Ipv6Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.via.describe(self.address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv6Net {
        s.parse().unwrap()
    }

    /// RFC 6052 §2.4's table: 192.0.2.33 under 2001:db8:...::/n for every length.
    #[test]
    fn rfc6052_examples_round_trip() {
        let v4 = Ipv4Addr::new(192, 0, 2, 33);
        for (prefix, addr) in [
            ("2001:db8::/32", "2001:db8:c000:221::"),
            ("2001:db8:100::/40", "2001:db8:1c0:2:21::"),
            ("2001:db8:122::/48", "2001:db8:122:c000:2:2100::"),
            ("2001:db8:122:300::/56", "2001:db8:122:3c0:0:221::"),
            ("2001:db8:122:344::/64", "2001:db8:122:344:c0:2:2100:0"),
            ("2001:db8:122:344::/96", "2001:db8:122:344::192.0.2.33"),
            ("64:ff9b::/96", "64:ff9b::192.0.2.33"),
        ] {
            let (p, a): (Ipv6Net, Ipv6Addr) = (net(prefix), addr.parse().unwrap());
            assert_eq!(embed(p, v4), a, "{prefix}");
            assert_eq!(extract(p, a), Some(v4), "{prefix}");
        }
    }

    #[test]
    fn the_u_octet_set_is_not_synthesized() {
        let a: Ipv6Addr = "2001:db8:122:344:ff00:2:2100:0".parse().unwrap();
        assert_eq!(extract(net("2001:db8:122:344::/64"), a), None);
        assert_eq!(
            extract(net("2001:db8:64::/96"), "2001:db9::1".parse().unwrap()),
            None
        );
    }

    #[test]
    fn prefixes_are_checked() {
        assert_eq!(check_prefix(net("2001:db8:64::/96")), Ok(()));
        assert_eq!(check_prefix(WELL_KNOWN), Ok(()));
        assert_eq!(
            check_prefix(net("2001:db8::/33")),
            Err(PrefixError::Length(33))
        );
        assert!(matches!(
            check_prefix(net("2001:db8::1/96")),
            Err(PrefixError::HostBits(_))
        ));
        for special in [
            "::/96",
            "::ffff:0:0/96",
            "fe80::/64",
            "ff02::/96",
            "fd00:ec2::/96",
            "2002::/32",
        ] {
            assert!(
                matches!(check_prefix(net(special)), Err(PrefixError::Special(_))),
                "{special}"
            );
        }
    }

    #[test]
    fn discovery_reads_the_prefix_from_ipv4only_arpa() {
        let a = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        assert_eq!(
            prefixes_from_answers(&[a("2001:db8:64::192.0.0.170"), a("2001:db8:64::192.0.0.171")]),
            vec![net("2001:db8:64::/96")]
        );
        // A /64 layout: 192.0.0.170 = c0.00.00.aa at bytes 9..13.
        assert_eq!(
            prefixes_from_answers(&[a("2001:db8:1:2:c0:0:aa00:0")]),
            vec![net("2001:db8:1:2::/64")]
        );
        // No well-known IPv4 inside, or a special range: nothing learned.
        assert!(prefixes_from_answers(&[a("2001:db8:64::198.51.100.1")]).is_empty());
        assert!(
            prefixes_from_answers(&[a("::ffff:192.0.0.170"), a("fe80::192.0.0.170")]).is_empty()
        );
    }
}
