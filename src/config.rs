//! The YAML config: where it comes from (file, `DUALPROBE_CONFIG`, `DUALPROBE_CONFIG_FILE`, the
//! embedded default), how it is parsed (unknown keys are errors), and how it is validated into
//! runtime [`Target`]s. Every problem names the origin, the line and the field.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::family::Family;
use crate::probe::CheckKind;
use crate::target::{
    AddressSelection, Expect, Expectations, Host, HttpSettings, StatusMatcher, Target,
    TargetSource, TlsSettings,
};

/// The longest interval or timeout accepted.
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

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
    /// Nameservers (empty: `/etc/resolv.conf`).
    pub nameservers: Vec<SocketAddr>,
    /// Targets, in config order.
    pub targets: Vec<Arc<Target>>,
    /// Where more targets come from (`discovery:`).
    pub discovery: crate::discovery::DiscoveryConfig,
    /// Settings of the ad-hoc `/probe` endpoint.
    pub probe: ProbeSettings,
    /// Named modules for `/probe?module=NAME`: target templates without a host.
    pub modules: HashMap<String, Arc<Target>>,
}

/// `probe:`: who may ask `/probe` for what, and how much.
#[derive(Debug, Clone)]
pub struct ProbeSettings {
    /// Hosts and CIDRs ad-hoc targets may name (empty: only configured targets).
    pub allow: crate::guard::Allowlist,
    /// Bearer token `/probe` requires, read from `token_file`.
    pub token: Option<String>,
    /// Most ad-hoc probes in flight; more get 429.
    pub max_concurrent: usize,
    /// Sustained ad-hoc probes per second; more get 429.
    pub rate_per_second: u32,
    /// Burst above the rate.
    pub burst: u32,
    /// Cap on any probe's deadline.
    pub max_timeout: Duration,
    /// Subtracted from Prometheus' scrape timeout header so the answer arrives in time.
    pub timeout_offset: Duration,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        ProbeSettings {
            allow: crate::guard::Allowlist::default(),
            token: None,
            max_concurrent: 8,
            rate_per_second: 10,
            burst: 20,
            max_timeout: Duration::from_secs(10),
            timeout_offset: Duration::from_millis(500),
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
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::single(&origin, None, "", format!("cannot read: {e}"))
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

fn is_region_name(r: &str) -> bool {
    !r.is_empty()
        && r.len() < 32
        && r.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// One problem in a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// The field path, e.g. `targets[1].timeout`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// Every problem found in one config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Where the config came from.
    pub origin: String,
    /// The problems, in document order.
    pub problems: Vec<Problem>,
}

impl ConfigError {
    fn single(origin: &str, line: Option<u64>, field: &str, message: String) -> ConfigError {
        ConfigError {
            origin: origin.to_string(),
            problems: vec![Problem {
                line,
                field: field.to_string(),
                message,
            }],
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.origin)?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
            }
            if p.field.is_empty() {
                write!(f, ": {}", p.message)?;
            } else {
                write!(f, ": {}: {}", p.field, p.message)?;
            }
        }
        Ok(())
    }
}

// ---- the YAML shape -------------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<Spanned<String>>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    families: Option<Spanned<Vec<Family>>>,
    concurrency: Option<Spanned<usize>>,
    resolver: Option<RawResolver>,
    #[serde(default)]
    targets: Vec<RawTarget>,
    discovery: Option<RawDiscovery>,
    probe: Option<RawProbe>,
    modules: Option<HashMap<Spanned<String>, RawModule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProbe {
    #[serde(default)]
    allow: Vec<Spanned<String>>,
    token_file: Option<Spanned<PathBuf>>,
    max_concurrent: Option<Spanned<usize>>,
    rate_per_second: Option<Spanned<u32>>,
    burst: Option<Spanned<u32>>,
    max_timeout: Option<Spanned<String>>,
    timeout_offset: Option<Spanned<String>>,
}

