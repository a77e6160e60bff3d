//! `/probe` rows: the real binary, started once, asked with bad queries; each row is the query
//! (after `/probe?`, optionally a header line `Name: value` after a newline) and the exact
//! `STATUS BODY` of the answer. None of them probes anything: every one is refused before a
//! socket opens (the configured target `web` is never asked for a check).

use super::{Row, check_table, row};
use crate::agent_proc::{AgentProc, get_with};
use crate::support::closed_port;

const KNOWN_CHECKS: &str = super::config::KNOWN_CHECKS;

fn rows() -> Vec<Row> {
    let bad = |body: &str| format!("400 {body}\n");
    let refused = |body: &str| format!("403 refused: {body}\n");
    let imds = "169.254.169.254 is the instance metadata service (link-local)";
    vec![
        row("no query", "", bad("the `target` parameter is required")),
        row(
            "empty target",
            "target=",
            bad("the `target` parameter is required"),
        ),
        row(
            "blank target",
            "target=%20%20",
            bad("the `target` parameter is required"),
        ),
        row(
            "unknown module",
            "target=a.allowed.test&module=nope",
            bad("unknown module `nope`"),
        ),
        row(
            "unknown check",
            "target=a.allowed.test&check=tcp,ping",
            bad(&format!(
                "unknown check `ping`; known checks: {KNOWN_CHECKS}"
            )),
        ),
        row(
            "bad family",
            "target=a.allowed.test&family=ipv5",
            bad("family `ipv5` is not ipv4, ipv6 or both"),
        ),
        row(
            "zero timeout",
            "target=a.allowed.test&timeout=0",
            bad("timeout `0` is not a positive duration like 5s or 2.5"),
        ),
        row(
            "negative timeout",
            "target=a.allowed.test&timeout=-1s",
            bad("timeout `-1s` is not a positive duration like 5s or 2.5"),
        ),
        row(
            "NaN timeout",
            "target=a.allowed.test&timeout=NaN",
            bad("timeout `NaN` is not a positive duration like 5s or 2.5"),
        ),
        row(
            "bad scrape timeout header",
            "target=a.allowed.test\nX-Prometheus-Scrape-Timeout-Seconds: soon",
            bad("X-Prometheus-Scrape-Timeout-Seconds `soon` is not a positive number of seconds"),
        ),
        // Fixed: any value but true/1/yes was silently false (a 200 and a probe without its log).
        row(
            "debug maybe",
            "target=a.allowed.test&debug=maybe",
            bad("debug `maybe` is not true or false"),
        ),
        row(
            "user info",
            "target=user@a.allowed.test",
            bad("`user@a.allowed.test`: user info is not allowed in a target"),
        ),
        row(
            "user info in a URL",
            "target=https://user:pw@a.allowed.test/x",
            bad("`https://user:pw@a.allowed.test/x`: user info is not allowed in a target"),
        ),
        row(
            "port zero",
            "target=a.allowed.test:0",
            bad("`0` is not a port (1-65535)"),
        ),
        row(
            "port 70000",
            "target=a.allowed.test:70000",
            bad("`70000` is not a port (1-65535)"),
        ),
        row(
            "port not a number",
            "target=[::1]:https",
            bad("`https` is not a port (1-65535)"),
        ),
        row("missing bracket", "target=[::1", bad("`[::1`: missing `]`")),
        row(
            "junk after bracket",
            "target=[::1]x",
            bad("`[::1]x`: junk after `]`"),
        ),
        row(
            "no host",
            "target=https://:443/",
            bad("`https://:443/`: no host"),
        ),
        row(
            "ftp URL",
            "target=ftp://a.allowed.test",
            bad("`ftp://a.allowed.test`: only http:// and https:// URLs are understood"),
        ),
        row(
            "backslash in host",
            "target=a%5Cb.allowed.test",
            bad("`a\\b.allowed.test` is not a host name or IP address"),
        ),
        row(
            "empty label",
            "target=a..allowed.test",
            bad("`a..allowed.test` is not a host name (each label 1 to 63 characters)"),
        ),
        row(
            "question mark smuggled",
            "target=169.254.169.254%3F.allowed.test&check=tcp",
            bad("`169.254.169.254?.allowed.test` is not a host name (`?` is not allowed in one)"),
        ),
        row(
            "zone on a global address",
            "target=[2001:db8::1%25eth0]:80",
            bad("`2001:db8::1%eth0`: zone IDs are only meaningful for link-local addresses"),
        ),
        row(
            "dns on an IP literal",
            "target=127.0.0.1&check=dns",
            bad("an IP literal needs no dns check; ask for tcp, tls or http"),
        ),
        // Fixed: was only "::1 is an ipv6 address", not saying what is wrong with that.
        row(
            "IPv6 literal over IPv4",
            "target=[::1]:80&check=tcp&family=ipv4",
            bad("::1 is an ipv6 address, not probed over ipv4"),
        ),
        row(
            "s3 on an ad-hoc target",
            "target=a.allowed.test&check=s3",
            bad(
                "check `s3` cannot run on an ad-hoc target: needs an `aws: { service: s3, region: ... }` block",
            ),
        ),
        row(
            "configured target over a family it lacks",
            "target=web&family=ipv6",
            bad("target `web` is not probed over ipv6"),
        ),
        row(
            "module with a literal of the other family",
            "target=127.0.0.1&module=tcp_only&family=ipv6",
            bad("module `tcp_only` has nothing to probe on `127.0.0.1` for that family"),
        ),
        row("IMDS literal", "target=169.254.169.254", refused(imds)),
        row(
            "IMDS decimal",
            "target=2852039166:80&check=tcp",
            refused(imds),
        ),
        row(
            "IMDS hex",
            "target=0xa9fea9fe&module=tcp_only",
            refused(imds),
        ),
        row(
            "IMDS octal",
            "target=0251.0376.0251.0376&check=tcp",
            refused(imds),
        ),
        row(
            "IMDS IPv4-mapped",
            "target=[::ffff:169.254.169.254]&check=tcp",
            refused(
                "::ffff:169.254.169.254 is IPv4-mapped 169.254.169.254, which is the instance metadata service (link-local)",
            ),
        ),
        row(
            "IMDS over IPv6",
            "target=[fd00:ec2::254]:80&check=tcp",
            refused("fd00:ec2::254 is the instance metadata service over IPv6"),
        ),
        row(
            "ECS credentials endpoint",
            "target=http://169.254.170.2/v2/credentials",
            refused("169.254.170.2 is the ECS task metadata and credentials endpoint (link-local)"),
        ),
        row(
            "link-local with a zone",
            "target=fe80::1%25eth0&check=tcp",
            refused("fe80::1 is link-local (fe80::/10)"),
        ),
        row(
            "this host",
            "target=0.0.0.0:80&check=tcp",
            refused("0.0.0.0 is in 0.0.0.0/8 (this host)"),
        ),
        row(
            "name outside the allowlist",
            "target=other.test&check=tcp",
            refused("other.test is not in probe.allow"),
        ),
        row(
            "literal outside the allowlist",
            "target=192.0.2.1:80&check=tcp",
            refused("192.0.2.1 is not in probe.allow"),
        ),
    ]
}

