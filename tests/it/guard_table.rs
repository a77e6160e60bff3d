//! The metadata guard and the `probe.allow` list as pure tables: no root, no socket, no peer.
//! `ssrf_netns` proves the same refusals end to end in a namespace (root only); these rows run
//! everywhere and name the exact input that broke.
//!
//! Each row is an input and what the guard must answer. Every row is checked and every wrong
//! one is reported, not just the first. Rows marked `GAP` pin what the guard does today where it
//! is arguably wrong (see the comment on each): fixing the guard flips them on purpose.

use std::net::IpAddr;

use dualprobe::model::failure::FailureReason;
use dualprobe::model::target::Host;
use dualprobe::net::guard::AddressPolicy;
use dualprobe::net::guard::{AdhocPolicy, Allowlist, MetadataGuard, forbidden};

/// What the guard must answer for one input.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Want {
    /// May be probed.
    Allowed,
    /// Refused; the reason contains this text.
    Forbidden(&'static str),
}
pub(crate) use Want::{Allowed, Forbidden};

/// Addresses as the resolver returns them, and the guard's verdict.
#[rustfmt::skip]
const ADDRESSES: &[(&str, Want)] = &[
    // IPv4: link-local (IMDS, ECS), 0.0.0.0/8, multicast, broadcast, and their edges.
    ("169.254.169.254", Forbidden("the instance metadata service")),
    ("169.254.170.2", Forbidden("the ECS task metadata and credentials")),
    ("169.254.0.1", Forbidden("link-local (169.254.0.0/16)")),
    ("169.254.255.255", Forbidden("link-local (169.254.0.0/16)")),
    ("169.253.255.255", Allowed),
    ("169.255.0.0", Allowed),
    ("0.0.0.0", Forbidden("in 0.0.0.0/8")),
    ("0.1.2.3", Forbidden("in 0.0.0.0/8")),
    ("0.255.255.255", Forbidden("in 0.0.0.0/8")),
    ("224.0.0.1", Forbidden("multicast")),
    ("239.255.255.255", Forbidden("multicast")),
    ("223.255.255.255", Allowed),
    ("255.255.255.255", Forbidden("broadcast")),
    // Loopback and private addresses are legitimate targets (sidecars, VPC endpoints).
    ("127.0.0.1", Allowed),
    ("10.0.130.5", Allowed),
    ("192.0.2.1", Allowed),
    ("203.0.113.9", Allowed),
    // IPv6: unspecified, link-local, AWS's instance-local fd00:ec2::/32, multicast.
    ("::", Forbidden("unspecified (::)")),
    ("::1", Allowed),
    ("fe80::1", Forbidden("link-local (fe80::/10)")),
    ("febf:ffff::1", Forbidden("link-local (fe80::/10)")),
    ("fec0::1", Allowed),
    ("fd00:ec2::254", Forbidden("the instance metadata service over IPv6")),
    ("fd00:ec2::253", Forbidden("fd00:ec2::/32")),
    ("fd00:ec2:ffff:ffff::1", Forbidden("fd00:ec2::/32")),
    ("fd00:ec3::254", Allowed),
    ("fd00:ec1::254", Allowed),
    ("ff02::1", Forbidden("multicast")),
    ("2001:db8::1", Allowed),
    // IPv4-mapped ::ffff:a.b.c.d: IPv4 on the wire from a dual-stack socket.
    ("::ffff:169.254.169.254", Forbidden("IPv4-mapped 169.254.169.254")),
    ("::ffff:a9fe:aa02", Forbidden("IPv4-mapped 169.254.170.2")),
    ("::ffff:169.254.1.1", Forbidden("link-local (169.254.0.0/16)")),
    ("::ffff:0.0.0.0", Forbidden("IPv4-mapped 0.0.0.0, which is in 0.0.0.0/8")),
    ("::ffff:224.0.0.1", Forbidden("multicast")),
    ("::ffff:255.255.255.255", Forbidden("broadcast")),
    ("::ffff:127.0.0.1", Allowed),
    ("::ffff:192.0.2.1", Allowed),
    // IPv4-compatible ::a.b.c.d (deprecated; Linux's sit0 still routes ::/96 over IPv4).
    ("::169.254.169.254", Forbidden("IPv4-compatible 169.254.169.254")),
    ("::a9fe:a9fe", Forbidden("IPv4-compatible 169.254.169.254")),
    ("::169.254.170.2", Forbidden("IPv4-compatible 169.254.170.2")),
    ("::0.0.0.2", Forbidden("IPv4-compatible 0.0.0.2, which is in 0.0.0.0/8")),
    ("::192.0.2.1", Allowed),
    // IPv4-translated ::ffff:0:a.b.c.d (SIIT).
    ("::ffff:0:169.254.169.254", Forbidden("IPv4-translated (::ffff:0:0/96) for 169.254.169.254")),
    ("::ffff:0:192.0.2.1", Allowed),
    // NAT64, the well-known prefix 64:ff9b::/96 (what AWS's DNS64 answers).
    ("64:ff9b::169.254.169.254", Forbidden("NAT64 (64:ff9b::/96) for 169.254.169.254")),
    ("64:ff9b::a9fe:a9fe", Forbidden("NAT64 (64:ff9b::/96) for 169.254.169.254")),
    ("64:ff9b::169.254.170.2", Forbidden("the ECS task metadata")),
    ("64:ff9b::0.0.0.0", Forbidden("in 0.0.0.0/8")),
    ("64:ff9b::192.0.2.1", Allowed),
    // Local-use NAT64 64:ff9b:1::/48, read under every RFC 6052 length from /48 up, since a
    // network carves its prefix out of it at any of them: the /96 layout...
    ("64:ff9b:1::a9fe:a9fe", Forbidden("local-use NAT64 (64:ff9b:1::/48) for 169.254.169.254")),
    ("64:ff9b:1:ffff::169.254.169.254", Forbidden("local-use NAT64")),
    ("64:ff9b:1::192.0.2.1", Allowed),
    ("64:ff9b:2::a9fe:a9fe", Allowed),
    // ...and RFC 6052's /48 layout (bits 48-63 and 72-87), with or without suffix bits (a
    // translator may ignore them).
    // (Its /64 reading, 169.254.0.x, is link-local too: the first forbidden reading is named.)
    ("64:ff9b:1:a9fe:a9:fe00::", Forbidden("local-use NAT64 (64:ff9b:1::/48) for 169.254.")),
    ("64:ff9b:1:a9fe:a9:fe00:c00:1", Forbidden("local-use NAT64 (64:ff9b:1::/48) for 169.254.")),
    ("64:ff9b:1:a9fe:aa:200::", Forbidden("for 169.254.170.2, which is the ECS task metadata")),
    ("64:ff9b:1:c000:2:100::", Allowed),
    // 6to4 2002:V4ADDR::/48.
    ("2002:a9fe:a9fe::1", Forbidden("6to4 (2002::/16) for 169.254.169.254")),
    ("2002:a9fe:aa02::", Forbidden("6to4 (2002::/16) for 169.254.170.2")),
    ("2002::1", Forbidden("6to4 (2002::/16) for 0.0.0.0")),
    ("2002:c000:201::1", Allowed),
    // Teredo 2001:0::/32 is not decoded: its server and (obfuscated) client IPv4 addresses are
    // reached through a remote relay, never on this host's link. Both rows embed 169.254.169.254.
    ("2001:0:a9fe:a9fe::1", Allowed),
    ("2001:0:c000:201:0:0:5601:5601", Allowed),
];

