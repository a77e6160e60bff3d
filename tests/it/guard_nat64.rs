//! The guard under learned NAT64 prefixes (issue 13): a configured or discovered prefix makes
//! its synthesized forms of forbidden IPv4 addresses forbidden too, never lifts a refusal, and
//! a hostile `ipv4only.arpa` answer cannot declare a special range "NAT64". Pure tables, no
//! root; the end-to-end rows with a real DNS64 and NAT64 are in the netns suite.

use std::net::Ipv6Addr;

use dualprobe::model::nat64::{self, ViaKind};
use dualprobe::model::target::Host;
use dualprobe::net::guard::{AddressPolicy, AdhocPolicy, Allowlist, MetadataGuard, forbidden_with};
use dualprobe::net::nat64::Nat64Table;

use super::guard_table::{Allowed, Forbidden, Want, ip, judge, policy_reason, report};

/// A table as an agent in an IPv6-only network has it: 2001:db8:64::/96 from config,
/// 2001:db8:1:2::/64 (the /64 layout) discovered.
fn learned() -> Nat64Table {
    let t = Nat64Table::new(&["2001:db8:64::/96".parse().unwrap()]);
    t.set_discovered(vec!["2001:db8:1:2::/64".parse().unwrap()]);
    t
}

#[rustfmt::skip]
const LEARNED_ROWS: &[(&str, Want, Want)] = &[
    // (address, with the learned prefixes, with none learned)
    ("2001:db8:64::a9fe:a9fe", Forbidden("NAT64 (2001:db8:64::/96) for 169.254.169.254, which is the instance metadata"), Allowed),
    ("2001:db8:64::169.254.170.2", Forbidden("for 169.254.170.2, which is the ECS task metadata"), Allowed),
    ("2001:db8:64::a9fe:1", Forbidden("link-local (169.254.0.0/16)"), Allowed),
    ("2001:db8:64::e000:1", Forbidden("multicast"), Allowed),
    ("2001:db8:64::c633:640a", Allowed, Allowed),
    // The /64 layout: IPv4 in bits 72-103, the u octet (bits 64-71) zero.
    ("2001:db8:1:2:a9:fea9:fe00:0", Forbidden("NAT64 (2001:db8:1:2::/64) for 169.254.169.254"), Allowed),
    ("2001:db8:1:2:c6:3364:a00:0", Allowed, Allowed),
    // The u octet set: not a synthesized address, so not read as one.
    ("2001:db8:1:2:ffa9:fea9:fe00:0", Allowed, Allowed),
    // A learned prefix never lifts a fixed refusal.
    ("64:ff9b::a9fe:a9fe", Forbidden("NAT64 (64:ff9b::/96) for 169.254.169.254"), Forbidden("NAT64 (64:ff9b::/96) for 169.254.169.254")),
    ("fd00:ec2::254", Forbidden("the instance metadata service over IPv6"), Forbidden("the instance metadata service over IPv6")),
    ("::ffff:169.254.169.254", Forbidden("IPv4-mapped"), Forbidden("IPv4-mapped")),
];

#[test]
fn learned_prefixes_only_add_refusals() {
    let (with, without) = (learned(), Nat64Table::default());
    let mut failures = Vec::new();
    for (row, want_with, want_without) in LEARNED_ROWS {
        let addr = ip(row);
        for (table, want, which) in [
            (&with, want_with, "learned"),
            (&without, want_without, "none"),
        ] {
            let got = forbidden_with(addr, table);
            if let Err(e) = judge(*want, got.as_deref()) {
                failures.push(format!("{row} ({which}): {e}"));
            }
            let guard = MetadataGuard {
                nat64: table.clone(),
            };
            match policy_reason(guard.check(addr)) {
                Ok(p) if p == got => {}
                Ok(p) => failures.push(format!("{row} ({which}): policy {p:?} vs {got:?}")),
                Err(e) => failures.push(format!("{row} ({which}): {e}")),
            }
        }
    }
    report("learned-prefix", LEARNED_ROWS.len(), failures);
}

