//! The YAML config: where it comes from (file, `DUALPROBE_CONFIG`, `DUALPROBE_CONFIG_FILE`, the
//! embedded default), how it is parsed (unknown keys are errors), and how it is validated into
//! runtime [`Target`]s. Every problem names the origin, the line and the field.

mod discovery;
mod metrics;
mod probe_endpoint;
mod problems;
mod raw;
mod targets;
mod yaml;
mod yaml_tree;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub use metrics::{MAX_DURATION_BUCKETS, MetricsSettings};
pub use probe_endpoint::ProbeEndpointSettings;
pub use problems::{ConfigError, Problem, parse_nameserver};
pub use yaml::{MAX_ALIAS_EVENTS, MAX_DEPTH, MAX_NODES};

use problems::{
    Problems, families_or_problem, is_region_name, line_of, parse_duration, parse_interval,
};
use raw::RawConfig;
use targets::{TargetDefaults, build_target};

use crate::model::family::Family;
use crate::model::target::Target;

/// The longest interval or timeout accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// The most cycles (`concurrency`) or ad-hoc probes (`probe.max_concurrent`) in flight.
pub const MAX_IN_FLIGHT: usize = 65_536;

/// First runs started per second by default (`starts_per_second`): the embedded default's 4
/// pairs, or 100 targets × 1 family, all start within a second of a start or reload, and the
/// queries of a first round stay a tenth of the VPC resolver's 1,024 packets a second per network
/// interface, which the task's other containers share.
pub const DEFAULT_STARTS_PER_SECOND: u32 = 100;

/// The highest `starts_per_second`: at 10,000 a second each 100 ms slot starts 1,000 pairs at
/// once, which is no spreading at all for any config this agent is sized for.
pub const MAX_STARTS_PER_SECOND: u32 = 10_000;

/// The default listen address: one dual-stack socket on port 9469.
pub const DEFAULT_LISTEN: &str = "[::]:9469";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it was read from (a path, `DUALPROBE_CONFIG` or `embedded default`).
    pub origin: String,
    /// HTTP listen address.
    pub listen: SocketAddr,
    /// Default interval.
    pub interval: Duration,
    /// Default per-check timeout.
    pub timeout: Duration,
    /// Default families.
    pub families: Vec<Family>,
    /// Most (target, family) cycles running at once.
    pub concurrency: usize,
    /// Most first runs started per second, at start and for the pairs a reload adds.
    pub starts_per_second: u32,
    /// Nameservers (empty: `/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// The NAT64 prefixes config names and how discovery learns more (`resolver.nat64_*`).
    pub nat64: Nat64Settings,
    /// Targets, in config order.
    pub targets: Vec<Arc<Target>>,
    /// Where more targets come from (`discovery:`).
    pub discovery: crate::discovery::DiscoveryConfig,
    /// Settings of the ad-hoc `/probe` endpoint.
    pub probe_endpoint: ProbeEndpointSettings,
    /// Named modules for `/probe?module=NAME`: target templates without a host.
    pub modules: HashMap<String, Arc<Target>>,
    /// What `/metrics` writes (`metrics:`).
    pub metrics: MetricsSettings,
}

/// `resolver.nat64_prefixes`, `nat64_discovery`, `nat64_refresh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nat64Settings {
    /// Prefixes known without asking DNS (the well-known 64:ff9b::/96 is always known).
    pub prefixes: Vec<ipnet::Ipv6Net>,
    /// Whether to learn prefixes from `ipv4only.arpa` (RFC 7050) through the resolver. Off by
    /// default: AWS's DNS64 synthesizes under the well-known prefix, which is always known, and
    /// with discovery on the first cycles wait for its first answer.
    pub discovery: bool,
    /// How often discovery asks again (a DNS64 can be switched on or off under a running task).
    pub refresh: Duration,
}