/// Hosts as `/probe`, config and redirects write them: `Host::parse` turns every disguised IPv4
/// form into the address it means (`None`: a name), so the guard sees a literal, never a name.
#[rustfmt::skip]
const HOSTS: &[(&str, Option<&str>, Want)] = &[
    ("169.254.169.254", Some("169.254.169.254"), Forbidden("instance metadata")),
    ("2852039166", Some("169.254.169.254"), Forbidden("instance metadata")),
    ("0xa9fea9fe", Some("169.254.169.254"), Forbidden("instance metadata")),
    ("0XA9FEA9FE", Some("169.254.169.254"), Forbidden("instance metadata")),
    ("0251.0376.0251.0376", Some("169.254.169.254"), Forbidden("instance metadata")),
    ("0251.254.169.254", Some("169.254.169.254"), Forbidden("instance metadata")),
    ("169.254.43518", Some("169.254.169.254"), Forbidden("instance metadata")),
    ("169.16689662", Some("169.254.169.254"), Forbidden("instance metadata")),
    ("0xa9.0xfe.0xa9.0xfe", Some("169.254.169.254"), Forbidden("instance metadata")),
    ("169.254.169.254.", Some("169.254.169.254"), Forbidden("instance metadata")),
    ("0xa9fea9fe.", Some("169.254.169.254"), Forbidden("instance metadata")),
    (" 169.254.169.254 ", Some("169.254.169.254"), Forbidden("instance metadata")),
    ("%31%36%39.254.169.254", Some("169.254.169.254"), Forbidden("instance metadata")),
    ("2852039170", Some("169.254.170.2"), Forbidden("ECS task metadata")),
    ("0", Some("0.0.0.0"), Forbidden("in 0.0.0.0/8")),
    ("0x0", Some("0.0.0.0"), Forbidden("in 0.0.0.0/8")),
    ("[::ffff:169.254.169.254]", Some("::ffff:169.254.169.254"), Forbidden("IPv4-mapped")),
    ("[::ffff:a9fe:a9fe]", Some("::ffff:169.254.169.254"), Forbidden("IPv4-mapped")),
    ("[0:0:0:0:0:ffff:a9fe:a9fe]", Some("::ffff:169.254.169.254"), Forbidden("IPv4-mapped")),
    ("::ffff:169.254.169.254", Some("::ffff:169.254.169.254"), Forbidden("IPv4-mapped")),
    ("[::a9fe:a9fe]", Some("::169.254.169.254"), Forbidden("IPv4-compatible")),
    ("[64:ff9b::169.254.169.254]", Some("64:ff9b::a9fe:a9fe"), Forbidden("NAT64")),
    ("[2002:a9fe:a9fe::]", Some("2002:a9fe:a9fe::"), Forbidden("6to4")),
    ("[fd00:ec2::254]", Some("fd00:ec2::254"), Forbidden("metadata service over IPv6")),
    ("[FD00:EC2::254]", Some("fd00:ec2::254"), Forbidden("metadata service over IPv6")),
    ("fd00:ec2:0:0:0:0:0:254", Some("fd00:ec2::254"), Forbidden("metadata service over IPv6")),
    ("[::]", Some("::"), Forbidden("unspecified")),
    ("[fe80::1]", Some("fe80::1"), Forbidden("link-local")),
    // Disguised literals of allowed addresses are still literals.
    ("2130706433", Some("127.0.0.1"), Allowed),
    ("0x7f.1", Some("127.0.0.1"), Allowed),
    ("[::1]", Some("::1"), Allowed),
    // Names pass the guard: their addresses are checked once resolved.
    ("imds.example", None, Allowed),
    ("169.254.169.254.example", None, Allowed),
];

