//! Config rows for the path diagnoses' sections, `pmtu:` and `trace:` (each kind's own file
//! validates its section; a target-wide rule comes back as `targets[i].checks: KIND: ...` on the
//! target's name line), and the rows that load: the defaults and the values at their bounds.
//!
//! Problems no row reaches, and why:
//! - `trace.max_hops` that is not a number, or negative: a YAML type error (see `mod.rs`).
//! - `pmtu`'s run-time `is not a request path` (an ad-hoc URL's path on the request line):
//!   config paths are refused by `configure` first.

use dualprobe::checks::pmtu::{self, Transfer};
use dualprobe::checks::trace::{self, Proto, Run};
use dualprobe::config::Config;
use std::time::Duration;

use super::config::{load_error, target};
use super::{Row, check_table, row};

fn rows() -> Vec<Row> {
    vec![
        row(
            "trace max_hops zero",
            target("    trace: { max_hops: 0 }\n"),
            "c.yml:4: targets[0].trace.max_hops: must be 1-64",
        ),
        row(
            "trace max_hops 65",
            target("    trace: { max_hops: 65 }\n"),
            "c.yml:4: targets[0].trace.max_hops: must be 1-64",
        ),
        row(
            "trace max_hops past a hop limit",
            target("    trace: { max_hops: 300 }\n"),
            "c.yml:4: targets[0].trace.max_hops: must be 1-64",
        ),
        row(
            "trace proto icmp",
            target("    trace: { proto: icmp }\n"),
            "c.yml:4: targets[0].trace.proto: `icmp` is not udp or tcp",
        ),
        row(
            "trace wait zero",
            target("    trace: { wait: 0s }\n"),
            "c.yml:4: targets[0].trace.wait: must be greater than zero",
        ),
        row(
            "trace wait over a minute",
            target("    trace: { wait: 61s }\n"),
            "c.yml:4: targets[0].trace.wait: `61s` is longer than 1m",
        ),
        row(
            "trace wait not a duration",
            target("    trace: { wait: forever }\n"),
            "c.yml:4: targets[0].trace.wait: `forever` is not a duration (expected number at 0); write e.g. 15s, 500ms, 1m",
        ),
        row(
            "trace run never",
            target("    trace: { run: never }\n"),
            "c.yml:4: targets[0].trace.run: `never` is not after_failure or always",
        ),
        row(
            "trace every field wrong",
            target(
                "    trace:\n      max_hops: 0\n      proto: raw\n      wait: 1 s s\n      run: sometimes\n",
            ),
            // In line order.
            "c.yml:5: targets[0].trace.max_hops: must be 1-64\nc.yml:6: targets[0].trace.proto: `raw` is not udp or tcp\nc.yml:7: targets[0].trace.wait: `1 s s` is not a duration (expected number at 4); write e.g. 15s, 500ms, 1m\nc.yml:8: targets[0].trace.run: `sometimes` is not after_failure or always",
        ),
        row(
            "trace waves past the timeout",
            target("    timeout: 5s\n    checks: [tcp, trace]\n    trace: { wait: 2s }\n"),
            "c.yml:2: targets[0].checks: trace: `trace.wait` 2s for each of 4 wave(s) of up to 8 hops (max_hops 30) is 8s, more than the timeout 5s: lower trace.wait or trace.max_hops, or raise timeout",
        ),
        row(
            "trace one wave past the timeout",
            target(
                "    timeout: 1s\n    checks: [trace]\n    trace: { max_hops: 8, wait: 1500ms }\n",
            ),
            "c.yml:2: targets[0].checks: trace: `trace.wait` 1s 500ms for each of 1 wave(s) of up to 8 hops (max_hops 8) is 1s 500ms, more than the timeout 1s: lower trace.wait or trace.max_hops, or raise timeout",
        ),
        row(
            "module trace proto",
            "modules:\n  m:\n    trace: { proto: sctp }\n",
            "c.yml:3: modules.m.trace.proto: `sctp` is not udp or tcp",
        ),
        row(
            "pmtu transfer quic",
            target("    pmtu: { transfer: quic }\n"),
            "c.yml:4: targets[0].pmtu.transfer: `quic` is not auto, tls, http or none",
        ),
        row(
            "pmtu large_path relative",
            target("    pmtu: { large_path: big }\n"),
            "c.yml:4: targets[0].pmtu.large_path: `big` is not a request path: it starts with / and has no spaces or control characters (percent-encode them)",
        ),
        row(
            "pmtu large_path with a space",
            target("    pmtu: { large_path: \"/big file\" }\n"),
            "c.yml:4: targets[0].pmtu.large_path: `/big file` is not a request path: it starts with / and has no spaces or control characters (percent-encode them)",
        ),
        row(
            "pmtu large_path with a header in it",
            target("    pmtu: { large_path: \"/x\\r\\nHost: evil\" }\n"),
            "c.yml:4: targets[0].pmtu.large_path: `/x\r\nHost: evil` is not a request path: it starts with / and has no spaces or control characters (percent-encode them)",
        ),
        row(
            "pmtu large_path with transfer tls",
            target("    pmtu: { transfer: tls, large_path: /big }\n"),
            "c.yml:4: targets[0].pmtu.large_path: only applies to `transfer: http` (or auto), not `tls`",
        ),
        row(
            "pmtu large_path with transfer none",
            target("    pmtu:\n      transfer: none\n      large_path: /big\n"),
            "c.yml:6: targets[0].pmtu.large_path: only applies to `transfer: http` (or auto), not `none`",
        ),
        row(
            "pmtu large_path on a TLS target",
            target("    checks: [tcp, tls, pmtu]\n    pmtu: { large_path: /big }\n"),
            "c.yml:2: targets[0].checks: pmtu: `pmtu.large_path` is a plain-HTTP GET, but this target speaks TLS (`tls` in its checks, port 443 or `http.scheme: https`): set `pmtu.transfer: tls`, or `http.scheme: http` for a plain-HTTP server",
        ),
        row(
            "pmtu transfer http on port 443",
            target("    port: 443\n    checks: [tcp, pmtu]\n    pmtu: { transfer: http }\n"),
            "c.yml:2: targets[0].checks: pmtu: `pmtu.transfer: http` is a plain-HTTP GET, but this target speaks TLS (`tls` in its checks, port 443 or `http.scheme: https`): set `pmtu.transfer: tls`, or `http.scheme: http` for a plain-HTTP server",
        ),
        row(
            "module pmtu transfer",
            "modules:\n  m:\n    pmtu: { transfer: udp }\n",
            "c.yml:3: modules.m.pmtu.transfer: `udp` is not auto, tls, http or none",
        ),
    ]
}

