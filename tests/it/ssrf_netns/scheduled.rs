//! The scheduled side of the SSRF table: configured http targets whose server redirects into
//! each metadata address must end as `forbidden` (their servers cannot point dualprobe at the
//! metadata services), and the ECS agent's literal address is checked only by a target that
//! says `allow_metadata_address: true` (on a port of its own that only it uses, counted apart
//! from the listeners that must see nothing).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::ECS;
use super::inner::Counter;
use crate::agent_proc::{AgentProc, get, sample};

pub(super) struct Scheduled {
    targets: Vec<(&'static str, usize)>,
    http_port: u16,
    ecs_agent: Counter,
}

impl Scheduled {
    /// `locations` are the redirect server's (`/to/N` answers 302 to the N-th).
    pub(super) async fn new(locations: &[(String, String)], http_port: u16) -> Scheduled {
        let redirect_to = |loc: &str| {
            locations
                .iter()
                .position(|(l, _)| l == loc)
                .unwrap_or_else(|| panic!("no redirect to {loc}"))
        };
        Scheduled {
            targets: vec![
                (
                    "sched-imds",
                    redirect_to("http://169.254.169.254/latest/meta-data/"),
                ),
                (
                    "sched-imds6",
                    redirect_to("http://[fd00:ec2::254]/latest/meta-data/"),
                ),
                (
                    "sched-ecs",
                    redirect_to("http://169.254.170.2/v2/credentials/abc"),
                ),
                ("sched-imds-name", redirect_to("http://imds.test/")),
            ],
            http_port,
            ecs_agent: Counter::bind(SocketAddr::new(IpAddr::V4(ECS), 51678)).await,
        }
    }

    /// The agent config's `targets:` entries.
    pub(super) fn targets_yaml(&self) -> String {
        let mut yaml = String::new();
        for (name, to) in &self.targets {
            yaml.push_str(&format!(
                "  - {{ name: {name}, host: 127.0.0.1, port: {}, checks: [tcp, http], families: [ipv4], interval: 2s, timeout: 1s, http: {{ path: /to/{to} }} }}\n",
                self.http_port
            ));
        }
        yaml.push_str(
            "  - { name: ecs-agent, host: 169.254.170.2, port: 51678, checks: [tcp], interval: 2s, timeout: 1s, allow_metadata_address: true }\n  - { name: ecs-agent-alias, host: 169.254.170.2, port: 51678, checks: [http], interval: 2s, timeout: 1s, http: { scheme: https }, tls: { server_name: ecs.test }, allow_metadata_address: true }\n",
        );
        yaml
    }

    /// Waits for every target's first cycles; returns (passed, failed) rows.
    pub(super) async fn verify(&self, agent: &AgentProc) -> (usize, usize) {
        let (mut passed, mut failed) = (0, 0);
        let mut metrics = String::new();
        let want: Vec<(String, &str)> = self
            .targets
            .iter()
            .map(|(n, _)| {
                (
                    format!(
                        "dualprobe_probes_total{{target=\"{n}\",check=\"http\",family=\"ipv4\",result=\"forbidden\"}}"
                    ),
                    *n,
                )
            })
            .chain([
                (
                    "dualprobe_probe_success{target=\"ecs-agent\",check=\"tcp\",family=\"ipv4\"}"
                        .to_string(),
                    "ecs-agent",
                ),
            ])
            .collect();
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        while std::time::Instant::now() < deadline {
            metrics = get(&agent.url("/metrics")).await.body;
            if want
                .iter()
                .all(|(s, _)| sample(&metrics, s).is_some_and(|v| v >= 1.0))
                && !alias_results(&metrics).is_empty()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        for (series, name) in &want {
            match sample(&metrics, series) {
                Some(v) if v >= 1.0 => {
                    passed += 1;
                    println!("ok   | scheduled target {name}: {series} {v}");
                }
                other => {
                    failed += 1;
                    println!("FAIL | scheduled target {name}: {series} is {other:?}");
                }
            }
        }
        // `tls.server_name` sends the request to a name the resolver aliases to the literal: the
        // flag covers that name too (it connects, then fails TLS against the plain listener).
        let alias = alias_results(&metrics);
        if !alias.is_empty() && alias.iter().all(|l| !l.contains("result=\"forbidden\"")) {
            passed += 1;
            println!(
                "ok   | the flagged https target with tls.server_name reached its literal: {alias:?}"
            );
        } else {
            failed += 1;
            println!("FAIL | the flagged https target with tls.server_name: {alias:?}");
        }
        if self.ecs_agent.count.load(Ordering::SeqCst) > 0 {
            passed += 1;
            println!("ok   | the flagged ECS agent target connected to its literal address");
        } else {
            failed += 1;
            println!("FAIL | the flagged ECS agent target never connected");
        }
        (passed, failed)
    }
}

/// The `dualprobe_probes_total` lines of the flagged, aliased https target that counted a cycle.
fn alias_results(metrics: &str) -> Vec<&str> {
    metrics
        .lines()
        .filter(|l| l.starts_with("dualprobe_probes_total{target=\"ecs-agent-alias\""))
        .filter(|l| !l.ends_with(" 0"))
        .collect()
}