/// The allowlist every `ALLOWLIST` row is judged against.
const ALLOW: &[&str] = &[
    "*.example.com",
    "exact.test",
    "192.0.2.0/24",
    "198.51.100.7",
    "203.0.113.9/24",
    "2001:db8:1::/48",
    "2001:db8:2::5",
];

/// Hosts and whether [`ALLOW`] lets them be asked for.
const ALLOWLIST: &[(&str, bool)] = &[
    // A leading wildcard: any name under the suffix, at any depth, never the suffix itself.
    ("a.example.com", true),
    ("deep.a.example.com", true),
    ("A.EXAMPLE.COM", true),
    ("a.example.com.", true),
    ("example.com", false),
    ("badexample.com", false),
    ("a.example.com.evil.test", false),
    ("example.com.evil", false),
    // An exact name: only itself (case and a trailing dot aside).
    ("exact.test", true),
    ("EXACT.TEST", true),
    ("exact.test.", true),
    ("sub.exact.test", false),
    ("exact.tes", false),
    ("inexact.test", false),
    // CIDRs and single addresses; a CIDR written with host bits is truncated.
    ("192.0.2.1", true),
    ("192.0.2.255", true),
    ("192.0.3.1", false),
    ("198.51.100.7", true),
    ("198.51.100.8", false),
    ("203.0.113.200", true),
    ("[2001:db8:1::1]", true),
    ("2001:db8:1:ffff::1", true),
    ("[2001:db8:2::5]", true),
    ("[2001:db8:2::6]", false),
    ("[2001:db8:3::1]", false),
    // Disguised literals are matched as the address they mean.
    ("3221225985", true),
    ("0xc0000201", true),
    ("3221226241", false),
    // IPv4-mapped literals are matched as their IPv4 address.
    ("[::ffff:192.0.2.1]", true),
    ("[::ffff:192.0.3.1]", false),
    // Names never match CIDRs and literals never match name patterns.
    ("192-0-2-1.example.org", false),
    ("[2001:db8::1]", false),
];

