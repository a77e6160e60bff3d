//! Real-peer test infrastructure shared by the integration tests (`mod support;`): a DNS server,
//! a test PKI, TLS and HTTP servers and misbehaving TCP listeners, all on 127.0.0.1 and [::1]
//! only, plus [`Lab`], which wires them to dualprobe's config, resolver and probe chain.
//!
//! Every peer listens on the same port on both loopback addresses, so one target (`host`,
//! `port`) reaches the IPv4 peer over IPv4 and the IPv6 peer over IPv6, and a redirect that
//! names a host and port means the same server on either family.

pub mod dns;
pub mod http;
pub mod pki;
pub mod tcp;
pub mod tls;

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use dualprobe::checks;
use dualprobe::checks::CheckEnv;
use dualprobe::config::Config;
use dualprobe::model::family::Family;
use dualprobe::model::outcome::{CycleReport, Outcome};
use dualprobe::model::target::Target;
use dualprobe::net::resolver::DnsResolver;
use tokio::task::JoinSet;

pub use dns::{DnsServer, Zone};
pub use http::HttpServer;
pub use pki::{Pki, ServerCert};
pub use tcp::{NeverAccepting, closed_port};
pub use tls::{HangUpServer, SilentServer, TlsServer};

/// Has an A (127.0.0.1) and an AAAA (::1) record.
pub const DUAL_HOST: &str = "dual.test";
/// Has only an A record (127.0.0.1): NODATA for AAAA.
pub const A_ONLY_HOST: &str = "aonly.test";
/// Has each loopback address twice, for `addresses: all`.
pub const TWICE_HOST: &str = "twice.test";
/// Not in the zone: NXDOMAIN.
pub const MISSING_HOST: &str = "missing.test";
/// Answers SERVFAIL.
pub const SERVFAIL_HOST: &str = "servfail.test";
/// Never answered: lookups time out.
pub const SILENT_HOST: &str = "silent.test";

/// True when the test runs with effective UID 0 (network namespaces, cgroups, `unshare`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .is_some_and(|v| v.split_whitespace().nth(1) == Some("0"))
    })
}

