//! How the `happy_eyeballs` series come out of the real binary against real loopback peers:
//! `/metrics` (`winner{target,family}`, `fallback_seconds{target}`, `margin_seconds{target}`:
//! exact lines, both formats), `/probe` (the same names without `target`; the `family` label is
//! the family the value is about, not the cycle's), `/probe` JSON, the `dualprobe probe` table
//! and JSON; a race that finds nothing leaves no fallback or margin from the last one standing;
//! and a reload that removes the targets leaves none of their series.
//!
//! Two targets: `he` on `dual.test` (A 127.0.0.1, AAAA ::1) at an HTTP server listening on both
//! loopback addresses (IPv6 wins, nothing masked), and `he-v4` on `fallback.test` (the same
//! records) at a port listening on 127.0.0.1 only: IPv6 is refused (RST) and IPv4 wins after a
//! fallback, which is IPv6 masked by fallback.

use std::net::{Ipv4Addr, Ipv6Addr, TcpListener};
use std::process::Command;
use std::time::Duration;

use dualprobe::model::family::Family;
use serde_json::Value;

use crate::agent_proc::{AgentProc, BIN, Reply, client, get, get_with, wait_for};
use crate::support::{DUAL_HOST, DnsServer, HttpServer, standard_zone};

/// `he-v4`'s name: removed from the zone mid-test to make its race fail.
const FALLBACK_HOST: &str = "fallback.test";

const WINNER: &str = "dualprobe_happy_eyeballs_winner";
const FALLBACK: &str = "dualprobe_happy_eyeballs_fallback_seconds";
const MARGIN: &str = "dualprobe_happy_eyeballs_margin_seconds";

/// The HELP texts (`/metrics` ends each with a full stop; `/probe` does not).
const WINNER_HELP: &str = "1 for the family an RFC 8305 client connects over (the happy-eyeballs race's winner), 0 for the other";
const FALLBACK_HELP: &str = "How long an RFC 8305 client waited on IPv6 before falling back to the IPv4 connection that won (0 when IPv6 won or was not tried)";
const MARGIN_HELP: &str = "Time between the winning connection and the other family's first attempt start (due or actual): how clearly the race was won";

/// The peers: DNS, a dual-stack HTTP server, and a port that listens on 127.0.0.1 only.
struct Peers {
    dns: DnsServer,
    dual: HttpServer,
    v4_only: u16,
    dir: tempfile::TempDir,
}

