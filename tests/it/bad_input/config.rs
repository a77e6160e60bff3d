//! Config rows, top level and targets: `Config::from_yaml(text, "c.yml", None)` must fail with
//! exactly these `FILE:LINE: field: problem` lines. The sections (aws, http, tls, private_dns,
//! discovery, probe, modules) are in `config_sections.rs`.

use dualprobe::config::Config;

use super::{Row, check_table, row};

/// The error text of loading `yaml`, or a marker when it loads.
pub fn load_error(yaml: &str) -> String {
    match Config::from_yaml(yaml, "c.yml", None) {
        Ok(_) => "<loaded without error>".to_string(),
        Err(e) => e.to_string(),
    }
}

/// Every check name, as the unknown-check message lists them.
pub const KNOWN_CHECKS: &str =
    "dns, private_dns, happy_eyeballs, icmp, tcp, tls, http, pmtu, s3, ec2, trace";

/// `targets:` with one target `a` on `a.test`, then `extra` (lines at the target's indent).
pub fn target(extra: &str) -> String {
    format!("targets:\n  - name: a\n    host: a.test\n{extra}")
}

// Not a config error, by design: a guarded IP literal (`host: 169.254.169.254`) without
// `allow_metadata_address` loads, and its checks fail `forbidden` at run time
// (`ssrf_netns/scheduled.rs` holds the unflagged `ecs-agent-unflagged` target to that).