pub(crate) fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("bad row `{s}`: {e}"))
}

/// `Ok` when `got` (the guard's reason, if any) is what `want` says.
pub(crate) fn judge(want: Want, got: Option<&str>) -> Result<(), String> {
    match (want, got) {
        (Allowed, None) => Ok(()),
        (Allowed, Some(why)) => Err(format!("want allowed, refused: {why}")),
        (Forbidden(what), None) => Err(format!("want refused ({what}), allowed")),
        (Forbidden(what), Some(why)) if why.contains(what) => Ok(()),
        (Forbidden(what), Some(why)) => Err(format!("reason lacks `{what}`: {why}")),
    }
}

/// The guard as `/probe` applies it, one `Result` turned into the reason text.
pub(crate) fn policy_reason(
    result: Result<(), dualprobe::model::failure::Failure>,
) -> Result<Option<String>, String> {
    match result {
        Ok(()) => Ok(None),
        Err(f) if f.reason != FailureReason::Forbidden => {
            Err(format!("refused with reason {:?}, not forbidden", f.reason))
        }
        Err(f) => match f.detail.strip_prefix("refused: ") {
            Some(why) => Ok(Some(why.to_string())),
            None => Err(format!(
                "detail does not start with `refused: `: {}",
                f.detail
            )),
        },
    }
}

/// Panics listing every failed row.
pub(crate) fn report(table: &str, rows: usize, failures: Vec<String>) {
    assert!(
        failures.is_empty(),
        "{} of {rows} {table} rows wrong:\n  {}",
        failures.len(),
        failures.join("\n  ")
    );
}

#[test]
fn forbidden_judges_every_address_form() {
    let mut failures = Vec::new();
    for (row, want) in ADDRESSES {
        let addr = ip(row);
        let got = forbidden(addr);
        // The reason names the address as written by `Display`, so logs are unambiguous.
        if let Some(why) = &got
            && !why.starts_with(&format!("{addr} is "))
        {
            failures.push(format!(
                "{row}: reason does not start with the address: {why}"
            ));
        }
        if let Err(e) = judge(*want, got.as_deref()) {
            failures.push(format!("{row}: {e}"));
        }
        // The policy `/probe` installs says the same, as a `forbidden` failure.
        match policy_reason(MetadataGuard::default().check(addr)) {
            Ok(via_policy) if via_policy == got => {}
            Ok(via_policy) => failures.push(format!(
                "{row}: MetadataGuard says {via_policy:?}, forbidden() says {got:?}"
            )),
            Err(e) => failures.push(format!("{row}: MetadataGuard: {e}")),
        }
    }
    report("address", ADDRESSES.len(), failures);
}

