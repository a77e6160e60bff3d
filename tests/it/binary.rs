//! The real `dualprobe` binary end to end: started on a config that probes real local peers, its
//! `/metrics` scraped for per-family series, a bad reload refused while the old config keeps
//! running, a good reload removing a target's series, SIGTERM, and the `check-config`, `probe`
//! and `healthcheck` subcommands.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{A_ONLY_HOST, DUAL_HOST, DnsServer, HttpServer, standard_zone};

const BIN: &str = env!("CARGO_BIN_EXE_dualprobe");

/// A running agent; killed on drop if the test did not stop it.
struct Agent {
    child: Child,
    base: String,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Agent {
    fn start(config: &Path) -> Agent {
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--config"]).arg(config).args([
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ]);
        Agent::spawn(cmd)
    }

    /// Starts `cmd` (a `run` with `--listen 127.0.0.1:0 --log-format json`) and waits for the
    /// listen address it logs.
    fn spawn(mut cmd: Command) -> Agent {
        let mut child = cmd
            .env("DUALPROBE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start dualprobe");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && let Some(l) = v.get("listen").and_then(|l| l.as_str())
                {
                    let _ = tx.send(l.to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let listen = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the agent logs its listen address");
        Agent {
            child,
            base: format!("http://{listen}"),
            stderr: lines,
        }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    fn logs(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

async fn get(url: &str) -> (u16, String) {
    let r = client().get(url).send().await.expect(url);
    (r.status().as_u16(), r.text().await.unwrap())
}

/// The value of the one series whose line starts with `series` (name plus exact labels).
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn config_yaml(dns: &DnsServer, http_port: u16, with_aonly: bool) -> String {
    let mut y = format!(
        "interval: 1s\ntimeout: 500ms\nresolver:\n  nameservers: [\"{}\"]\ntargets:\n  - name: dual\n    host: {DUAL_HOST}\n    port: {http_port}\n    checks: [dns, tcp, http]\n    http: {{ path: /ok }}\n",
        dns.addr(dualprobe::model::family::Family::Ipv4)
    );
    if with_aonly {
        y.push_str(&format!(
            "  - name: aonly\n    host: {A_ONLY_HOST}\n    port: {http_port}\n    checks: [dns, tcp, http]\n    http: {{ path: /ok }}\n"
        ));
    }
    y
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_serves_per_family_metrics_reloads_safely_and_stops_on_sigterm() {
    let dns = DnsServer::start(standard_zone());
    let http = HttpServer::plain();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("dualprobe.yml");
    std::fs::write(&cfg, config_yaml(&dns, http.port(), true)).unwrap();
    let mut agent = Agent::start(&cfg);
    let base = agent.base.clone();

    wait_for("/-/ready", Duration::from_secs(10), async || {
        get(&format!("{base}/-/ready")).await.0 == 200
    })
    .await;
    assert_eq!(get(&format!("{base}/-/healthy")).await.0, 200);

    let (status, m) = get(&format!("{base}/metrics")).await;
    assert_eq!(status, 200);
    for fam in ["ipv4", "ipv6"] {
        for check in ["dns", "tcp", "http"] {
            assert_eq!(
                value(
                    &m,
                    &format!(
                        "dualprobe_probe_success{{target=\"dual\",check=\"{check}\",family=\"{fam}\"}}"
                    )
                ),
                Some(1.0),
                "dual {check} {fam}\n{m}"
            );
        }
        assert_eq!(
            value(
                &m,
                &format!("dualprobe_expectation_met{{target=\"dual\",family=\"{fam}\"}}")
            ),
            Some(1.0)
        );
        assert_eq!(
            value(
                &m,
                &format!("dualprobe_http_status_code{{target=\"dual\",family=\"{fam}\"}}")
            ),
            Some(200.0)
        );
    }
    // A-only name: IPv4 passes, IPv6 fails with nodata and the rest is skipped.
    assert_eq!(
        value(
            &m,
            "dualprobe_probe_success{target=\"aonly\",check=\"http\",family=\"ipv4\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &m,
            "dualprobe_probe_success{target=\"aonly\",check=\"dns\",family=\"ipv6\"}"
        ),
        Some(0.0)
    );
    assert!(value(&m, "dualprobe_probes_total{target=\"aonly\",check=\"dns\",family=\"ipv6\",result=\"nodata\"}").unwrap() >= 1.0);
    assert!(value(&m, "dualprobe_probes_total{target=\"aonly\",check=\"tcp\",family=\"ipv6\",result=\"skipped\"}").unwrap() >= 1.0);
    assert_eq!(
        value(
            &m,
            "dualprobe_expectation_met{target=\"aonly\",family=\"ipv6\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        value(
            &m,
            "dualprobe_dns_answers{target=\"aonly\",family=\"ipv6\"}"
        ),
        Some(0.0)
    );
    assert_eq!(
        value(&m, "dualprobe_config_last_reload_successful"),
        Some(1.0)
    );
    assert!(m.contains("dualprobe_build_info{version=\""));
    assert!(value(&m, "process_resident_memory_bytes").unwrap() > 0.0);
    assert!(m.contains("dualprobe_probe_duration_seconds_bucket{target=\"dual\",check=\"tcp\",family=\"ipv6\",le=\"0.0001\"}"));
    // Both families really reached the peer.
    assert!(http.hits(dualprobe::model::family::Family::Ipv4, "/ok") > 0);
    assert!(http.hits(dualprobe::model::family::Family::Ipv6, "/ok") > 0);
    // A failing pair is logged once when it starts failing, not every cycle.
    let logs = agent.logs();
    assert_eq!(
        logs.matches("\"target\":\"aonly\",\"family\":\"ipv6\"")
            .count(),
        1,
        "{logs}"
    );

    // A bad reload is refused and the old config keeps running.
    std::fs::write(&cfg, "targets:\n  - name: dual\n    hots: x\n").unwrap();
    let r = client()
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body = r.text().await.unwrap();
    assert!(body.contains("unknown field `hots`"), "{body}");
    let count = |m: &str| {
        value(
            m,
            "dualprobe_probes_total{target=\"dual\",check=\"http\",family=\"ipv6\",result=\"ok\"}",
        )
        .unwrap_or(0.0)
    };
    let before = count(&get(&format!("{base}/metrics")).await.1);
    wait_for(
        "probes to continue after a bad reload",
        Duration::from_secs(5),
        async || count(&get(&format!("{base}/metrics")).await.1) > before,
    )
    .await;
    let m = get(&format!("{base}/metrics")).await.1;
    assert_eq!(
        value(&m, "dualprobe_config_last_reload_successful"),
        Some(0.0)
    );
    assert!(m.contains("target=\"aonly\""));
    assert!(agent.logs().contains("config reload refused"));

    // A good reload by SIGHUP drops the removed target's series.
    std::fs::write(&cfg, config_yaml(&dns, http.port(), false)).unwrap();
    let ok = Command::new("kill")
        .args(["-HUP", &agent.pid()])
        .status()
        .unwrap();
    assert!(ok.success());
    wait_for("the SIGHUP reload", Duration::from_secs(5), async || {
        let m = get(&format!("{base}/metrics")).await.1;
        value(&m, "dualprobe_config_last_reload_successful") == Some(1.0)
            && !m.contains("target=\"aonly\"")
    })
    .await;

    // SIGTERM: a graceful exit within a second.
    let t = Instant::now();
    Command::new("kill")
        .args(["-TERM", &agent.pid()])
        .status()
        .unwrap();
    let status = loop {
        if let Some(s) = agent.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "still running 2s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn check_config_accepts_good_and_names_every_problem_in_bad() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let ok = Command::new(BIN)
        .arg("check-config")
        .arg(data.join("valid-full.yaml"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bad = Command::new(BIN)
        .arg("check-config")
        .arg(data.join("invalid-unknown-check.yaml"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("invalid-unknown-check.yaml:4: targets[0].checks[2]: unknown check `ping`"),
        "{err}"
    );
    let missing = Command::new(BIN)
        .args(["check-config", "/nonexistent/dualprobe.yml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("/nonexistent/dualprobe.yml: cannot read")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_subcommand_prints_per_family_results_and_exit_code() {
    let dns = DnsServer::start(standard_zone());
    let http = HttpServer::plain();
    let ns = dns.addr(dualprobe::model::family::Family::Ipv4).to_string();
    let port = http.port();
    let run = |host: &'static str, json: bool| {
        let ns = ns.clone();
        tokio::task::spawn_blocking(move || {
            let mut c = Command::new(BIN);
            c.args([
                "probe",
                &format!("http://{host}:{port}/ok"),
                "--check",
                "dns,tcp",
                "--check",
                "http",
                "--nameserver",
                &ns,
                "--timeout",
                "1s",
            ]);
            if json {
                c.arg("--json");
            }
            c.output().unwrap()
        })
    };
    let good = run(DUAL_HOST, false).await.unwrap();
    let out = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{out}\n{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(
        out.contains("ipv4") && out.contains("ipv6") && out.contains("HTTP 200"),
        "{out}"
    );

    let bad = run(A_ONLY_HOST, true).await.unwrap();
    assert_eq!(bad.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&bad.stdout).unwrap();
    let fams = v.as_array().unwrap();
    assert_eq!(fams.len(), 2);
    let v6 = fams.iter().find(|r| r["family"] == "ipv6").unwrap();
    assert_eq!(v6["checks"][0]["reason"], "nodata");
    assert_eq!(v6["checks"][1]["reason"], "skipped");
    assert_eq!(v6["expectation_met"], false);
    let v4 = fams.iter().find(|r| r["family"] == "ipv4").unwrap();
    assert_eq!(v4["checks"][2]["http_status"], 200);

    let usage = Command::new(BIN)
        .args(["probe", "host:notaport"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("`notaport` is not a port"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthcheck_reflects_whether_the_agent_answers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("empty.yml");
    std::fs::write(&cfg, "targets: []\n").unwrap();
    let agent = Agent::start(&cfg);
    let url = format!("{}/-/healthy", agent.base);
    let ok = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["healthcheck", "--url", &url])
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(ok.success());
    drop(agent);
    let port = crate::support::closed_port();
    let down = Command::new(BIN)
        .args([
            "healthcheck",
            "--url",
            &format!("http://127.0.0.1:{port}/-/healthy"),
        ])
        .output()
        .unwrap();
    assert_eq!(down.status.code(), Some(1));
}

/// Serves `body` as JSON for any GET, on 127.0.0.1, until the test ends.
fn serve_json(body: String) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_endpoints_and_task_metadata_reach_the_metrics() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let task = std::fs::read_to_string(root.join("tests/data/ecs-task-metadata-v4.json")).unwrap();
    let meta_port = serve_json(task);
    // A nameserver that is never there: discovered AWS names are looked up only on loopback.
    let dns = crate::support::closed_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yml");
    std::fs::write(
        &cfg,
        format!(
            "interval: 2s\ntimeout: 300ms\nresolver:\n  nameservers: [\"127.0.0.1:{dns}\"]\ndiscovery:\n  cloudformation: {{ template: {}, region: eu-west-1 }}\ntargets:\n  - {{ name: own, host: 127.0.0.1, port: {dns}, checks: [tcp] }}\n",
            root.join("cloudformation/ipv6-vpc.yml").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args([
        "run",
        "--listen",
        "127.0.0.1:0",
        "--log-format",
        "json",
        "--config",
    ])
    .arg(&cfg)
    .env(
        "ECS_CONTAINER_METADATA_URI_V4",
        format!("http://127.0.0.1:{meta_port}/v4/abc"),
    );
    let agent = Agent::spawn(cmd);
    let m = get(&format!("{}/metrics", agent.base)).await.1;
    drop(agent);
    let discovered = value(&m, "dualprobe_targets{source=\"cloudformation\"}").unwrap_or(0.0);
    assert!(
        discovered >= 4.0,
        "CloudFormation endpoints become targets:\n{m}"
    );
    assert_eq!(value(&m, "dualprobe_targets{source=\"config\"}"), Some(1.0));
    assert!(
        m.contains("host=\"logs.eu-west-1.amazonaws.com\"")
            && m.contains("source=\"cloudformation\""),
        "the logs interface endpoint is probed by its private DNS name:\n{m}"
    );
    let build = m
        .lines()
        .find(|l| l.starts_with("dualprobe_build_info{"))
        .expect("build_info");
    assert!(
        !build.contains("cluster=\"\""),
        "task metadata labels build_info: {build}"
    );
    assert!(!build.contains("availability_zone=\"\""), "{build}");
    let task = "task=\"0b69d5c0d3d0446894d7c8e1f3b7e4a5\",service=\"\"";
    assert!(
        build.contains(task),
        "the task ID; no ServiceName on Fargate: {build}"
    );
}

/// ECS task definitions pass config in the environment: inline YAML in `DUALPROBE_CONFIG`, or a
/// path in `DUALPROBE_CONFIG_FILE`; `--config` wins over both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_comes_from_the_environment() {
    let start = |envs: &[(&str, String)], args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(args)
            .env_remove("DUALPROBE_CONFIG")
            .env_remove("DUALPROBE_CONFIG_FILE");
        for (k, v) in envs {
            cmd.env(k, v);
        }
        Agent::spawn(cmd)
    };
    let yaml = |name: &str| {
        format!("targets:\n  - {{ name: {name}, host: 127.0.0.1, port: 9, checks: [tcp] }}\n")
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("from-file.yml");
    std::fs::write(&file, yaml("from-file")).unwrap();
    let flag = dir.path().join("from-flag.yml");
    std::fs::write(&flag, yaml("from-flag")).unwrap();

    // (environment, extra arguments, the target that must be running)
    type Case<'a> = (&'a [(&'a str, String)], Vec<&'a str>, &'a str);
    let cases: [Case; 3] = [
        (&[("DUALPROBE_CONFIG", yaml("inline"))], vec![], "inline"),
        (
            &[("DUALPROBE_CONFIG_FILE", file.display().to_string())],
            vec![],
            "from-file",
        ),
        (
            &[("DUALPROBE_CONFIG", yaml("inline"))],
            vec!["--config", flag.to_str().unwrap()],
            "from-flag",
        ),
    ];
    for (envs, args, want) in cases {
        let agent = start(envs, &args);
        let m = get(&format!("{}/metrics", agent.base)).await.1;
        drop(agent);
        assert!(
            m.contains(&format!("target=\"{want}\"")),
            "expected target {want}:\n{m}"
        );
    }
}

/// Transition logs follow the expectation: for `expect: unreachable` a refused connection is
/// healthy and a successful one is the failure. JSON lines carry one `target` key (the probe
/// target) and a plain `expectation` string.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transition_logs_follow_the_expectation_and_stay_valid_json() {
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open_port = open.local_addr().unwrap().port();
    let closed = crate::support::closed_port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yml");
    std::fs::write(
        &cfg,
        format!(
            "interval: 1s\ntimeout: 300ms\ntargets:\n  - {{ name: blocked, host: 127.0.0.1, port: {closed}, checks: [tcp], expect: {{ ipv4: unreachable }} }}\n  - {{ name: leaking, host: 127.0.0.1, port: {open_port}, checks: [tcp], expect: {{ ipv4: unreachable }} }}\n"
        ),
    )
    .unwrap();
    let agent = Agent::start(&cfg);
    let base = agent.base.clone();
    wait_for("/-/ready", Duration::from_secs(10), async || {
        get(&format!("{base}/-/ready")).await.0 == 200
    })
    .await;
    let lines: Vec<String> = agent.stderr.lock().unwrap().clone();
    drop(agent);
    let event = |target: &str| -> serde_json::Value {
        let line = lines
            .iter()
            .find(|l| l.contains(&format!("\"target\":\"{target}\"")))
            .unwrap_or_else(|| panic!("no log line for {target}: {lines:#?}"));
        assert_eq!(
            line.matches("\"target\":").count(),
            1,
            "one target key: {line}"
        );
        serde_json::from_str(line).unwrap()
    };
    let blocked = event("blocked");
    assert_eq!(blocked["message"], "first probe: healthy");
    assert_eq!(blocked["level"], "INFO");
    assert_eq!(blocked["expectation"], "met");
    let leaking = event("leaking");
    assert_eq!(leaking["message"], "first probe: failing");
    assert_eq!(leaking["level"], "WARN");
    assert_eq!(leaking["expectation"], "violated");
    assert_eq!(leaking["reason"], "expectation:reachable");
}

#[test]
fn targets_subcommand_lists_the_templates_endpoints_with_their_conditions() {
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("cloudformation/ipv6-vpc.yml");
    let out = Command::new(BIN)
        .args(["targets", "--from-template"])
        .arg(&template)
        .args(["--region", "eu-west-1"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("8 endpoint target(s)"), "{text}");
    let line = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .to_string()
    };
    assert!(line("vpce-logs ").contains("logs.eu-west-1.amazonaws.com"));
    assert!(line("vpce-ecr-api ").contains("api.ecr.eu-west-1.amazonaws.com"));
    assert!(line("vpce-s3-gateway ").contains("gateway"));
    // ECS Exec (2), Secrets Manager, aps-workspaces, and the ECR pair that only the
    // dualstack NetworkMode has (an IPv6-only task pulls by ECR's dual-stack names).
    let conditional = text.lines().filter(|l| l.contains(" if ")).count();
    assert_eq!(conditional, 6, "six conditional endpoints marked:\n{text}");
    assert!(line("vpce-ecr-dkr ").ends_with(" if DualStack"), "{text}");
    assert!(
        line("vpce-logs ").contains("ipv4,ipv6:nodata"),
        "an IPv4 endpoint: no AAAA expected\n{text}"
    );
    let missing = Command::new(BIN)
        .args([
            "targets",
            "--from-template",
            "/nonexistent/t.yml",
            "--region",
            "eu-west-1",
        ])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/t.yml: cannot read"));
}

#[test]
fn a_bad_log_filter_is_reported_and_info_is_used() {
    // A closed loopback port: the probe fails fast, and logging is set up first.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let run = |filter: &str| {
        Command::new(BIN)
            .args(["probe", &format!("127.0.0.1:{port}"), "--check", "tcp"])
            .env("DUALPROBE_LOG", filter)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    };
    let bad = run("dualprobe==debug");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        stderr.contains(r#"DUALPROBE_LOG="dualprobe==debug" is not a log filter"#)
            && stderr.contains("logging at info"),
        "{stderr}"
    );
    assert!(
        !bad.status.success(),
        "the closed port still fails the probe"
    );
    let quiet = run("error");
    assert!(
        !String::from_utf8_lossy(&quiet.stderr).contains("WARN"),
        "a valid filter is used: {}",
        String::from_utf8_lossy(&quiet.stderr)
    );
}

#[test]
fn a_bad_worker_thread_count_is_reported_and_one_worker_is_used() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = Command::new(BIN)
        .args(["probe", &format!("127.0.0.1:{port}"), "--check", "tcp"])
        .env("DUALPROBE_WORKER_THREADS", "0")
        .env("DUALPROBE_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(r#"DUALPROBE_WORKER_THREADS="0" is not a number from 1 to 64"#),
        "{stderr}"
    );
    // It still ran: the closed port is reported as refused.
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("refused"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