impl Peers {
    fn new() -> Peers {
        let v4 = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0");
        let v4_only = v4.local_addr().expect("local address").port();
        // Accepted and dropped, so the backlog never fills over the test's cycles. Nothing
        // listens on [::1] at this port: a SYN there is answered with a RST.
        std::thread::spawn(move || {
            for s in v4.incoming() {
                drop(s);
            }
        });
        let mut zone = standard_zone();
        zone.set(
            FALLBACK_HOST,
            &[Ipv4Addr::LOCALHOST],
            &[Ipv6Addr::LOCALHOST],
        );
        Peers {
            dns: DnsServer::start(zone),
            dual: HttpServer::plain(),
            v4_only,
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn nameserver(&self) -> String {
        self.dns.addr(Family::Ipv4).to_string()
    }

    /// The config: `he` and `he-v4` when `with_he`, and `keep` (a plain `tcp` target) always.
    fn yaml(&self, with_he: bool) -> String {
        let he = if with_he {
            format!(
                "  - {{ name: he, host: {DUAL_HOST}, port: {}, checks: [happy_eyeballs] }}\n  - {{ name: he-v4, host: {FALLBACK_HOST}, port: {}, checks: [happy_eyeballs] }}\n",
                self.dual.port(),
                self.v4_only
            )
        } else {
            String::new()
        };
        format!(
            "interval: 1s\ntimeout: 900ms\nresolver:\n  nameservers: [\"{}\"]\nprobe:\n  allow: [\"{DUAL_HOST}\"]\ntargets:\n{he}  - {{ name: keep, host: 127.0.0.1, port: {}, checks: [tcp], families: [ipv4] }}\n",
            self.nameserver(),
            self.dual.port()
        )
    }

    /// Writes the config and starts the agent on it, waiting for every target's first cycle.
    async fn agent(&self) -> (AgentProc, std::path::PathBuf) {
        let cfg = self.dir.path().join("c.yml");
        std::fs::write(&cfg, self.yaml(true)).unwrap();
        let agent = AgentProc::start(&cfg, "info");
        agent.wait_ready().await;
        (agent, cfg)
    }
}

/// Every line of `body` (samples, HELP, TYPE) that mentions a happy-eyeballs series, sorted.
fn he_lines(body: &str) -> Vec<String> {
    let mut v: Vec<String> = body
        .lines()
        .filter(|l| l.contains("dualprobe_happy_eyeballs_"))
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// The value of the one sample line written exactly as `series` (name and labels).
fn value(body: &str, series: &str) -> f64 {
    let lines: Vec<&str> = body
        .lines()
        .filter(|l| l.strip_prefix(series).is_some_and(|r| r.starts_with(' ')))
        .collect();
    assert_eq!(lines.len(), 1, "one `{series}` line in:\n{body}");
    lines[0]
        .rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no number in `{}`", lines[0]))
}

/// `lines` with the value of each sample line of the series in `timed` replaced by `T`: the
/// durations vary, everything else is exact.
fn masked(lines: &[String], timed: &[&str]) -> Vec<String> {
    lines
        .iter()
        .map(|l| match l.rsplit_once(' ') {
            Some((series, _)) if timed.contains(&series) => format!("{series} T"),
            _ => l.clone(),
        })
        .collect()
}

/// Sorted owned lines.
fn sorted(lines: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
    v.sort();
    v
}

/// The HELP and TYPE lines of the three series, `/metrics` style (`.`) or `/probe` style.
fn meta(full_stop: bool) -> Vec<String> {
    let dot = if full_stop { "." } else { "" };
    let mut v = Vec::new();
    for (name, help) in [
        (WINNER, WINNER_HELP),
        (FALLBACK, FALLBACK_HELP),
        (MARGIN, MARGIN_HELP),
    ] {
        v.push(format!("# HELP {name} {help}{dot}"));
        v.push(format!("# TYPE {name} gauge"));
    }
    v
}

/// The columns of the `happy_eyeballs` row of `family` in a `dualprobe probe` table.
fn row(table: &str, family: &str) -> Vec<String> {
    let line = table
        .lines()
        .find(|l| l.split_whitespace().take(2).eq([family, "happy_eyeballs"]))
        .unwrap_or_else(|| panic!("no {family} row:\n{table}"));
    line.split("  ")
        .filter(|c| !c.is_empty())
        .map(|c| c.trim().to_string())
        .collect()
}

/// A table detail without its leading addresses: `::1`, and `127.0.0.1` when the A answer came
/// before IPv6 connected (the race ends at the first connection).
fn addresses_stripped<'a>(detail: &'a str, table: &str) -> &'a str {
    detail
        .strip_prefix("::1 127.0.0.1, ")
        .or_else(|| detail.strip_prefix("::1, "))
        .unwrap_or_else(|| panic!("no addresses first:\n{table}"))
}

fn text(r: &Reply, what: &str) -> String {
    assert_eq!(r.status, 200, "{what}: {}", r.body);
    r.body.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_each_race_and_keep_nothing_a_later_race_or_a_reload_drops() {
    let peers = Peers::new();
    let (agent, cfg) = peers.agent().await;
    let metrics = agent.url("/metrics");
    let openmetrics = [("accept", "application/openmetrics-text;version=1.0.0")];
    let timed = [
        format!("{MARGIN}{{target=\"he\"}}"),
        format!("{FALLBACK}{{target=\"he-v4\"}}"),
        format!("{MARGIN}{{target=\"he-v4\"}}"),
    ];
    let timed: Vec<&str> = timed.iter().map(String::as_str).collect();
    let mut want = meta(true);
    want.extend(sorted(&[
        "dualprobe_happy_eyeballs_winner{target=\"he\",family=\"ipv6\"} 1.0",
        "dualprobe_happy_eyeballs_winner{target=\"he\",family=\"ipv4\"} 0.0",
        "dualprobe_happy_eyeballs_fallback_seconds{target=\"he\"} 0.0",
        "dualprobe_happy_eyeballs_margin_seconds{target=\"he\"} T",
        "dualprobe_happy_eyeballs_winner{target=\"he-v4\",family=\"ipv6\"} 0.0",
        "dualprobe_happy_eyeballs_winner{target=\"he-v4\",family=\"ipv4\"} 1.0",
        "dualprobe_happy_eyeballs_fallback_seconds{target=\"he-v4\"} T",
        "dualprobe_happy_eyeballs_margin_seconds{target=\"he-v4\"} T",
    ]));
    want.sort();
    for (format, headers) in [("text 0.0.4", &[][..]), ("OpenMetrics", &openmetrics[..])] {
        let m = text(&get_with(&metrics, headers).await, format);
        assert_eq!(masked(&he_lines(&m), &timed), want, "{format}:\n{m}");
        // IPv6 connected at once; IPv4's attempt was not due for most of the 250 ms delay
        // (its A answer may come after the IPv6 connect: the margin is then that lower bound).
        let margin = value(&m, &format!("{MARGIN}{{target=\"he\"}}"));
        assert!(margin > 0.1 && margin <= 0.25, "{format}: margin {margin}");
        // The RST on [::1] started the IPv4 attempt at once (RFC 8305 §5): a short fallback,
        // and IPv4 connected a little after IPv6's attempt began.
        let fallback = value(&m, &format!("{FALLBACK}{{target=\"he-v4\"}}"));
        assert!(fallback > 0.0 && fallback < 0.2, "{format}: {fallback}");
        let margin = value(&m, &format!("{MARGIN}{{target=\"he-v4\"}}"));
        assert!(margin >= fallback && margin < 0.2, "{format}: {margin}");
    }

    // `he-v4`'s name disappears: its race finds no address, nothing connects. Its winners go
    // to 0 and the fallback and margin of the race before are gone, not left standing.
    peers.dns.update(|z| z.remove(FALLBACK_HOST));
    let lost = format!("{WINNER}{{target=\"he-v4\",family=\"ipv4\"}} 0.0");
    wait_for("he-v4's failed race", Duration::from_secs(10), async || {
        get(&metrics).await.body.lines().any(|l| l == lost)
    })
    .await;
    let m = get(&metrics).await.body;
    let v4_lines: Vec<String> = he_lines(&m)
        .into_iter()
        .filter(|l| l.contains("\"he-v4\""))
        .collect();
    assert_eq!(
        v4_lines,
        sorted(&[
            "dualprobe_happy_eyeballs_winner{target=\"he-v4\",family=\"ipv4\"} 0.0",
            "dualprobe_happy_eyeballs_winner{target=\"he-v4\",family=\"ipv6\"} 0.0",
        ]),
        "{m}"
    );
    assert!(
        m.contains("dualprobe_probes_total{target=\"he-v4\",check=\"happy_eyeballs\",family=\"ipv6\",result=\"nxdomain\"}"),
        "{m}"
    );

    // A reload without both targets: none of their series, nor the families' HELP and TYPE
    // (no series left in them), while the target that stays is still there.
    std::fs::write(&cfg, peers.yaml(false)).unwrap();
    let r = client().post(agent.url("/-/reload")).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    for (format, headers) in [("text 0.0.4", &[][..]), ("OpenMetrics", &openmetrics[..])] {
        let m = text(&get_with(&metrics, headers).await, format);
        assert_eq!(he_lines(&m), Vec::<String>::new(), "{format}:\n{m}");
        assert!(
            !m.contains("target=\"he\"") && !m.contains("target=\"he-v4\""),
            "{format}:\n{m}"
        );
        assert!(
            m.contains("dualprobe_probe_success{target=\"keep\",check=\"tcp\",family=\"ipv4\"} 1"),
            "{format}:\n{m}"
        );
    }
    // And none come back with the next cycles of what is left.
    tokio::time::sleep(Duration::from_millis(2200)).await;
    let m = get(&metrics).await.body;
    assert_eq!(he_lines(&m), Vec::<String>::new(), "{m}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_answers_and_the_cli_show_the_race_without_a_target_label() {
    let peers = Peers::new();
    let (agent, _cfg) = peers.agent().await;
    let port = peers.dual.port();
    let adhoc = format!("/probe?target={DUAL_HOST}:{port}&check=happy_eyeballs");
    let margin_line = format!("{MARGIN} T");
    let fallback_line = format!("{FALLBACK} T");
    let timed = [MARGIN, FALLBACK];

    // Ad hoc, both families: the race runs in the IPv6 cycle; the labels name the winner's
    // family and the other, with no `target` label.
    let m = text(&get(&agent.url(&adhoc)).await, "ad hoc");
    let mut want = meta(false);
    want.extend(sorted(&[
        "dualprobe_happy_eyeballs_winner{family=\"ipv6\"} 1",
        "dualprobe_happy_eyeballs_winner{family=\"ipv4\"} 0",
        "dualprobe_happy_eyeballs_fallback_seconds 0",
        &margin_line,
    ]));
    want.sort();
    assert_eq!(masked(&he_lines(&m), &[MARGIN]), want, "{m}");
    let margin = value(&m, MARGIN);
    assert!(margin > 0.1 && margin <= 0.25, "margin {margin}:\n{m}");

    // IPv4 only: the race runs in the IPv4 cycle, and its `family` label is still the family
    // each value is about (IPv6 won), not the cycle's.
    let m = text(
        &get(&agent.url(&format!("{adhoc}&family=ipv4"))).await,
        "ad hoc ipv4",
    );
    assert_eq!(masked(&he_lines(&m), &[MARGIN]), want, "{m}");
    assert_eq!(value(&m, "probe_ip_protocol"), 4.0, "{m}");

    // The configured target whose IPv6 is refused: IPv4 wins after a fallback.
    let m = text(&get(&agent.url("/probe?target=he-v4")).await, "he-v4");
    let mut want = meta(false);
    want.extend(sorted(&[
        "dualprobe_happy_eyeballs_winner{family=\"ipv6\"} 0",
        "dualprobe_happy_eyeballs_winner{family=\"ipv4\"} 1",
        &fallback_line,
        &margin_line,
    ]));
    want.sort();
    assert_eq!(masked(&he_lines(&m), &timed), want, "{m}");
    let fallback = value(&m, FALLBACK);
    assert!(fallback > 0.0 && fallback < 0.2, "{m}");

    // JSON: the keys on the IPv6 cycle's outcome only (per-family values as an object).
    let r = get(&agent.url("/probe?target=he&format=json")).await;
    let json: Value = serde_json::from_str(&text(&r, "json")).expect("JSON");
    let by_family = |f: &str| {
        json["families"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["family"] == f))
            .map(|r| r["checks"][0].clone())
            .unwrap_or_else(|| panic!("no {f} report: {json}"))
    };
    let v6 = by_family("ipv6");
    assert_eq!(v6["check"], "happy_eyeballs", "{json}");
    assert_eq!(v6["reason"], "ok", "{json}");
    assert_eq!(
        v6["happy_eyeballs_winner"],
        serde_json::json!({"ipv4": 0.0, "ipv6": 1.0}),
        "{json}"
    );
    assert_eq!(v6["happy_eyeballs_fallback_seconds"], 0.0, "{json}");
    assert!(
        v6["happy_eyeballs_margin_seconds"]
            .as_f64()
            .is_some_and(|m| m > 0.1)
    );
    // AAAA first; A too when it answered before IPv6 connected (the race ends there).
    assert!(
        [
            serde_json::json!(["::1", "127.0.0.1"]),
            serde_json::json!(["::1"])
        ]
        .contains(&v6["addresses"]),
        "{json}"
    );
    assert_eq!(v6["remote"], format!("[::1]:{port}"), "{json}");
    let v4 = by_family("ipv4");
    let keys: Vec<&str> = v4
        .as_object()
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(keys, ["check", "duration", "reason", "success"], "{json}");

    // The CLI: the IPv6 row carries the race, the IPv4 row nothing; `--json` the same keys.
    let cli = |host: &str, port: u16, json: bool| {
        let mut c = Command::new(BIN);
        c.args([
            "probe",
            &format!("{host}:{port}"),
            "--check",
            "happy_eyeballs",
        ])
        .args(["--nameserver", &peers.nameserver(), "--timeout", "2s"]);
        if json {
            c.arg("--json");
        }
        tokio::task::spawn_blocking(move || c.output().expect("run dualprobe probe"))
    };
    let out = cli(DUAL_HOST, port, false).await.unwrap();
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{table}");
    let v6 = row(&table, "ipv6");
    assert_eq!(v6[..3], ["ipv6", "happy_eyeballs", "ok"], "{table}");
    let race = addresses_stripped(&v6[4], &table);
    let (detail, margin) = race.rsplit_once('=').unwrap_or_else(|| panic!("{table}"));
    assert_eq!(
        detail,
        "happy_eyeballs_winner[ipv4]=0, happy_eyeballs_winner[ipv6]=1, happy_eyeballs_fallback_seconds=0, happy_eyeballs_margin_seconds",
        "{table}"
    );
    assert!(
        margin.parse::<f64>().is_ok_and(|m| m > 0.1 && m <= 0.25),
        "{table}"
    );
    assert_eq!(
        row(&table, "ipv4").len(),
        4,
        "no detail on the IPv4 row:\n{table}"
    );

    let out = cli(FALLBACK_HOST, peers.v4_only, false).await.unwrap();
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let v6 = row(&table, "ipv6");
    assert_eq!(v6[..3], ["ipv6", "happy_eyeballs", "ok"], "{table}");
    // Both lookups had answered: IPv4 was attempted only after the RST from [::1].
    assert!(
        v6[4].starts_with("::1 127.0.0.1, happy_eyeballs_winner[ipv4]=1, happy_eyeballs_winner[ipv6]=0, happy_eyeballs_fallback_seconds=0.0"),
        "{table}"
    );

    let out = cli(DUAL_HOST, port, true).await.unwrap();
    let json: Value = serde_json::from_slice(&out.stdout).expect("CLI JSON");
    assert_eq!(json[1]["family"], "ipv6", "{json}");
    let he = &json[1]["checks"][0];
    assert_eq!(
        he["happy_eyeballs_winner"],
        serde_json::json!({"ipv4": 0.0, "ipv6": 1.0}),
        "{json}"
    );
    assert_eq!(he["happy_eyeballs_fallback_seconds"], 0.0, "{json}");
    assert!(
        json[0]["checks"][0].get("happy_eyeballs_winner").is_none(),
        "{json}"
    );
}