#[test]
fn disguised_literals_are_parsed_as_their_address_and_guarded() {
    let mut failures = Vec::new();
    for (row, literal, want) in HOSTS {
        let host = Host::parse(row);
        match (literal, &host) {
            (Some(want_ip), Host::Ip(got)) if *got == ip(want_ip) => {}
            (None, Host::Name(_)) => {}
            (Some(want_ip), other) => {
                failures.push(format!(
                    "`{row}`: parsed as {other:?}, want the literal {want_ip}"
                ));
                continue;
            }
            (None, other) => {
                failures.push(format!("`{row}`: parsed as {other:?}, want a name"));
                continue;
            }
        }
        match policy_reason(MetadataGuard::default().check_host(&host)) {
            Ok(got) => {
                if let Err(e) = judge(*want, got.as_deref()) {
                    failures.push(format!("`{row}` ({host}): {e}"));
                }
            }
            Err(e) => failures.push(format!("`{row}`: {e}")),
        }
    }
    report("host", HOSTS.len(), failures);
}

#[test]
fn allowlist_matches_names_wildcards_and_cidrs() {
    let entries: Vec<String> = ALLOW.iter().map(|e| e.to_string()).collect();
    let allow = Allowlist::parse(&entries).expect("the test allowlist parses");
    let mut failures = Vec::new();
    for (row, want) in ALLOWLIST {
        let host = Host::parse(row);
        if allow.allows(&host) != *want {
            failures.push(format!(
                "`{row}` ({host:?}): want {}",
                if *want { "allowed" } else { "not allowed" }
            ));
        }
    }
    report("allowlist", ALLOWLIST.len(), failures);
    // An empty list allows nothing.
    let empty = Allowlist::parse(&[]).unwrap();
    assert!(empty.is_empty() && !allow.is_empty());
    assert!(!empty.allows(&Host::parse("a.example.com")));
    assert!(!empty.allows(&Host::parse("192.0.2.1")));
}

