//! `GET /probe` of the real binary against real local peers (the test DNS server, HTTP and HTTPS
//! servers with the test CA, a listener that never accepts): both families in one probe with a
//! `family` label, one family with blackbox_exporter's names, configured targets with their
//! expectations, modules, deadlines from `X-Prometheus-Scrape-Timeout-Seconds` and `timeout=`,
//! JSON and debug output, 200 for failed probes and 400 for malformed requests, and the bearer
//! token (401 without it, never in logs or `/metrics`).

mod requests;
mod results;

use std::net::Ipv4Addr;

use dualprobe::model::family::Family;

use crate::agent_proc::{AgentProc, Reply};
use crate::support::{
    A_ONLY_HOST, DUAL_HOST, DnsServer, HttpServer, NeverAccepting, Pki, SILENT_HOST, standard_zone,
};

/// A-only name that is a configured target but not in `probe.allow`.
const HIDDEN_HOST: &str = "hidden.test";

/// Everything a test's agent probes, on 127.0.0.1 and [::1].
struct World {
    dns: DnsServer,
    pki: Pki,
    http: HttpServer,
    https: HttpServer,
    never: NeverAccepting,
    dir: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let mut zone = standard_zone();
        zone.set(HIDDEN_HOST, &[Ipv4Addr::LOCALHOST], &[]);
        let pki = Pki::new();
        let https = HttpServer::https(&pki.server);
        World {
            dns: DnsServer::start(zone),
            http: HttpServer::plain(),
            https,
            pki,
            never: NeverAccepting::full(),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// The agent config: `allow` is `probe.allow` (None: the standard list), `probe_extra` lines
    /// go under `probe:` (two-space indented).
    fn yaml(&self, allow: Option<&str>, probe_extra: &str) -> String {
        let allow = allow.map_or_else(
            || {
                format!(
                    r#"["{DUAL_HOST}", "{A_ONLY_HOST}", "{SILENT_HOST}", "127.0.0.0/8", "::1/128"]"#
                )
            },
            str::to_string,
        );
        let ns = self.dns.addr(Family::Ipv4);
        let http = self.http.port();
        let https = self.https.port();
        let ca = self.pki.ca_file_yaml();
        format!(
            r#"interval: 10s
timeout: 5s
resolver:
  nameservers: ["{ns}"]
probe:
  allow: {allow}
  max_concurrent: 64
  rate_per_second: 1000
  burst: 1000
  max_timeout: 3s
  timeout_offset: 500ms
{probe_extra}
modules:
  https_ca:
    checks: [dns, tcp, tls, http]
    port: {https}
    http: {{ path: /ok }}
    tls: {{ ca_file: {ca} }}
  v6_http:
    checks: [dns, tcp, http]
    families: [ipv6]
    port: {http}
    http: {{ path: /ok }}
  hang:
    checks: [tcp]
    timeout: 8s
targets:
  - name: web
    host: {DUAL_HOST}
    port: {http}
    checks: [dns, tcp, http]
    http: {{ path: /ok }}
  - name: broken
    host: {DUAL_HOST}
    port: {http}
    checks: [dns, tcp, http]
    http: {{ path: /fail }}
  - name: hidden4
    host: {HIDDEN_HOST}
    port: {http}
    checks: [dns, tcp]
    expect: {{ ipv6: unreachable }}
"#
        )
    }

    fn agent_with(&self, probe_extra: &str, log_filter: &str) -> AgentProc {
        self.start(None, probe_extra, log_filter)
    }

    fn agent_allowing(&self, allow: &str) -> AgentProc {
        self.start(Some(allow), "", "info")
    }

    fn start(&self, allow: Option<&str>, probe_extra: &str, log_filter: &str) -> AgentProc {
        // One file per agent: a test may run several.
        let cfg = tempfile::Builder::new()
            .suffix(".yml")
            .tempfile_in(self.dir.path())
            .expect("config file")
            .into_temp_path()
            .keep()
            .expect("keep config file");
        std::fs::write(&cfg, self.yaml(allow, probe_extra)).expect("write config");
        AgentProc::start(&cfg, log_filter)
    }

    fn agent(&self) -> AgentProc {
        self.agent_with("", "info")
    }
}

/// Asserts a 200 Prometheus text answer and returns its body.
fn text(r: &Reply, what: &str) -> String {
    assert_eq!(r.status, 200, "{what}: {}", r.body);
    assert!(
        r.content_type.starts_with("text/plain"),
        "{what}: content type {}",
        r.content_type
    );
    r.body.clone()
}