/// Sends one row: `GET /probe?QUERY` with its header, if any; `STATUS BODY`.
async fn ask(agent: &AgentProc, input: &str) -> String {
    let (query, header) = match input.split_once('\n') {
        Some((q, h)) => (q, h.split_once(": ")),
        None => (input, None),
    };
    let headers: Vec<(&str, &str)> = header.into_iter().collect();
    let reply = get_with(&agent.url(&format!("/probe?{query}")), &headers).await;
    format!("{} {}", reply.status, reply.body)
}

#[tokio::test]
async fn probe_query_rows_have_their_exact_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("probe.yml");
    let closed = closed_port();
    std::fs::write(
        &cfg,
        format!(
            r#"interval: 10s
timeout: 2s
resolver:
  nameservers: ["127.0.0.1:{closed}"]
targets:
  - {{ name: web, host: 127.0.0.1, port: {closed}, checks: [tcp] }}
probe:
  allow: ["*.allowed.test", "127.0.0.0/8", "::1/128"]
  max_concurrent: 64
  rate_per_second: 1000
  burst: 1000
modules:
  tcp_only: {{ checks: [tcp], port: {closed} }}
"#
        ),
    )
    .expect("write config");
    let agent = AgentProc::start(&cfg, "info");
    let rows = rows();
    let mut got = std::collections::HashMap::new();
    for r in &rows {
        got.insert(r.name, ask(&agent, &r.input).await);
    }
    check_table("/probe", &rows, |r| got[r.name].clone());
}