/// The loopback address of `family`: the only address of that family tests may use.
pub fn loopback(family: Family) -> IpAddr {
    match family {
        Family::Ipv4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Family::Ipv6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

/// The loopback address of the other family.
pub fn other_loopback(family: Family) -> IpAddr {
    match family {
        Family::Ipv4 => loopback(Family::Ipv6),
        Family::Ipv6 => loopback(Family::Ipv4),
    }
}

/// Finds a port that `bind` can take on every socket it opens. The candidate comes from the
/// kernel (bind port 0, read it, release it); another process may grab it before `bind` runs,
/// so a failed attempt just tries the next candidate.
pub fn with_free_port<T>(mut bind: impl FnMut(u16) -> io::Result<T>) -> T {
    let mut last = None;
    for _ in 0..64 {
        let candidate = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port();
        match bind(candidate) {
            Ok(t) => return t,
            Err(e) => last = Some(e),
        }
    }
    panic!("no port free on both 127.0.0.1 and [::1]: {last:?}");
}

/// A TCP listener on `127.0.0.1:port` and one on `[::1]:port`, ready for tokio.
pub fn tcp_listener_pair(port: u16) -> io::Result<[tokio::net::TcpListener; 2]> {
    let mut out = Vec::with_capacity(2);
    for family in Family::ALL {
        let l = std::net::TcpListener::bind(SocketAddr::new(loopback(family), port))?;
        l.set_nonblocking(true)?;
        out.push(tokio::net::TcpListener::from_std(l)?);
    }
    Ok(out.try_into().expect("two listeners"))
}

/// Tasks that end when their owner is dropped, so a server's sockets close with it.
#[derive(Default)]
pub struct Tasks(JoinSet<()>);

impl Tasks {
    /// Runs `fut` until the owner is dropped.
    pub fn spawn(&mut self, fut: impl Future<Output = ()> + Send + 'static) {
        // Reap finished tasks so a long-lived accept loop does not accumulate them.
        while self.0.try_join_next().is_some() {}
        self.0.spawn(fut);
    }
}

/// Makes a FIFO at `path` (nobody writes to it): a file that blocks a reader that opens it.
pub fn mkfifo(path: &std::path::Path) {
    let made = std::process::Command::new("mkfifo").arg(path).status();
    assert!(made.is_ok_and(|s| s.success()), "mkfifo {}", path.display());
}

/// The standard test zone: the hosts above, answering with the loopback addresses.
pub fn standard_zone() -> Zone {
    let mut zone = Zone::default();
    zone.set(DUAL_HOST, &[Ipv4Addr::LOCALHOST], &[Ipv6Addr::LOCALHOST]);
    zone.set(A_ONLY_HOST, &[Ipv4Addr::LOCALHOST], &[]);
    zone.set(
        TWICE_HOST,
        &[Ipv4Addr::LOCALHOST, Ipv4Addr::LOCALHOST],
        &[Ipv6Addr::LOCALHOST, Ipv6Addr::LOCALHOST],
    );
    zone.servfail(SERVFAIL_HOST);
    zone.silent(SILENT_HOST);
    zone
}

/// One test's world: a DNS server with the standard zone, a PKI, and a probe environment whose
/// resolver asks that server (over IPv4 unless built with [`Lab::with_dns_over`]).
pub struct Lab {
    /// The DNS server every target name is resolved through.
    pub dns: DnsServer,
    /// The test CA and certificates.
    pub pki: Pki,
    /// The environment probes run in.
    pub env: CheckEnv,
    nameserver: SocketAddr,
}

impl Lab {
    /// Default per-check deadline of targets built by the lab: short, since every peer is local.
    pub const TIMEOUT: Duration = Duration::from_millis(1000);

    /// A lab whose resolver talks to the DNS server over IPv4.
    pub fn new() -> Lab {
        Lab::build(Family::Ipv4, Lab::TIMEOUT)
    }

    /// A lab whose resolver talks to the DNS server over `transport`.
    pub fn with_dns_over(transport: Family) -> Lab {
        Lab::build(transport, Lab::TIMEOUT)
    }

    /// A lab whose resolver gives each query `resolver_timeout`, e.g. longer than a target's
    /// deadline, to show the chain's deadline is the one that ends a check.
    pub fn with_resolver_timeout(resolver_timeout: Duration) -> Lab {
        Lab::build(Family::Ipv4, resolver_timeout)
    }

    fn build(transport: Family, resolver_timeout: Duration) -> Lab {
        let dns = DnsServer::start(standard_zone());
        let nameserver = dns.addr(transport);
        // Built from the parsed config, as the binary does, so the YAML keys are exercised.
        let config = Config::from_yaml(&Lab::yaml_for(nameserver, " []"), "test", None)
            .unwrap_or_else(|e| panic!("lab config: {e}"));
        let resolver =
            DnsResolver::new(&config.nameservers, resolver_timeout).expect("test resolver");
        Lab {
            dns,
            pki: Pki::new(),
            env: CheckEnv::new(resolver),
            nameserver,
        }
    }

    /// The nameserver the lab's resolver asks.
    pub fn nameserver(&self) -> SocketAddr {
        self.nameserver
    }

    fn yaml_for(nameserver: SocketAddr, targets: &str) -> String {
        format!(
            "interval: 30s\ntimeout: {}ms\nresolver:\n  nameservers: [\"{nameserver}\"]\ntargets:{targets}\n",
            Lab::TIMEOUT.as_millis()
        )
    }

    /// Parses one target written as a YAML mapping (any indentation) into the lab's config.
    pub fn target(&self, yaml: &str) -> Arc<Target> {
        let config = self.config(&[yaml]);
        assert_eq!(config.targets.len(), 1);
        Arc::clone(&config.targets[0])
    }

    /// Parses several targets into one config (with the lab's nameserver).
    pub fn config(&self, targets: &[&str]) -> Config {
        let mut list = String::new();
        for t in targets {
            list.push('\n');
            list.push_str(&as_list_item(t));
        }
        let yaml = Lab::yaml_for(self.nameserver, &list);
        Config::from_yaml(&yaml, "test", None)
            .unwrap_or_else(|e| panic!("test config does not load: {e}\n---\n{yaml}"))
    }

    /// Runs one cycle of `target` over `family`.
    pub async fn run(&self, target: &Arc<Target>, family: Family) -> CycleReport {
        checks::run_cycle(target, family, &self.env, true).await
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

/// Re-indents a YAML mapping as an item of the `targets:` list.
fn as_list_item(yaml: &str) -> String {
    let lines: Vec<&str> = yaml.lines().filter(|l| !l.trim().is_empty()).collect();
    let indent = lines
        .iter()
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out = String::new();
    for (i, l) in lines.iter().enumerate() {
        out.push_str(if i == 0 { "  - " } else { "\n    " });
        out.push_str(&l[indent..]);
    }
    out
}

/// The outcome of the check named `name` (panics with the whole report when absent).
pub fn outcome<'a>(report: &'a CycleReport, name: &str) -> &'a Outcome {
    report
        .checks
        .iter()
        .find(|o| o.check.name() == name)
        .unwrap_or_else(|| panic!("no `{name}` outcome in {report:#?}"))
}

/// `(check, result label)` for every check, in chain order: the shape most assertions compare.
pub fn labels(report: &CycleReport) -> Vec<(&'static str, &'static str)> {
    report
        .checks
        .iter()
        .map(|o| (o.check.name(), o.result_label()))
        .collect()
}

/// The failure detail of `name` (empty when it passed), for asserting messages are clear.
pub fn detail(report: &CycleReport, name: &str) -> String {
    match &outcome(report, name).result {
        Ok(()) => String::new(),
        Err(f) => f.detail.clone(),
    }
}

/// A compact rendering of a report for assertion messages: family, each check with its label,
/// duration, observations and failure detail, then the probers' debug lines. (The `Debug` form
/// drags in the whole target, TLS configuration included.)
pub fn show(report: &CycleReport) -> String {
    let mut s = format!(
        "{} {} (expectation_met {:?})\n",
        report.target.name, report.family, report.expectation_met
    );
    for o in &report.checks {
        s.push_str(&format!(
            "  {:<5} {:<12} {:>10.1?} {:?}",
            o.check.name(),
            o.result_label(),
            o.duration,
            o.observations
        ));
        if let Err(f) = &o.result {
            s.push_str(&format!("\n        detail: {}", f.detail));
        }
        s.push('\n');
    }
    for line in &report.debug {
        s.push_str(&format!("  | {line}\n"));
    }
    s
}

/// Waits up to two seconds for `cond`, for server-side counters that are updated by a task that
/// may run just after the client side finished.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