/// A module: everything a target has but its name and host.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModule {
    port: Option<Spanned<u16>>,
    checks: Option<Spanned<Vec<Spanned<String>>>>,
    timeout: Option<Spanned<String>>,
    families: Option<Spanned<Vec<Family>>>,
    addresses: Option<AddressSelection>,
    http: Option<RawHttp>,
    tls: Option<RawTls>,
    expect: Option<RawExpect>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDiscovery {
    cloudformation: Option<Spanned<RawCloudFormation>>,
    vpc_endpoints: Option<Spanned<RawVpcEndpoints>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCloudFormation {
    template: Spanned<PathBuf>,
    region: Spanned<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVpcEndpoints {
    vpc_id: Option<Spanned<String>>,
    region: Spanned<String>,
    refresh: Option<Spanned<String>>,
    dual_stack: Option<bool>,
    endpoint_url: Option<Spanned<String>>,
    ca_file: Option<Spanned<PathBuf>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAws {
    service: Spanned<String>,
    region: Spanned<String>,
    dual_stack: Option<bool>,
    endpoint_url: Option<Spanned<String>>,
    operation: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrivateDns {
    #[serde(default)]
    cidrs: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawResolver {
    #[serde(default)]
    nameservers: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: Spanned<String>,
    host: Option<Spanned<String>>,
    port: Option<Spanned<u16>>,
    checks: Option<Spanned<Vec<Spanned<String>>>>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    families: Option<Spanned<Vec<Family>>>,
    addresses: Option<AddressSelection>,
    http: Option<RawHttp>,
    tls: Option<RawTls>,
    expect: Option<RawExpect>,
    aws: Option<Spanned<RawAws>>,
    private_dns: Option<RawPrivateDns>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    path: Option<String>,
    scheme: Option<Spanned<String>>,
    expect_status: Option<Vec<Spanned<StatusText>>>,
    follow_redirects: Option<bool>,
}

/// `200` or `"2xx"`: read as text either way so one parser judges it.
#[derive(Debug)]
struct StatusText(String);

impl<'de> Deserialize<'de> for StatusText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = StatusText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an HTTP status such as 200 or \"2xx\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<StatusText, E> {
                Ok(StatusText(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<StatusText, E> {
                Ok(StatusText(v.to_string()))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<StatusText, E> {
                Ok(StatusText(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    server_name: Option<String>,
    ca_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    insecure_skip_verify: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpect {
    ipv4: Option<Expect>,
    ipv6: Option<Expect>,
}

// ---- validation -----------------------------------------------------------------------------

/// Collects problems while validating.
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, line: Option<u64>, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            line,
            field: field.into(),
            message: message.into(),
        });
    }
}

fn line_of<T>(s: &Spanned<T>) -> Option<u64> {
    let l = s.referenced.line();
    (l > 0).then_some(l)
}

fn parse_duration(
    p: &mut Problems,
    raw: &Option<Spanned<String>>,
    field: &str,
) -> Option<Duration> {
    let raw = raw.as_ref()?;
    match humantime::parse_duration(raw.value.trim()) {
        Ok(d) if d.is_zero() => {
            p.add(line_of(raw), field, "must be greater than zero");
            None
        }
        // Far-future deadlines would overflow clock arithmetic; nothing needs more than a week.
        Ok(d) if d > MAX_DURATION => {
            p.add(
                line_of(raw),
                field,
                format!("`{}` is longer than 7d", raw.value),
            );
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            p.add(
                line_of(raw),
                field,
                format!(
                    "`{}` is not a duration ({e}); write e.g. 15s, 500ms, 1m",
                    raw.value
                ),
            );
            None
        }
    }
}

/// Parses `IP:PORT` (`[v6]:PORT`), or a bare IP meaning port 53.
pub fn parse_nameserver(s: &str) -> Option<SocketAddr> {
    s.parse::<SocketAddr>().ok().or_else(|| {
        s.trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 53))
    })
}

impl Config {
    /// Parses and validates a YAML document. `base_dir` resolves relative file paths.
    pub fn from_yaml(
        text: &str,
        origin: &str,
        base_dir: Option<&Path>,
    ) -> Result<Config, ConfigError> {
        let mut raw: RawConfig = if text.trim().is_empty() {
            return Err(ConfigError::single(
                origin,
                None,
                "",
                "the document is empty".into(),
            ));
        } else {
            serde_saphyr::from_str(text).map_err(|e| {
                let line = e.location().map(|l| l.line()).filter(|l| *l > 0);
                let message = e.render_with_options(serde_saphyr::render_options! {
                    snippets: serde_saphyr::SnippetMode::Off,
                    formatter: &serde_saphyr::UserMessageFormatter,
                });
                ConfigError::single(origin, line, "", message)
            })?
        };
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
            parse_duration(&mut p, &raw.interval, "interval").unwrap_or(Duration::from_secs(15));
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
            Some(c) => c.value,
        };
        let mut nameservers = Vec::new();
        if let Some(r) = &raw.resolver {
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
        for (i, rt) in raw.targets.iter().enumerate() {
            let field = format!("targets[{i}]");
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
            Some(d) => build_discovery(&mut p, d, base_dir),
            None => crate::discovery::DiscoveryConfig::default(),
        };

        let probe = build_probe_settings(&mut p, raw.probe.as_ref(), base_dir);
        let mut modules = HashMap::new();
        for (name, m) in raw.modules.take().unwrap_or_default() {
            let field = format!("modules.{}", name.value);
            let as_target = RawTarget {
                name: Spanned::new(name.value.clone(), name.referenced, name.defined),
                // The host comes with each request; this placeholder is never probed.
                host: Some(Spanned::new(
                    "module.invalid".to_string(),
                    name.referenced,
                    name.defined,
                )),
                port: m.port,
                checks: m.checks,
                // Modules have no schedule; a long interval keeps any timeout valid.
                interval: Some(Spanned::new(
                    "24h".to_string(),
                    name.referenced,
                    name.defined,
                )),
                timeout: m.timeout,
                families: m.families,
                addresses: m.addresses,
                http: m.http,
                tls: m.tls,
                expect: m.expect,
                aws: None,
                private_dns: None,
            };
            if let Some(t) = build_target(&mut p, &as_target, &field, &defaults) {
                modules.insert(name.value, Arc::new(t));
            }
        }

        if !p.0.is_empty() {
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
            nameservers,
            targets,
            discovery,
            probe,
            modules,
        })
    }

    /// Looks a configured target up by name.
    pub fn target(&self, name: &str) -> Option<&Arc<Target>> {
        self.targets.iter().find(|t| t.name == name)
    }
}

fn families_or_problem(p: &mut Problems, f: &Spanned<Vec<Family>>, field: &str) -> Vec<Family> {
    let mut v = f.value.clone();
    v.sort();
    v.dedup();
    if v.is_empty() {
        p.add(line_of(f), field, "must name at least one of ipv4, ipv6");
        return Family::ALL.to_vec();
    }
    v
}

struct TargetDefaults<'a> {
    interval: Duration,
    timeout: Duration,
    families: &'a [Family],
    base_dir: Option<&'a Path>,
    /// One TLS client config per (CA file, insecure) in this load: a config holds a copy of
    /// the roots and a session cache, too much to build per target.
    tls_configs: std::cell::RefCell<HashMap<TlsKey, Arc<rustls::ClientConfig>>>,
}

/// What makes two targets' TLS client configurations the same: the CA file and insecure.
type TlsKey = (Option<PathBuf>, bool);

fn build_target(
    p: &mut Problems,
    rt: &RawTarget,
    field: &str,
    d: &TargetDefaults<'_>,
) -> Option<Target> {
    let before = p.0.len();
    let name = rt.name.value.trim().to_string();
    if name.is_empty() {
        p.add(
            line_of(&rt.name),
            format!("{field}.name"),
            "must not be empty",
        );
    }
    let aws = rt.aws.as_ref().and_then(|a| build_aws(p, a, field));
    let aws_endpoint = aws
        .as_ref()
        .and_then(|a| crate::aws::endpoint_host_port(&a.endpoint));
    let host = match &rt.host {
        Some(h) if rt.aws.is_some() => {
            p.add(
                line_of(h),
                format!("{field}.host"),
                "must not be set with `aws:`: the host is the SDK's endpoint (override it with `aws.endpoint_url`)",
            );
            Host::Name(String::new())
        }
        None if rt.aws.is_some() => match &aws_endpoint {
            Some((h, _)) => Host::parse(h),
            None => Host::Name(String::new()),
        },
        Some(h) if !h.value.trim().is_empty() => Host::parse(h.value.trim()),
        Some(h) => {
            p.add(line_of(h), format!("{field}.host"), "must not be empty");
            Host::Name(String::new())
        }
        None => {
            p.add(line_of(&rt.name), format!("{field}.host"), "is required");
            Host::Name(String::new())
        }
    };
    if let Host::Name(n) = &host
        && !n.is_empty()
        && n.contains(|c: char| c.is_whitespace() || c == '/' || c == ':')
    {
        p.add(
            rt.host.as_ref().and_then(line_of),
            format!("{field}.host"),
            format!("`{n}` is not a host name or IP address (put the port in `port:`)"),
        );
    }

    let mut checks = Vec::new();
    match &rt.checks {
        None => {
            let service = aws.as_ref().map(|a| a.service.as_str());
            let names: &[&str] = match service {
                Some(s) => &["dns", "tcp", "tls", s],
                None => &["dns", "tcp"],
            };
            checks.extend(names.iter().filter_map(|n| CheckKind::from_name(n)));
        }
        Some(list) => {
            if list.value.is_empty() {
                p.add(
                    line_of(list),
                    format!("{field}.checks"),
                    "must name at least one check",
                );
            }
            for (j, c) in list.value.iter().enumerate() {
                match CheckKind::from_name(c.value.trim()) {
                    Some(k) if checks.contains(&k) => p.add(
                        line_of(c),
                        format!("{field}.checks[{j}]"),
                        format!("`{}` is listed twice", c.value),
                    ),
                    Some(k) => checks.push(k),
                    None => p.add(
                        line_of(c),
                        format!("{field}.checks[{j}]"),
                        format!(
                            "unknown check `{}`; known checks: {}",
                            c.value,
                            CheckKind::all_names().join(", ")
                        ),
                    ),
                }
            }
        }
    }
    checks.sort_by_key(|k| k.order());
    // An IP literal needs no lookup: DNS is skipped for it.
    if matches!(host, Host::Ip(_)) {
        checks.retain(|k| k.prober().layer() != crate::probe::Layer::Resolve);
    }

    let interval =
        parse_duration(p, &rt.interval, &format!("{field}.interval")).unwrap_or(d.interval);
    let timeout = parse_duration(p, &rt.timeout, &format!("{field}.timeout")).unwrap_or(d.timeout);
    // With neither set here, the top-level check already reported it.
    let overrides = rt.timeout.is_some() || rt.interval.is_some();
    if timeout >= interval && overrides {
        p.add(
            rt.timeout
                .as_ref()
                .or(rt.interval.as_ref())
                .and_then(line_of)
                .or(line_of(&rt.name)),
            format!("{field}.timeout"),
            format!(
                "must be less than interval ({} >= {})",
                humantime::format_duration(timeout),
                humantime::format_duration(interval)
            ),
        );
    }
    let mut families = match &rt.families {
        None => d.families.to_vec(),
        Some(f) => families_or_problem(p, f, &format!("{field}.families")),
    };
    if let Host::Ip(ip) = host {
        families.retain(|f| *f == Family::of(ip));
        if families.is_empty() {
            p.add(
                rt.families.as_ref().and_then(line_of).or(line_of(&rt.name)),
                format!("{field}.families"),
                format!(
                    "{ip} is an {} address but that family is not probed",
                    Family::of(ip)
                ),
            );
        }
    }

    let raw_http = rt.http.as_ref();
    let has_tls = checks.iter().any(|k| k.name() == "tls");
    let scheme = match raw_http.and_then(|h| h.scheme.as_ref()) {
        Some(s) if s.value == "http" => "http",
        Some(s) if s.value == "https" => "https",
        Some(s) => {
            p.add(
                line_of(s),
                format!("{field}.http.scheme"),
                format!("`{}` is not http or https", s.value),
            );
            "http"
        }
        None => {
            let port = rt.port.as_ref().map(|p| p.value);
            if has_tls || port == Some(443) {
                "https"
            } else {
                "http"
            }
        }
    };
    let port = match &rt.port {
        Some(pv) if pv.value == 0 => {
            p.add(line_of(pv), format!("{field}.port"), "must be 1-65535");
            0
        }
        Some(pv) => pv.value,
        None if aws_endpoint.is_some() => aws_endpoint.as_ref().map_or(443, |(_, port)| *port),
        None if scheme == "https" || has_tls => 443,
        None if raw_http.is_some() => 80,
        None => 443,
    };
    let mut expect_status = Vec::new();
    for (j, s) in raw_http
        .and_then(|h| h.expect_status.as_ref())
        .map(|v| v.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match StatusMatcher::parse(&s.value.0) {
            Some(m) => expect_status.push(m),
            None => p.add(
                line_of(s),
                format!("{field}.http.expect_status[{j}]"),
                format!("`{}` is not a status like 200 or \"2xx\"", s.value.0),
            ),
        }
    }
    if expect_status.is_empty() {
        expect_status.push(StatusMatcher::Class(2));
    }
    let mut path = raw_http
        .and_then(|h| h.path.clone())
        .unwrap_or_else(|| "/".to_string());
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let http = HttpSettings {
        scheme,
        path,
        expect_status,
        follow_redirects: raw_http.and_then(|h| h.follow_redirects).unwrap_or(true),
    };

    let raw_tls = rt.tls.as_ref();
    let ca_file = raw_tls.and_then(|t| t.ca_file.as_ref()).map(|c| {
        let path = &c.value;
        let resolved = match d.base_dir {
            Some(dir) if path.is_relative() => dir.join(path),
            _ => path.clone(),
        };
        (resolved, line_of(c))
    });
    let insecure = raw_tls.map(|t| t.insecure_skip_verify).unwrap_or(false);
    let key = (ca_file.as_ref().map(|(p, _)| p.clone()), insecure);
    let cached = d.tls_configs.borrow().get(&key).cloned();
    let built = match cached {
        Some(c) => Ok(c),
        None => crate::tls_client::client_config(key.0.as_deref(), insecure).map(|c| {
            let c = Arc::new(c);
            d.tls_configs.borrow_mut().insert(key, Arc::clone(&c));
            c
        }),
    };
    let client_config = match built {
        Ok(c) => c,
        Err(e) => {
            p.add(
                ca_file.as_ref().and_then(|(_, l)| *l),
                format!("{field}.tls.ca_file"),
                e,
            );
            return None;
        }
    };
    let tls = TlsSettings {
        server_name: raw_tls.and_then(|t| t.server_name.clone()),
        insecure_skip_verify: insecure,
        client_config,
    };
    let expect = Expectations {
        ipv4: rt.expect.as_ref().and_then(|e| e.ipv4).unwrap_or_default(),
        ipv6: rt.expect.as_ref().and_then(|e| e.ipv6).unwrap_or_default(),
    };
    let target = Target {
        name,
        host,
        port,
        checks,
        families,
        interval,
        timeout,
        addresses: rt.addresses.unwrap_or_default(),
        http,
        tls,
        expect,
        source: TargetSource::Config,
        aws,
        private_cidrs: parse_cidrs(p, rt.private_dns.as_ref(), field),
    };
    for k in &target.checks {
        if let Err(msg) = k.prober().validate(&target) {
            p.add(
                line_of(&rt.name),
                format!("{field}.checks"),
                format!("{}: {msg}", k.name()),
            );
        }
    }
    (p.0.len() == before).then_some(target)
}

fn parse_cidrs(p: &mut Problems, raw: Option<&RawPrivateDns>, field: &str) -> Vec<ipnet::IpNet> {
    let mut out = Vec::new();
    for (i, c) in raw
        .map(|r| r.cidrs.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match c.value.trim().parse::<ipnet::IpNet>() {
            Ok(n) => out.push(n),
            Err(_) => p.add(
                line_of(c),
                format!("{field}.private_dns.cidrs[{i}]"),
                format!(
                    "`{}` is not a CIDR like 10.0.0.0/16 or 2600:1f18:abcd:ef00::/56",
                    c.value
                ),
            ),
        }
    }
    out
}

fn check_region(p: &mut Problems, r: &Spanned<String>, field: String) -> Option<String> {
    let v = r.value.trim();
    if is_region_name(v) && v.contains('-') {
        Some(v.to_string())
    } else {
        p.add(
            line_of(r),
            field,
            format!("`{}` is not a region name like us-east-1", r.value),
        );
        None
    }
}

fn build_aws(
    p: &mut Problems,
    raw: &Spanned<RawAws>,
    field: &str,
) -> Option<crate::aws::AwsSettings> {
    use crate::aws::{AwsService, Ec2Operation};
    let a = &raw.value;
    let before = p.0.len();
    let service = AwsService::parse(a.service.value.trim());
    if service.is_none() {
        p.add(
            line_of(&a.service),
            format!("{field}.aws.service"),
            format!(
                "unknown service `{}`; known services: s3, ec2",
                a.service.value
            ),
        );
    }
    let region = check_region(p, &a.region, format!("{field}.aws.region"));
    let dual_stack = a.dual_stack.unwrap_or(true);
    let endpoint_url = a.endpoint_url.as_ref().map(|u| u.value.trim().to_string());
    if let Some(u) = &a.endpoint_url {
        if dual_stack {
            p.add(
                line_of(u),
                format!("{field}.aws.endpoint_url"),
                "cannot be used with `dual_stack: true` (the SDKs reject both); set `dual_stack: false`",
            );
        } else if crate::aws::endpoint_host_port(u.value.trim()).is_none() {
            p.add(
                line_of(u),
                format!("{field}.aws.endpoint_url"),
                format!("`{}` is not a URL like https://host:port", u.value),
            );
        }
    }
    let ec2_operation = match &a.operation {
        None => Ec2Operation::default(),
        Some(o) => match (service, Ec2Operation::parse(o.value.trim())) {
            (Some(AwsService::Ec2), Some(op)) => op,
            (Some(AwsService::Ec2), None) => {
                let known: Vec<&str> = Ec2Operation::ALL.iter().map(|o| o.as_str()).collect();
                p.add(
                    line_of(o),
                    format!("{field}.aws.operation"),
                    format!(
                        "unknown operation `{}`; known: {}",
                        o.value,
                        known.join(", ")
                    ),
                );
                Ec2Operation::default()
            }
            _ => {
                p.add(
                    line_of(o),
                    format!("{field}.aws.operation"),
                    "only applies to `service: ec2`",
                );
                Ec2Operation::default()
            }
        },
    };
    if p.0.len() != before {
        return None;
    }
    let (service, region) = (service?, region?);
    match crate::aws::resolve_endpoint(service, &region, dual_stack, endpoint_url.as_deref()) {
        Ok(endpoint) => Some(crate::aws::AwsSettings {
            service,
            region,
            dual_stack,
            endpoint_url,
            ec2_operation,
            endpoint,
            credentials: None,
        }),
        Err(e) => {
            p.add(
                line_of(raw),
                format!("{field}.aws"),
                format!("no endpoint: {e}"),
            );
            None
        }
    }
}

fn resolve_path(base_dir: Option<&Path>, path: &Path) -> PathBuf {
    match base_dir {
        Some(dir) if path.is_relative() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

fn build_discovery(
    p: &mut Problems,
    raw: &RawDiscovery,
    base_dir: Option<&Path>,
) -> crate::discovery::DiscoveryConfig {
    use crate::discovery::{CloudFormationDiscovery, DiscoveryConfig, VpcEndpointsDiscovery};
    let mut out = DiscoveryConfig::default();
    if let Some(cfn) = &raw.cloudformation {
        let c = &cfn.value;
        let template = resolve_path(base_dir, &c.template.value);
        let region = check_region(p, &c.region, "discovery.cloudformation.region".into());
        let parsed = std::fs::read_to_string(&template)
            .map_err(|e| format!("cannot read {}: {e}", template.display()))
            .and_then(|text| match &region {
                Some(r) => crate::discovery::cloudformation::discover_in_template(&text, r)
                    .map(|_| ())
                    .map_err(|e| match e {
                        crate::discovery::DiscoveryError::Template { message, .. } => message,
                        other => other.to_string(),
                    }),
                None => crate::discovery::cloudformation::parse_template(&text)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            });
        match (parsed, region) {
            (Ok(_), Some(region)) => {
                out.cloudformation = Some(CloudFormationDiscovery { template, region });
            }
            (Err(e), _) => p.add(line_of(&c.template), "discovery.cloudformation.template", e),
            (Ok(_), None) => {}
        }
    }
    if let Some(v) = &raw.vpc_endpoints {
        let r = &v.value;
        let before = p.0.len();
        let region = check_region(p, &r.region, "discovery.vpc_endpoints.region".into());
        let vpc_id = match &r.vpc_id {
            Some(id) => Some((id.value.trim().to_string(), line_of(id))),
            None => std::env::var("DUALPROBE_VPC_ID")
                .ok()
                .map(|s| (s.trim().to_string(), line_of(v)))
                .filter(|(s, _)| !s.is_empty()),
        };
        let vpc_id = match vpc_id {
            None => {
                p.add(
                    line_of(v),
                    "discovery.vpc_endpoints.vpc_id",
                    "is required (or set DUALPROBE_VPC_ID)",
                );
                None
            }
            Some((id, line)) => {
                let ok = id
                    .strip_prefix("vpc-")
                    .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()));
                if !ok {
                    p.add(
                        line,
                        "discovery.vpc_endpoints.vpc_id",
                        format!("`{id}` is not a VPC ID like vpc-0abc123"),
                    );
                }
                Some(id)
            }
        };
        let refresh = parse_duration(p, &r.refresh, "discovery.vpc_endpoints.refresh")
            .unwrap_or(Duration::from_secs(300));
        let dual_stack = r.dual_stack.unwrap_or(r.endpoint_url.is_none());
        if let Some(u) = &r.endpoint_url {
            if dual_stack {
                p.add(
                    line_of(u),
                    "discovery.vpc_endpoints.endpoint_url",
                    "cannot be used with `dual_stack: true` (the SDKs reject both); set `dual_stack: false`",
                );
            } else if crate::aws::endpoint_host_port(u.value.trim()).is_none() {
                p.add(
                    line_of(u),
                    "discovery.vpc_endpoints.endpoint_url",
                    format!("`{}` is not a URL like https://host:port", u.value),
                );
            }
        }
        let ca_file = r.ca_file.as_ref().map(|c| resolve_path(base_dir, &c.value));
        if let (Some(path), Some(raw_ca)) = (&ca_file, &r.ca_file)
            && let Err(e) = crate::tls_client::client_config(Some(path), false)
        {
            p.add(line_of(raw_ca), "discovery.vpc_endpoints.ca_file", e);
        }
        if p.0.len() == before
            && let (Some(vpc_id), Some(region)) = (vpc_id, region)
        {
            out.vpc_endpoints = Some(VpcEndpointsDiscovery {
                vpc_id,
                region,
                refresh,
                dual_stack,
                endpoint_url: r.endpoint_url.as_ref().map(|u| u.value.trim().to_string()),
                ca_file,
            });
        }
    }
    out
}

fn build_probe_settings(
    p: &mut Problems,
    raw: Option<&RawProbe>,
    base_dir: Option<&Path>,
) -> ProbeSettings {
    let mut out = ProbeSettings::default();
    let Some(raw) = raw else { return out };
    let entries: Vec<String> = raw.allow.iter().map(|e| e.value.clone()).collect();
    match crate::guard::Allowlist::parse(&entries) {
        Ok(a) => out.allow = a,
        Err((i, msg)) => p.add(line_of(&raw.allow[i]), format!("probe.allow[{i}]"), msg),
    }
    if let Some(tf) = &raw.token_file {
        let path = match base_dir {
            Some(dir) if tf.value.is_relative() => dir.join(&tf.value),
            _ => tf.value.clone(),
        };
        match std::fs::read_to_string(&path) {
            Ok(t) if !t.trim().is_empty() => out.token = Some(t.trim().to_string()),
            Ok(_) => p.add(
                line_of(tf),
                "probe.token_file",
                format!("{} is empty", path.display()),
            ),
            Err(e) => p.add(
                line_of(tf),
                "probe.token_file",
                format!("cannot read {}: {e}", path.display()),
            ),
        }
    }
    let positive =
        |p: &mut Problems, v: &Option<Spanned<usize>>, field: &str, default: usize| match v {
            Some(s) if s.value == 0 => {
                p.add(line_of(s), field, "must be at least 1");
                default
            }
            Some(s) => s.value,
            None => default,
        };
    out.max_concurrent = positive(
        p,
        &raw.max_concurrent,
        "probe.max_concurrent",
        out.max_concurrent,
    );
    let widen = |v: &Option<Spanned<u32>>| {
        v.as_ref()
            .map(|s| Spanned::new(s.value as usize, s.referenced, s.defined))
    };
    out.rate_per_second =
        positive(p, &widen(&raw.rate_per_second), "probe.rate_per_second", 10) as u32;
    out.burst = positive(p, &widen(&raw.burst), "probe.burst", 20) as u32;
    if let Some(d) = parse_duration(p, &raw.max_timeout, "probe.max_timeout") {
        out.max_timeout = d;
    }
    if let Some(d) = parse_duration(p, &raw.timeout_offset, "probe.timeout_offset") {
        out.timeout_offset = d;
    }
    out
}