/// How often NAT64 discovery asks by default: one AAAA query per five minutes.
pub const DEFAULT_NAT64_REFRESH: Duration = Duration::from_secs(300);

impl Default for Nat64Settings {
    fn default() -> Nat64Settings {
        Nat64Settings {
            prefixes: Vec::new(),
            discovery: false,
            refresh: DEFAULT_NAT64_REFRESH,
        }
    }
}

/// Where the config comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// A YAML file (re-read on reload).
    File(PathBuf),
    /// The whole YAML document in `DUALPROBE_CONFIG` (as ECS task definitions pass it).
    Inline(String),
    /// The built-in default for the dual-stack pattern.
    Embedded,
}

impl ConfigSource {
    /// `--config FILE`, else `DUALPROBE_CONFIG`, else `DUALPROBE_CONFIG_FILE`, else embedded.
    pub fn discover(cli: Option<PathBuf>) -> ConfigSource {
        if let Some(p) = cli {
            return ConfigSource::File(p);
        }
        if let Ok(doc) = std::env::var("DUALPROBE_CONFIG")
            && !doc.trim().is_empty()
        {
            return ConfigSource::Inline(doc);
        }
        if let Ok(p) = std::env::var("DUALPROBE_CONFIG_FILE")
            && !p.trim().is_empty()
        {
            return ConfigSource::File(PathBuf::from(p));
        }
        ConfigSource::Embedded
    }

    /// Reads and validates the config.
    pub fn load(&self) -> Result<Config, ConfigError> {
        match self {
            ConfigSource::File(path) => {
                let origin = path.display().to_string();
                let text =
                    crate::files::read_text(path, crate::files::CONFIG_MAX).map_err(|e| {
                        let problem = match e {
                            crate::files::FileError::Io(e) => format!("cannot read: {e}"),
                            other => other.about("the config"),
                        };
                        ConfigError::single(&origin, None, "", problem)
                    })?;
                Config::from_yaml(&text, &origin, path.parent())
            }
            ConfigSource::Inline(doc) => Config::from_yaml(doc, "DUALPROBE_CONFIG", None),
            ConfigSource::Embedded => {
                Config::from_yaml(&embedded_default(), "embedded default", None)
            }
        }
    }
}