fn rows() -> Vec<Row> {
    let long_name = format!("{}test", "abcdefghi.".repeat(25));
    let long_label = format!("{}.test", "a".repeat(64));
    vec![
        row("empty document", "  \n", "c.yml: the document is empty"),
        row(
            "listen not an address",
            "listen: localhost:9469\n",
            "c.yml:1: listen: `localhost:9469` is not an address like [::]:9469 or 0.0.0.0:9469",
        ),
        row(
            "interval under 1s",
            "interval: 500ms\ntimeout: 100ms\n",
            "c.yml:1: interval: `500ms` is shorter than the 1s minimum",
        ),
        row(
            "interval zero",
            "interval: 0s\n",
            "c.yml:1: interval: must be greater than zero",
        ),
        row(
            "timeout over 7d",
            "interval: 8d\ntimeout: 8d\n",
            "c.yml:1: interval: `8d` is longer than 7d\nc.yml:2: timeout: `8d` is longer than 7d",
        ),
        row(
            "timeout not a duration",
            "timeout: soon\n",
            "c.yml:1: timeout: `soon` is not a duration (expected number at 0); write e.g. 15s, 500ms, 1m",
        ),
        row(
            "timeout equal to interval",
            "interval: 10s\ntimeout: 10s\n",
            "c.yml:2: timeout: must be less than interval (10s >= 10s)",
        ),
        row(
            "no families",
            "families: []\n",
            "c.yml:1: families: must name at least one of ipv4, ipv6",
        ),
        row(
            "concurrency zero",
            "concurrency: 0\n",
            "c.yml:1: concurrency: must be at least 1",
        ),
        row(
            "concurrency too big",
            "concurrency: 65537\n",
            "c.yml:1: concurrency: `65537` is more than the 65536 allowed",
        ),
        row(
            "starts_per_second zero",
            "starts_per_second: 0\n",
            "c.yml:1: starts_per_second: must be at least 1",
        ),
        row(
            "starts_per_second too big",
            "starts_per_second: 10001\n",
            "c.yml:1: starts_per_second: `10001` is more than the 10000 allowed",
        ),
        row(
            "starts_per_second not a whole number",
            "starts_per_second: 2.5\n",
            "c.yml:1: starts_per_second: `2.5` is not a whole number from 0 to 4294967295",
        ),
        row(
            "nameserver not an address",
            "resolver:\n  nameservers: [\"127.0.0.1:53\", \"dns.test\"]\n",
            "c.yml:2: resolver.nameservers[1]: `dns.test` is not an address like 127.0.0.1:53 or [::1]:5353",
        ),
        row(
            "empty target name",
            "targets:\n  - name: \" \"\n    host: a.test\n",
            "c.yml:2: targets[0].name: must not be empty",
        ),
        row(
            "duplicate target names",
            format!("{}  - name: a\n    host: b.test\n", target("")),
            "c.yml:4: targets[1].name: `a` is used by an earlier target; names must be unique",
        ),
        row(
            "host missing",
            "targets:\n  - name: a\n",
            "c.yml:2: targets[0].host: is required",
        ),
        row(
            "host empty",
            "targets:\n  - name: a\n    host: \"\"\n",
            "c.yml:3: targets[0].host: must not be empty",
        ),
        row(
            "host with a port",
            "targets:\n  - name: a\n    host: a.test:443\n",
            "c.yml:3: targets[0].host: `a.test:443` is not a host name or IP address (put the port in `port:`)",
        ),
        // Fixed: this and the next row said "(put the port in `port:`)" for any `/` or space.
        row(
            "host is a URL",
            "targets:\n  - name: a\n    host: https://a.test/x\n",
            "c.yml:3: targets[0].host: `https://a.test/x` is not a host name or IP address (a host, not a URL: the path goes in `http.path`, the port in `port:`)",
        ),
        row(
            "host with a space",
            "targets:\n  - name: a\n    host: a b.test\n",
            "c.yml:3: targets[0].host: `a b.test` is not a host name (` ` is not allowed in one)",
        ),
        row(
            "host with a question mark",
            "targets:\n  - name: a\n    host: 169.254.169.254?.x.test\n",
            "c.yml:3: targets[0].host: `169.254.169.254?.x.test` is not a host name (`?` is not allowed in one)",
        ),
        row(
            "host too long",
            format!("targets:\n  - name: a\n    host: {long_name}\n"),
            format!(
                "c.yml:3: targets[0].host: `{long_name}` is not a host name (1 to 253 characters)"
            ),
        ),
        row(
            "host label too long",
            format!("targets:\n  - name: a\n    host: {long_label}\n"),
            format!(
                "c.yml:3: targets[0].host: `{long_label}` is not a host name (each label 1 to 63 characters)"
            ),
        ),
        row(
            "port zero",
            target("    port: 0\n"),
            "c.yml:4: targets[0].port: must be 1-65535",
        ),
        row(
            "no checks",
            target("    checks: []\n"),
            "c.yml:4: targets[0].checks: must name at least one check",
        ),
        row(
            "unknown check",
            target("    checks: [dns, ping]\n"),
            format!(
                "c.yml:4: targets[0].checks[1]: unknown check `ping`; known checks: {KNOWN_CHECKS}"
            ),
        ),
        row(
            "check listed twice",
            target("    checks: [tcp, dns, tcp]\n"),
            "c.yml:4: targets[0].checks[2]: `tcp` is listed twice",
        ),
        row(
            "target interval under 1s",
            target("    interval: 999ms\n    timeout: 100ms\n"),
            "c.yml:4: targets[0].interval: `999ms` is shorter than the 1s minimum",
        ),
        row(
            "target timeout above its interval",
            target("    interval: 2s\n    timeout: 3s\n"),
            "c.yml:5: targets[0].timeout: must be less than interval (3s >= 2s)",
        ),
        row(
            "target timeout above the default interval",
            target("    timeout: 20s\n"),
            "c.yml:4: targets[0].timeout: must be less than interval (20s >= 15s)",
        ),
        row(
            "target families empty",
            target("    families: []\n"),
            "c.yml:4: targets[0].families: must name at least one of ipv4, ipv6",
        ),
        row(
            "IPv4 literal probed over IPv6 only",
            "targets:\n  - name: a\n    host: 192.0.2.1\n    families: [ipv6]\n",
            "c.yml:4: targets[0].families: 192.0.2.1 is an ipv4 address but that family is not probed",
        ),
        row(
            "IPv6 literal with IPv4 the only default family",
            "families: [ipv4]\ntargets:\n  - name: a\n    host: \"[2001:db8::1]\"\n",
            "c.yml:3: targets[0].families: 2001:db8::1 is an ipv6 address but that family is not probed",
        ),
        row(
            "s3 check without aws",
            target("    checks: [dns, tcp, s3]\n"),
            "c.yml:2: targets[0].checks: s3: needs an `aws: { service: s3, region: ... }` block",
        ),
        // NAT64 (issue 13): prefixes RFC 6052 allows, outside the special ranges; `via` only
        // where it can mean something.
        row(
            "nat64 prefix of a length RFC 6052 does not have",
            "resolver:\n  nat64_prefixes: [\"2001:db8:64::/33\"]\n",
            "c.yml:2: resolver.nat64_prefixes[0]: `2001:db8:64::/33` has length /33; a NAT64 prefix is /32, /40, /48, /56, /64 or /96 (RFC 6052)",
        ),
        row(
            "nat64 prefix with host bits",
            "resolver:\n  nat64_prefixes: [\"2001:db8:64::1/96\"]\n",
            "c.yml:2: resolver.nat64_prefixes[0]: `2001:db8:64::1/96` has bits set after its length (did you mean 2001:db8:64::/96?)",
        ),
        row(
            "nat64 prefix in a special range",
            "resolver:\n  nat64_prefixes:\n    - 64:ff9b::/96\n    - fd00:ec2::/96\n",
            "c.yml:4: resolver.nat64_prefixes[1]: `fd00:ec2::/96` lies in fd00:ec2::/32 (AWS instance-local services), which cannot hold a NAT64 prefix",
        ),
        row(
            "nat64 prefix in IPv4-mapped space",
            "resolver:\n  nat64_prefixes: [\"::ffff:0:0/96\"]\n",
            "c.yml:2: resolver.nat64_prefixes[0]: `::ffff:0:0/96` lies in ::/80 (IPv4-compatible, IPv4-mapped and IPv4-translated addresses), which cannot hold a NAT64 prefix",
        ),
        row(
            "nat64 prefix not a prefix",
            "resolver:\n  nat64_prefixes: [\"64:ff9b::\"]\n",
            "c.yml:2: resolver.nat64_prefixes[0]: `64:ff9b::` is not an IPv6 prefix like 64:ff9b::/96",
        ),
        row(
            "nat64 prefix twice",
            "resolver:\n  nat64_prefixes: [\"2001:db8:64::/96\", \"2001:db8:64::/96\"]\n",
            "c.yml:2: resolver.nat64_prefixes[1]: `2001:db8:64::/96` is listed twice",
        ),
        row(
            "nat64 refresh under 1s",
            "resolver:\n  nat64_discovery: true\n  nat64_refresh: 500ms\n",
            "c.yml:3: resolver.nat64_refresh: `500ms` is shorter than the 1s minimum",
        ),
        row(
            "expect via for ipv4",
            target("    expect: {via: {ipv4: nat64}}\n"),
            "c.yml:4: targets[0].expect.via.ipv4: IPv4 addresses are never synthesized: `via` applies to ipv6 only",
        ),
        row(
            "expect via on an unreachable family",
            target("    expect: {ipv6: unreachable, via: {ipv6: native}}\n"),
            "c.yml:4: targets[0].expect.via.ipv6: asserts the path of a reachable target, but expect.ipv6 is `unreachable`",
        ),
        row(
            "expect via on a target not probed over ipv6",
            target("    families: [ipv4]\n    expect: {via: {ipv6: native}}\n"),
            "c.yml:5: targets[0].expect.via.ipv6: the target is not probed over ipv6 (families)",
        ),
        row(
            "expect via of an unknown path",
            target("    expect: {via: {ipv6: satellite}}\n"),
            "c.yml:4: targets[0].expect.via.ipv6: `satellite` is not one of native, nat64",
        ),
    ]
}

#[test]
fn config_rows_have_their_exact_errors() {
    let rows = rows();
    assert!(rows.len() >= 20, "{} rows", rows.len());
    check_table("config", &rows, |r| load_error(&r.input));
}