/// What `ipv4only.arpa` may answer, and the prefixes it teaches: a hostile or broken DNS64 can
/// teach nothing that overlaps a special range, so discovery cannot relabel IPv4-mapped,
/// link-local or AWS-local space as NAT64.
#[test]
fn discovery_learns_no_special_range() {
    #[rustfmt::skip]
    let rows: &[(&[&str], &[&str])] = &[
        (&["2001:db8:64::c000:aa", "2001:db8:64::c000:ab"], &["2001:db8:64::/96"]),
        (&["64:ff9b::192.0.0.170"], &["64:ff9b::/96"]),
        (&["2001:db8:1:2:c0:0:aa00:0"], &["2001:db8:1:2::/64"]),
        (&["::ffff:192.0.0.170"], &[]),
        (&["::192.0.0.170"], &[]),
        (&["fe80::c000:aa"], &[]),
        (&["fd00:ec2::c000:aa"], &[]),
        (&["ff02::c000:aa"], &[]),
        (&["2002:c000:aa::"], &[]),
        (&["2001:db8:64::c633:640a"], &[]),
    ];
    let mut failures = Vec::new();
    for (answers, want) in rows {
        let addrs: Vec<Ipv6Addr> = answers.iter().map(|a| a.parse().unwrap()).collect();
        let got: Vec<String> = nat64::prefixes_from_answers(&addrs)
            .iter()
            .map(ToString::to_string)
            .collect();
        if got != *want {
            failures.push(format!("{answers:?}: learned {got:?}, want {want:?}"));
        }
    }
    report("discovery", rows.len(), failures);
}

/// `/probe` literals under a learned prefix must be allowed twice: as the IPv6 address and as
/// the IPv4 address the translator forwards to.
#[test]
fn a_synthesized_literal_needs_its_ipv4_address_allowed_too() {
    let only_v6 = Allowlist::parse(&["2001:db8::/32".to_string()]).unwrap();
    let both =
        Allowlist::parse(&["2001:db8::/32".to_string(), "198.51.100.0/24".to_string()]).unwrap();
    let policy = |allow: &Allowlist| AdhocPolicy {
        allow: allow.clone(),
        guard: MetadataGuard { nat64: learned() },
    };
    #[rustfmt::skip]
    let rows: &[(&Allowlist, &str, Want)] = &[
        (&only_v6, "[2001:db8:64::c633:640a]", Forbidden("is NAT64 (2001:db8:64::/96) for 198.51.100.10, which is not in probe.allow")),
        (&both, "[2001:db8:64::c633:640a]", Allowed),
        (&only_v6, "[2001:db8:1:2:c6:3364:a00:0]", Forbidden("for 198.51.100.10, which is not in probe.allow")),
        (&only_v6, "[2001:db8:100::10]", Allowed),
        (&both, "[2001:db8:64::a9fe:a9fe]", Forbidden("the instance metadata service")),
    ];
    let mut failures = Vec::new();
    for (allow, row, want) in rows {
        let host = Host::parse(row);
        match policy_reason(policy(allow).check_host(&host)) {
            Ok(got) => {
                if let Err(e) = judge(*want, got.as_deref()) {
                    failures.push(format!("{row}: {e}"));
                }
            }
            Err(e) => failures.push(format!("{row}: {e}")),
        }
    }
    report("allowlist", rows.len(), failures);
}

#[test]
fn via_assertions_match_paths() {
    let t = learned();
    let nat = t.classify("2001:db8:64::c633:640a".parse().unwrap());
    let native = t.classify("2001:db8:100::10".parse().unwrap());
    assert!(ViaKind::Nat64.matches(nat) && !ViaKind::Native.matches(nat));
    assert!(ViaKind::Native.matches(native) && !ViaKind::Nat64.matches(native));
}