/// Whether field path `field` is `parent` or inside it (`targets[0].http` is inside
/// `targets[0]`; `targets[10]` is not).
fn is_within(field: &str, parent: &str) -> bool {
    field
        .strip_prefix(parent)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// The embedded default: the S3 and EC2 dual-stack endpoints of `AWS_REGION` (else
/// `AWS_DEFAULT_REGION`, else us-east-1), over both families. Any HTTP answer proves the path,
/// so 4xx (unsigned requests) counts as success.
pub fn embedded_default() -> String {
    let region = std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .ok()
        .filter(|r| is_region_name(r))
        .unwrap_or_else(|| "us-east-1".to_string());
    format!(
        r#"# dualprobe embedded default: the dual-stack S3 and EC2 endpoints of {region}.
listen: "{DEFAULT_LISTEN}"
interval: 30s
timeout: 5s
families: [ipv4, ipv6]
targets:
  - name: s3-dualstack
    host: s3.dualstack.{region}.amazonaws.com
    port: 443
    checks: [dns, tcp, tls, http]
    http: {{ path: /, expect_status: ["2xx", "3xx", "4xx"] }}
  - name: ec2-dualstack
    host: ec2.{region}.api.aws
    port: 443
    checks: [dns, tcp, tls, http]
    http: {{ path: /, expect_status: ["2xx", "3xx", "4xx"] }}
"#
    )
}

impl Config {
    /// Parses and validates a YAML document. `base_dir` resolves relative file paths.
    pub fn from_yaml(
        text: &str,
        origin: &str,
        base_dir: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Err(ConfigError::single(
                origin,
                None,
                "",
                "the document is empty".into(),
            ));
        }
        let (mut raw, type_errors): (RawConfig, Vec<Problem>) =
            yaml::read(text).map_err(|problems| ConfigError {
                origin: origin.to_string(),
                problems,
            })?;
        let mut p = Problems(Vec::new());

        let listen = match &raw.listen {
            None => DEFAULT_LISTEN
                .parse()
                .expect("default listen address parses"),
            Some(s) => match s.value.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    p.add(
                        line_of(s),
                        "listen",
                        format!(
                            "`{}` is not an address like [::]:9469 or 0.0.0.0:9469",
                            s.value
                        ),
                    );
                    DEFAULT_LISTEN
                        .parse()
                        .expect("default listen address parses")
                }
            },
        };
        let interval =
            parse_interval(&mut p, &raw.interval, "interval").unwrap_or(Duration::from_secs(15));
        let timeout =
            parse_duration(&mut p, &raw.timeout, "timeout").unwrap_or(Duration::from_secs(5));
        if timeout >= interval {
            p.add(
                raw.timeout.as_ref().and_then(line_of),
                "timeout",
                format!(
                    "must be less than interval ({} >= {})",
                    humantime::format_duration(timeout),
                    humantime::format_duration(interval)
                ),
            );
        }
        let families = match &raw.families {
            None => Family::ALL.to_vec(),
            Some(f) => families_or_problem(&mut p, f, "families"),
        };
        let concurrency = match &raw.concurrency {
            None => 256,
            Some(c) if c.value == 0 => {
                p.add(line_of(c), "concurrency", "must be at least 1");
                1
            }
            // A semaphore larger than this panics; no task runs that many cycles at once.
            Some(c) if c.value > MAX_IN_FLIGHT => {
                p.add(
                    line_of(c),
                    "concurrency",
                    format!("`{}` is more than the {MAX_IN_FLIGHT} allowed", c.value),
                );
                1
            }
            Some(c) => c.value,
        };
        let starts_per_second = match &raw.starts_per_second {
            None => DEFAULT_STARTS_PER_SECOND,
            Some(r) if r.value == 0 => {
                p.add(line_of(r), "starts_per_second", "must be at least 1");
                1
            }
            Some(r) if r.value > MAX_STARTS_PER_SECOND => {
                p.add(
                    line_of(r),
                    "starts_per_second",
                    format!(
                        "`{}` is more than the {MAX_STARTS_PER_SECOND} allowed",
                        r.value
                    ),
                );
                1
            }
            Some(r) => r.value,
        };
        let mut nameservers = Vec::new();
        let mut nat64 = Nat64Settings::default();
        if let Some(r) = &raw.resolver {
            nat64 = nat64_settings(&mut p, r);
            for (i, ns) in r.nameservers.iter().enumerate() {
                match parse_nameserver(&ns.value) {
                    Some(a) => nameservers.push(a),
                    None => p.add(
                        line_of(ns),
                        format!("resolver.nameservers[{i}]"),
                        format!(
                            "`{}` is not an address like 127.0.0.1:53 or [::1]:5353",
                            ns.value
                        ),
                    ),
                }
            }
        }

        let defaults = TargetDefaults {
            interval,
            timeout,
            families: &families,
            base_dir,
            tls_configs: Default::default(),
        };
        let mut seen = HashSet::new();
        let mut targets = Vec::with_capacity(raw.targets.len());
        for (i, slot) in raw.targets.iter().enumerate() {
            let field = format!("targets[{i}]");
            let Some(rt) = &slot.value else {
                // A target the reader blanked out has its type error reported already.
                if !type_errors.iter().any(|t| is_within(&t.field, &field)) {
                    p.add(
                        line_of(slot),
                        field,
                        "is empty; a target needs at least `name` and `host`",
                    );
                }
                continue;
            };
            if !seen.insert(rt.name.value.clone()) {
                p.add(
                    line_of(&rt.name),
                    format!("{field}.name"),
                    format!(
                        "`{}` is used by an earlier target; names must be unique",
                        rt.name.value
                    ),
                );
            }
            if let Some(t) = build_target(&mut p, rt, &field, &defaults) {
                targets.push(Arc::new(t));
            }
        }

        let discovery = match &raw.discovery {
            Some(d) => discovery::build_discovery(&mut p, d, base_dir),
            None => crate::discovery::DiscoveryConfig::default(),
        };

        let probe = probe_endpoint::build_probe_settings(&mut p, raw.probe.as_ref(), base_dir);
        let metrics = metrics::build_metrics_settings(&mut p, raw.metrics.as_ref());
        let mut modules = HashMap::new();
        for (name, m) in raw.modules.take().unwrap_or_default() {
            let field = format!("modules.{}", name.value);
            let as_target = m.into_target(&name);
            if let Some(t) = build_target(&mut p, &as_target, &field, &defaults) {
                modules.insert(name.value, Arc::new(t));
            }
        }

        // A field with a type error is absent from `raw`: what validation says of its absence
        // (`is required`) is noise.
        p.0.retain(|q| !type_errors.iter().any(|t| is_within(&q.field, &t.field)));
        p.0.extend(type_errors);
        if !p.0.is_empty() {
            p.0.sort_by_key(|q| q.line.unwrap_or(0));
            return Err(ConfigError {
                origin: origin.to_string(),
                problems: p.0,
            });
        }
        Ok(Config {
            origin: origin.to_string(),
            listen,
            interval,
            timeout,
            families,
            concurrency,
            starts_per_second,
            nameservers,
            nat64,
            targets,
            discovery,
            probe_endpoint: probe,
            modules,
            metrics,
        })
    }

    /// What discovered targets inherit from this config.
    pub fn discovery_defaults(&self) -> crate::discovery::TargetDefaults {
        crate::discovery::TargetDefaults {
            interval: self.interval,
            timeout: self.timeout,
            families: self.families.clone(),
            taken: self.targets.iter().map(|t| t.name.clone()).collect(),
        }
    }

    /// Looks a configured target up by name.
    pub fn target(&self, name: &str) -> Option<&Arc<Target>> {
        self.targets.iter().find(|t| t.name == name)
    }
}

