//! Blackbox-exporter compatibility through a real Prometheus (Debian's `/usr/bin/prometheus`):
//! jobs written exactly as for blackbox_exporter (`metrics_path: /probe`, `params: {module:
//! [...]}`, the classic `__address__` → `__param_target` → `instance` relabelling, `__address__`
//! replaced by the exporter's) scrape the real dualprobe binary, and Prometheus' HTTP API must
//! then hold `probe_success` 1 and `probe_ip_protocol` 4/6 for every target: with a `family`
//! label for a module probing both families, without it (the blackbox names) for one family.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::agent_proc::{AgentProc, client, free_port};
use crate::support::{DUAL_HOST, DnsServer, HttpServer, standard_zone};
use dualprobe::model::family::Family;

const PROMETHEUS: &str = "/usr/bin/prometheus";

/// A running Prometheus; killed (and reaped) on drop, panics included.
struct Prometheus {
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl Prometheus {
    fn start(config: &std::path::Path, storage: &std::path::Path) -> Prometheus {
        let port = free_port();
        let log = storage.with_extension("log");
        let child = Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("prometheus log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("start {PROMETHEUS} (Debian package `prometheus`): {e}"));
        Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `/api/v1/query` for an instant vector: each series' labels and value.
    async fn query(&mut self, q: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("prometheus exited ({status}):\n{}", self.log());
        }
        let Ok(r) = client()
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", q)])
            .send()
            .await
        else {
            return Vec::new(); // not listening yet
        };
        let Ok(body) = r.text().await else {
            return Vec::new();
        };
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|e| panic!("{q}: {e}: {body}"));
        assert_eq!(v["status"], "success", "{q}: {v}");
        v["data"]["result"]
            .as_array()
            .expect("result vector")
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .expect("labels")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
                let value = s["value"][1]
                    .as_str()
                    .unwrap_or("NaN")
                    .parse()
                    .unwrap_or(f64::NAN);
                (labels, value)
            })
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One expected series: job, instance, `family` label (None: must be absent), value.
type Want = (&'static str, String, Option<&'static str>, f64);

fn missing(got: &[(BTreeMap<String, String>, f64)], want: &[Want]) -> Vec<String> {
    want.iter()
        .filter(|(job, instance, family, value)| {
            !got.iter().any(|(l, v)| {
                l.get("job").map(String::as_str) == Some(*job)
                    && l.get("instance") == Some(instance)
                    && l.get("family").map(String::as_str) == *family
                    && v == value
            })
        })
        .map(|w| format!("{w:?}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_probe_with_a_blackbox_style_job() {
    let dns = DnsServer::start(standard_zone());
    let http = HttpServer::plain();
    let dir = tempfile::tempdir().unwrap();
    let hp = http.port();
    let agent_cfg = dir.path().join("dualprobe.yml");
    std::fs::write(
        &agent_cfg,
        format!(
            r#"resolver:
  nameservers: ["{ns}"]
probe:
  allow: ["*.test", "127.0.0.0/8", "::1/128"]
modules:
  http_2xx:
    checks: [dns, tcp, http]
    http: {{ path: /ok }}
  tcp_v6:
    checks: [tcp]
    families: [ipv6]
"#,
            ns = dns.addr(Family::Ipv4)
        ),
    )
    .unwrap();
    let agent = AgentProc::start(&agent_cfg, "info");

    // Three jobs as a blackbox_exporter user writes them; only `module` (and, in the last, a
    // `family` param) differ. The relabelling is the one from blackbox_exporter's README.
    let job = |name: &str, params: &str, targets: &[String]| {
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        format!(
            r#"  - job_name: {name}
    metrics_path: /probe
    params:
{params}
    static_configs:
      - targets: [{targets}]
    relabel_configs:
      - source_labels: [__address__]
        target_label: __param_target
      - source_labels: [__param_target]
        target_label: instance
      - target_label: __address__
        replacement: {agent}
"#,
            targets = targets.join(", "),
            agent = agent.addr,
        )
    };
    let dual = format!("{DUAL_HOST}:{hp}");
    let v6_literal = format!("[::1]:{hp}");
    let v4_literal = format!("127.0.0.1:{hp}");
    let prom_cfg = dir.path().join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{}{}{}",
            job("bb_both", "      module: [http_2xx]", std::slice::from_ref(&dual)),
            job("bb_v6", "      module: [tcp_v6]", &[dual.clone(), v6_literal.clone()]),
            job(
                "bb_v4",
                "      module: [http_2xx]\n      family: [ipv4]",
                &[dual.clone(), v4_literal.clone()]
            ),
        ),
    )
    .unwrap();
    let storage = dir.path().join("tsdb");
    let mut prom = Prometheus::start(&prom_cfg, &storage);

    let want_success: Vec<Want> = vec![
        ("bb_both", dual.clone(), Some("ipv4"), 1.0),
        ("bb_both", dual.clone(), Some("ipv6"), 1.0),
        ("bb_v6", dual.clone(), None, 1.0),
        ("bb_v6", v6_literal.clone(), None, 1.0),
        ("bb_v4", dual.clone(), None, 1.0),
        ("bb_v4", v4_literal.clone(), None, 1.0),
    ];
    let want_protocol: Vec<Want> = vec![
        ("bb_both", dual.clone(), Some("ipv4"), 4.0),
        ("bb_both", dual.clone(), Some("ipv6"), 6.0),
        ("bb_v6", dual.clone(), None, 6.0),
        ("bb_v6", v6_literal.clone(), None, 6.0),
        ("bb_v4", dual.clone(), None, 4.0),
        ("bb_v4", v4_literal.clone(), None, 4.0),
    ];
    let want_up: Vec<Want> = want_success
        .iter()
        .map(|(j, i, _, _)| (*j, i.clone(), None, 1.0))
        .collect();
    let start = Instant::now();
    loop {
        let success = prom.query("probe_success").await;
        let protocol = prom.query("probe_ip_protocol").await;
        let up = prom.query("up").await;
        let gaps: Vec<String> = [
            ("probe_success", missing(&success, &want_success)),
            ("probe_ip_protocol", missing(&protocol, &want_protocol)),
            ("up", missing(&up, &want_up)),
        ]
        .into_iter()
        .filter(|(_, m)| !m.is_empty())
        .map(|(q, m)| format!("{q}: missing {m:?}"))
        .collect();
        if gaps.is_empty() {
            // The single-family jobs carry no `family` label on the blackbox names at all.
            for (labels, _) in success.iter().chain(&protocol) {
                if labels["job"] != "bb_both" {
                    assert!(!labels.contains_key("family"), "{labels:?}");
                }
            }
            // Both families of the dual-stack job really reached the peer.
            assert!(http.hits(Family::Ipv4, "/ok") > 0 && http.hits(Family::Ipv6, "/ok") > 0);
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Prometheus never had the blackbox series:\n{}\nprobe_success: {success:?}\n\
             probe_ip_protocol: {protocol:?}\nup: {up:?}\nprometheus log:\n{}\nagent log:\n{}",
            gaps.join("\n"),
            prom.log(),
            agent.logs()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(prom);
}