#[test]
fn allowlist_entries_are_normalised_and_ipv4_mapped_literals_need_an_ipv4_entry() {
    let parse = |e: &[&str]| {
        Allowlist::parse(&e.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    };
    // Entries are trimmed, lowercased and lose a trailing dot.
    let a = parse(&[" *.Example.COM. ", "Exact.Test."]);
    assert!(a.allows(&Host::parse("x.example.com")));
    assert!(a.allows(&Host::parse("exact.test")));
    // `::/0` does not let an IPv4-mapped literal past: it is an IPv4 destination.
    let v6_only = parse(&["::/0"]);
    assert!(v6_only.allows(&Host::parse("[2001:db8::1]")));
    assert!(!v6_only.allows(&Host::parse("[::ffff:192.0.2.1]")));
    let v4_only = parse(&["0.0.0.0/0"]);
    assert!(v4_only.allows(&Host::parse("[::ffff:192.0.2.1]")));
    assert!(!v4_only.allows(&Host::parse("[2001:db8::1]")));
    // The other embedded forms are matched as IPv6: on the wire they are IPv6 packets to a
    // translator or relay (the guard alone refuses the dangerous ones).
    for h in ["[::192.0.2.1]", "[64:ff9b::192.0.2.1]", "[2002:c000:201::]"] {
        assert!(v6_only.allows(&Host::parse(h)), "{h}");
        assert!(!v4_only.allows(&Host::parse(h)), "{h}");
    }
}

#[test]
fn allowlist_rejects_entries_that_are_neither_patterns_nor_cidrs() {
    let cases: &[(&[&str], usize, &str)] = &[
        (&["*"], 0, "would allow every host"),
        (&["ok.test", "*."], 1, "a wildcard may only lead"),
        (&["*.a.*.test"], 0, "a wildcard may only lead"),
        (&["a.*.test"], 0, "is not a host pattern"),
        (&["**.test"], 0, "is not a host pattern"),
        (&["ok.test", "192.0.2.0/24", ""], 2, "is not a host pattern"),
        (&["   "], 0, "is not a host pattern"),
        (&["example.com/24"], 0, "is not a host pattern"),
        (&["192.0.2.0/33"], 0, "is not a host pattern"),
        (&["fe80::1%eth0"], 0, "is not a host pattern"),
        (&["a b.test"], 0, "is not a host pattern"),
    ];
    let mut failures = Vec::new();
    for (entries, index, message) in cases {
        let owned: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        match Allowlist::parse(&owned) {
            Err((i, msg)) if i == *index && msg.contains(message) => {}
            other => failures.push(format!(
                "{entries:?}: want ({index}, ..{message}..), got {other:?}"
            )),
        }
    }
    report("allowlist entry", cases.len(), failures);
}

#[test]
fn adhoc_policy_applies_the_guard_before_the_allowlist() {
    let entries: Vec<String> = ["169.254.0.0/16", "fd00::/8", "192.0.2.0/24", "*.test"]
        .iter()
        .map(|e| e.to_string())
        .collect();
    let policy = AdhocPolicy {
        allow: Allowlist::parse(&entries).unwrap(),
        guard: MetadataGuard::default(),
    };
    #[rustfmt::skip]
    let rows: &[(&str, Want)] = &[
        // Listed, and still refused: no allowlist entry opens the metadata addresses.
        ("169.254.169.254", Forbidden("the instance metadata service")),
        ("[fd00:ec2::254]", Forbidden("the instance metadata service over IPv6")),
        ("2852039166", Forbidden("the instance metadata service")),
        // Not listed.
        ("192.0.3.1", Forbidden("192.0.3.1 is not in probe.allow")),
        ("other.example", Forbidden("other.example is not in probe.allow")),
        // Listed and harmless.
        ("192.0.2.1", Allowed),
        ("a.test", Allowed),
    ];
    let mut failures = Vec::new();
    for (row, want) in rows {
        match policy_reason(policy.check_host(&Host::parse(row))) {
            Ok(got) => {
                if let Err(e) = judge(*want, got.as_deref()) {
                    failures.push(format!("`{row}`: {e}"));
                }
            }
            Err(e) => failures.push(format!("`{row}`: {e}")),
        }
    }
    report("ad-hoc policy", rows.len(), failures);
    // Resolved addresses meet the guard only: a name's answers are not held to `probe.allow`.
    assert!(policy.check(ip("198.51.100.1")).is_ok());
    assert!(policy.check(ip("169.254.169.254")).is_err());
}

/// Names with characters no host name has are refused before any allowlist pattern sees them
/// (`169.254.169.254?.wild.rt.test` once matched `*.rt.test`).
#[test]
fn adhoc_names_with_url_syntax_are_refused() {
    use dualprobe::serve::adhoc::split_target;
    for bad in [
        "169.254.169.254?.wild.rt.test",
        "169.254.169.254#.wild.rt.test",
        "a?b.rt.test",
        "x.rt.test#frag",
        "evil%2e.rt.test",
        "a..rt.test",
        "-\u{7}.rt.test",
    ] {
        let e = split_target(bad).err();
        assert!(
            e.as_ref()
                .is_some_and(|e| e.0.contains("is not a host name")),
            "{bad}: {e:?}"
        );
    }
    for good in [
        "s3.dualstack.us-east-1.amazonaws.com",
        "_svc.rt.test",
        "a-b.rt.test.",
    ] {
        assert!(split_target(good).is_ok(), "{good}");
    }
}