/// `resolver.nat64_*`: every prefix an RFC 6052 one outside the special ranges; the refresh at
/// least a second.
fn nat64_settings(p: &mut Problems, r: &raw::RawResolver) -> Nat64Settings {
    let mut out = Nat64Settings {
        discovery: r.nat64_discovery.unwrap_or(false),
        ..Nat64Settings::default()
    };
    for (i, s) in r.nat64_prefixes.iter().enumerate() {
        let field = format!("resolver.nat64_prefixes[{i}]");
        match s.value.trim().parse::<ipnet::Ipv6Net>() {
            Ok(net) => match crate::model::nat64::check_prefix(net) {
                Ok(()) if out.prefixes.contains(&net) => {
                    p.add(line_of(s), field, format!("`{net}` is listed twice"))
                }
                Ok(()) => out.prefixes.push(net),
                Err(e) => p.add(line_of(s), field, format!("`{}` {e}", s.value)),
            },
            Err(_) => p.add(
                line_of(s),
                field,
                format!("`{}` is not an IPv6 prefix like 64:ff9b::/96", s.value),
            ),
        }
    }
    if let Some(d) = parse_duration(p, &r.nat64_refresh, "resolver.nat64_refresh") {
        if d < Duration::from_secs(1) {
            p.add(
                r.nat64_refresh.as_ref().and_then(line_of),
                "resolver.nat64_refresh",
                format!(
                    "`{}` is shorter than the 1s minimum",
                    r.nat64_refresh.as_ref().map_or("", |s| s.value.as_str())
                ),
            );
        } else {
            out.refresh = d;
        }
    }
    out
}