#[test]
fn diagnosis_section_rows_have_their_exact_errors() {
    check_table("config diagnosis sections", &rows(), |r| {
        load_error(&r.input)
    });
}

/// The one target of `yaml` (which must load).
fn loaded(yaml: &str) -> std::sync::Arc<dualprobe::model::target::Target> {
    let c = Config::from_yaml(yaml, "c.yml", None).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    std::sync::Arc::clone(&c.targets[0])
}

#[test]
fn sections_load_with_their_defaults_and_bounds() {
    // No section: the defaults.
    let t = loaded(&target("    checks: [tcp, trace]\n"));
    let s = trace::settings(&t);
    assert_eq!(
        (s.max_hops, s.proto, s.wait, s.run),
        (30, Proto::Udp, None, Run::AfterFailure)
    );
    // Every field at a bound.
    let t = loaded(&target(
        "    timeout: 9s\n    checks: [tcp, trace]\n    trace: { max_hops: 64, proto: tcp, wait: 1s, run: always }\n",
    ));
    let s = trace::settings(&t);
    assert_eq!(
        (s.max_hops, s.proto, s.wait, s.run),
        (64, Proto::Tcp, Some(Duration::from_secs(1)), Run::Always)
    );
    let t = loaded(&target(
        "    trace: { max_hops: 1, wait: 1m }\n    timeout: 1m\n    interval: 2m\n",
    ));
    assert_eq!(trace::settings(&t).max_hops, 1);

    // pmtu: what `auto` resolves to, and the port a plain-HTTP section implies.
    let cases = [
        ("    checks: [tcp, pmtu]\n", 443, Transfer::Tls),
        (
            "    port: 80\n    checks: [tcp, pmtu]\n",
            80,
            Transfer::Http,
        ),
        (
            "    port: 8080\n    checks: [tcp, pmtu]\n",
            8080,
            Transfer::None,
        ),
        (
            "    port: 8080\n    checks: [tcp, http, pmtu]\n",
            8080,
            Transfer::Http,
        ),
        (
            "    port: 8443\n    checks: [tcp, tls, pmtu]\n",
            8443,
            Transfer::Tls,
        ),
        (
            "    checks: [tcp, pmtu]\n    pmtu: { large_path: /big }\n",
            80,
            Transfer::Http,
        ),
        (
            "    checks: [tcp, pmtu]\n    pmtu: { transfer: http }\n",
            80,
            Transfer::Http,
        ),
        (
            "    port: 443\n    checks: [tcp, pmtu]\n    pmtu: { transfer: none }\n",
            443,
            Transfer::None,
        ),
    ];
    for (extra, port, want) in cases {
        let t = loaded(&target(extra));
        assert_eq!((t.port, pmtu::transfer(&t)), (port, want), "{extra}");
    }
    let t = loaded(&target(
        "    port: 8080\n    checks: [tcp, pmtu]\n    pmtu: { large_path: \"/blob?size=200k\" }\n",
    ));
    assert_eq!(
        pmtu::settings(&t).large_path.as_deref(),
        Some("/blob?size=200k")
    );
}
