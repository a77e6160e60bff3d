//! `GET /probe`: ad-hoc checks with the scheduler's check kinds, answered in the Prometheus text
//! format (blackbox_exporter's names for a single family, a `family` label for both), as JSON,
//! or with the probe's debug lines. Guarded: bearer token, rate limit, concurrency cap, the
//! allowlist for ad-hoc targets, and the metadata guard on every address and redirect hop.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::future::join_all;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use super::Served;
use crate::agent::Generation;
use crate::checks::check_for;
use crate::checks::run_cycle_until;
use crate::config::{Config, ProbeEndpointSettings};
use crate::model::check_kind::Layer;
use crate::model::failure::FailureReason;
use crate::model::family::Family;
use crate::model::outcome::CycleReport;
use crate::model::target::{Host, Target, TargetSource};
use crate::net::guard::AddressPolicy;
use crate::report::prom_text;
use crate::serve::adhoc::{self, AdhocRequest};

/// The gate of the current config: rebuilt when a reload brings a new config (a VPC-endpoint
/// refresh keeps the config, and so the gate).
#[derive(Default)]
pub struct Gates(std::sync::Mutex<Option<(Arc<Config>, Arc<ProbeGate>)>>);

impl Gates {
    fn for_config(&self, config: &Arc<Config>) -> Arc<ProbeGate> {
        let mut g = self.0.lock().expect("gate lock");
        match &*g {
            Some((c, gate)) if Arc::ptr_eq(c, config) => Arc::clone(gate),
            _ => {
                let gate = Arc::new(ProbeGate::new(&config.probe_endpoint));
                *g = Some((Arc::clone(config), Arc::clone(&gate)));
                gate
            }
        }
    }
}

/// Limits of `/probe` from one config's `probe:` section, one lane each for ad-hoc targets
/// (and modules) and for configured targets: slow or many ad-hoc probes must not answer 429 to
/// the blackbox-style jobs that scrape configured targets.
pub struct ProbeGate {
    adhoc: Lane,
    configured: Lane,
}

/// A rate limit and an in-flight cap.
struct Lane {
    limiter: DefaultDirectRateLimiter,
    in_flight: Semaphore,
}

impl Lane {
    fn new(s: &ProbeEndpointSettings) -> Lane {
        let rate = NonZeroU32::new(s.rate_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(s.burst).unwrap_or(rate);
        Lane {
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            in_flight: Semaphore::new(s.max_concurrent),
        }
    }
}

impl ProbeGate {
    /// Limits from `probe:` settings, applied to each lane apart.
    pub fn new(s: &ProbeEndpointSettings) -> ProbeGate {
        ProbeGate {
            adhoc: Lane::new(s),
            configured: Lane::new(s),
        }
    }
}

/// Checks `Authorization: Bearer TOKEN` against the configured token (in constant time); with no
/// token configured every request passes. The error is the 401 to answer.
pub(crate) fn authorized(headers: &HeaderMap, token: Option<&str>) -> Result<(), Box<Response>> {
    let Some(token) = token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            // The auth scheme is case-insensitive (RFC 9110, section 11.1).
            let (scheme, credentials) = h.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| credentials.trim())
        })
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        return Ok(());
    }
    let mut r = plain(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        "Bearer".parse().expect("static header"),
    );
    Err(Box::new(r))
}

/// A parsed `/probe` query.
#[derive(Debug, Default)]
pub(crate) struct ProbeQuery {
    pub(crate) target: Option<String>,
    pub(crate) checks: Vec<String>,
    pub(crate) family: Option<String>,
    pub(crate) module: Option<String>,
    pub(crate) timeout: Option<String>,
    pub(crate) format: Option<String>,
    pub(crate) debug: bool,
}

fn parse_query(raw: Option<&str>) -> Result<ProbeQuery, String> {
    let mut q = ProbeQuery::default();
    for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        let v = v.into_owned();
        match k.as_ref() {
            "target" => q.target = Some(v),
            "check" => q.checks.push(v),
            "family" => q.family = Some(v),
            "module" => q.module = Some(v),
            "timeout" => q.timeout = Some(v),
            "format" => q.format = Some(v),
            "debug" => {
                q.debug = match v.trim() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" | "" => false,
                    other => return Err(format!("debug `{other}` is not true or false")),
                }
            }
            _ => {} // blackbox_exporter ignores unknown parameters too
        }
    }
    Ok(q)
}

fn plain(status: StatusCode, msg: impl Into<String>) -> Response {
    let mut m = msg.into();
    if !m.ends_with('\n') {
        m.push('\n');
    }
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        m,
    )
        .into_response()
}

/// The deadline: the scrape timeout header minus the offset, or `timeout=`, capped by config.
fn probe_timeout(
    headers: &HeaderMap,
    param: Option<&str>,
    s: &ProbeEndpointSettings,
) -> Result<Duration, String> {
    // Seconds (`2.5`) or a duration (`2500ms`), more than zero. Numbers too large for a
    // `Duration` saturate (the config's cap applies below); NaN, infinities, zero and negatives
    // are refused.
    let parse_secs = |v: &str| -> Option<Duration> {
        let v = v.trim();
        let d = match v.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => {
                Some(Duration::try_from_secs_f64(f).unwrap_or(Duration::MAX))
            }
            Ok(_) => None,
            Err(_) => humantime::parse_duration(v).ok(),
        };
        d.filter(|d| !d.is_zero())
    };
    let mut t = s.max_timeout;
    if let Some(h) = headers
        .get("x-prometheus-scrape-timeout-seconds")
        .and_then(|h| h.to_str().ok())
    {
        let scrape = parse_secs(h).ok_or_else(|| {
            format!("X-Prometheus-Scrape-Timeout-Seconds `{h}` is not a positive number of seconds")
        })?;
        t = t.min(
            scrape
                .saturating_sub(s.timeout_offset)
                .max(Duration::from_millis(100)),
        );
    }
    if let Some(p) = param {
        let d = parse_secs(p)
            .ok_or_else(|| format!("timeout `{p}` is not a positive duration like 5s or 2.5"))?;
        t = t.min(d);
    }
    Ok(t)
}

fn families_param(v: Option<&str>) -> Result<Option<Vec<Family>>, String> {
    match v.map(str::trim) {
        None | Some("") | Some("both") | Some("any") => Ok(None),
        Some(f) => Family::parse(f)
            .map(|f| Some(vec![f]))
            .ok_or_else(|| format!("family `{f}` is not ipv4, ipv6 or both")),
    }
}

/// Which target a request resolves to, and whether it is ad hoc (guarded). `targets` are the
/// generation's (configured and discovered): a name among them is that target.
fn resolve_target(
    q: &ProbeQuery,
    config: &Config,
    targets: &[Arc<Target>],
    families: &Option<Vec<Family>>,
    timeout: Duration,
    policy: &dyn AddressPolicy,
) -> Result<(Arc<Target>, bool), (StatusCode, String)> {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let name = q
        .target
        .as_deref()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| bad("the `target` parameter is required".into()))?;
    if let Some(t) = targets.iter().find(|t| t.name == name) {
        let mut t = (**t).clone();
        if let Some(f) = families {
            t.families.retain(|x| f.contains(x));
            if t.families.is_empty() {
                return Err(bad(format!("target `{name}` is not probed over {}", f[0])));
            }
        }
        return Ok((Arc::new(t), false));
    }
    // The metadata guard comes first: a forbidden literal is refused (403) whatever else the
    // request says, even when it would also be malformed for the family or module asked.
    // The policy's own rules: NAT64 forms under the agent's learned prefixes included.
    if let Ok((Host::Ip(ip), ..)) = adhoc::split_target(name)
        && let Err(f) = policy.check(ip)
    {
        return Err((StatusCode::FORBIDDEN, f.detail));
    }
    if let Some(m) = &q.module {
        let template = config
            .modules
            .get(m)
            .ok_or_else(|| bad(format!("unknown module `{m}`")))?;
        let (host, port, _, path) = adhoc::split_target(name).map_err(|e| bad(e.0))?;
        let mut t = (**template).clone();
        t.name = name.to_string();
        t.port = port.unwrap_or(template.port);
        if let Some(p) = path {
            crate::checks::http::set_path(&mut t, p);
        }
        if let Host::Ip(ip) = host {
            t.checks
                .retain(|k| crate::checks::check_for(*k).layer() != Layer::Resolve);
            t.families.retain(|f| *f == Family::of(ip));
        }
        if let Some(f) = families {
            t.families.retain(|x| f.contains(x));
        }
        if t.families.is_empty() || t.checks.is_empty() {
            return Err(bad(format!(
                "module `{m}` has nothing to probe on `{name}` for that family"
            )));
        }
        t.host = host;
        t.source = TargetSource::Adhoc;
        return Ok((Arc::new(t), true));
    }
    let t = adhoc::build(&AdhocRequest {
        target: name.to_string(),
        checks: q.checks.clone(),
        families: families.clone().unwrap_or_default(),
        timeout,
    })
    .map_err(|e| bad(e.0))?;
    Ok((t, true))
}

/// A `/probe` request resolved to what it would probe, before any limit applies or any socket
/// opens: the steps the handler and the fuzz target (`crate::fuzzing`) share.
pub(crate) struct Resolved {
    /// The parsed query.
    pub(crate) q: ProbeQuery,
    /// What to probe.
    pub(crate) target: Arc<Target>,
    /// Not a configured target: held to `probe.allow` and the metadata guard.
    pub(crate) adhoc: bool,
    /// The probe's deadline.
    pub(crate) timeout: Duration,
}

/// Query, deadline, family, target and, for an ad-hoc target, `policy`, in that order; an `Err`
/// is the status and message to answer.
pub(crate) fn resolve_request(
    config: &Config,
    targets: &[Arc<Target>],
    policy: &dyn AddressPolicy,
    headers: &HeaderMap,
    raw: Option<&str>,
) -> Result<Resolved, (StatusCode, String)> {
    let bad = |e: String| (StatusCode::BAD_REQUEST, e);
    let q = parse_query(raw).map_err(bad)?;
    let timeout =
        probe_timeout(headers, q.timeout.as_deref(), &config.probe_endpoint).map_err(bad)?;
    let families = families_param(q.family.as_deref()).map_err(bad)?;
    let (target, adhoc) = resolve_target(&q, config, targets, &families, timeout, policy)?;
    if adhoc {
        policy
            .check_host(&target.host)
            .map_err(|f| (StatusCode::FORBIDDEN, f.detail))?;
    }
    Ok(Resolved {
        q,
        target,
        adhoc,
        timeout,
    })
}

/// `GET /probe`.
pub async fn handle(
    State(served): State<Arc<Served>>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let generation: Arc<Generation> = served.agent.current();
    let gate = served.gates.for_config(&generation.config);
    let settings = &generation.config.probe_endpoint;
    // Our own check, sent back here by a redirect or a name that resolves to this task: running
    // it would fan out again, without end.
    if let Some(own) = &served.agent.own_listener
        && headers
            .get(crate::net::own_listener::ORIGIN_HEADER)
            .is_some_and(|v| v.as_bytes() == own.origin().as_bytes())
    {
        tracing::warn!("/probe request from this agent's own check refused (a loop)");
        return plain(
            StatusCode::FORBIDDEN,
            "refused: this request comes from this agent's own check (a loop back into /probe)",
        );
    }
    if let Err(r) = authorized(&headers, settings.token.as_deref()) {
        return *r;
    }
    let Resolved {
        q,
        target,
        adhoc,
        timeout,
    } = match resolve_request(
        &generation.config,
        &generation.targets,
        generation.adhoc_policy.as_ref(),
        &headers,
        raw.as_deref(),
    ) {
        Ok(r) => r,
        Err((status, msg)) => {
            if status == StatusCode::FORBIDDEN {
                let asked = parse_query(raw.as_deref())
                    .ok()
                    .and_then(|q| q.target)
                    .unwrap_or_default();
                tracing::warn!(target = %asked, reason = %msg, "ad-hoc probe refused");
            }
            return plain(status, msg);
        }
    };
    let lane = if adhoc { &gate.adhoc } else { &gate.configured };
    if lane.limiter.check().is_err() {
        return plain(
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit: too many /probe requests",
        );
    }
    let Ok(_permit) = lane.in_flight.try_acquire() else {
        return plain(
            StatusCode::TOO_MANY_REQUESTS,
            "too many /probe requests in flight",
        );
    };
    let env = if adhoc {
        &generation.adhoc_env
    } else {
        &generation.env
    };
    let now = tokio::time::Instant::now();
    let deadline = now
        .checked_add(timeout)
        .unwrap_or_else(|| now + Duration::from_secs(86_400));
    let keep_debug = q.debug;
    let reports: Vec<CycleReport> = join_all(
        target
            .families
            .iter()
            .map(|&f| run_cycle_until(&target, f, env, keep_debug, Some(deadline))),
    )
    .await;
    if adhoc
        && let Some(f) = reports.iter().flat_map(|r| &r.checks).find_map(|o| {
            o.result
                .as_ref()
                .err()
                .filter(|f| f.reason == FailureReason::Forbidden)
        })
    {
        tracing::warn!(target = %target.name, reason = %f.detail, "ad-hoc probe refused");
        return plain(StatusCode::FORBIDDEN, f.detail.clone());
    }
    let wants_json = q.format.as_deref() == Some("json")
        || headers
            .get(header::ACCEPT)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|a| a.contains("application/json"));
    if wants_json {
        return axum::Json(serde_json::json!({
            "target": target.name,
            "families": reports,
        }))
        .into_response();
    }
    // One family probed (asked for, or the only one the target, module or IP literal has):
    // blackbox_exporter's names without a `family` label. `family=both` keeps the label.
    let explicit_both = matches!(q.family.as_deref().map(str::trim), Some("both" | "any"));
    let single = !explicit_both && target.families.len() == 1;
    let body = render(&reports, single);
    if q.debug {
        let mut out = String::from("Logs for the probe:\n");
        for r in &reports {
            for line in &r.debug {
                let _ = writeln!(out, "[{}] {line}", r.family);
            }
        }
        out.push_str("\n\nMetrics that would have been returned:\n");
        out.push_str(&body);
        return plain(StatusCode::OK, out);
    }
    (
        [(
            header::CONTENT_TYPE,
            crate::report::metrics::Format::PrometheusText.content_type(),
        )],
        body,
    )
        .into_response()
}

/// Gauge lines grouped by metric name, rendered with HELP/TYPE once per name.
#[derive(Default)]
struct Exposition {
    metrics: BTreeMap<&'static str, (&'static str, Vec<String>)>,
}

impl Exposition {
    fn add(&mut self, name: &'static str, help: &'static str, labels: &[(&str, &str)], value: f64) {
        let pairs: Vec<String> = labels.iter().map(|(k, v)| prom_text::label(k, v)).collect();
        let pairs: Vec<&str> = pairs.iter().map(String::as_str).collect();
        let mut line = String::new();
        prom_text::sample(&mut line, name, &pairs, &value.to_string());
        self.metrics
            .entry(name)
            .or_insert((help, Vec::new()))
            .1
            .push(line);
    }

    fn finish(self) -> String {
        let mut out = String::new();
        for (name, (help, lines)) in self.metrics {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            for l in lines {
                out.push_str(&l);
            }
        }
        out
    }
}

/// Renders reports. With one family the blackbox_exporter names carry no `family` label, so
/// existing dashboards and alerts work unchanged; the per-check series always carry it.
fn render(reports: &[CycleReport], single_family: bool) -> String {
    let mut e = Exposition::default();
    for r in reports {
        let fam = r.family.as_str();
        let fam_labels: Vec<(&str, &str)> = if single_family {
            vec![]
        } else {
            vec![("family", fam)]
        };
        let success = r.expectation_met.unwrap_or_else(|| r.all_passed());
        e.add(
            "probe_success",
            "Whether the probe succeeded (met its expectation)",
            &fam_labels,
            f64::from(u8::from(success)),
        );
        e.add(
            "probe_duration_seconds",
            "How long the probe took",
            &fam_labels,
            r.duration().as_secs_f64(),
        );
        e.add(
            "probe_ip_protocol",
            "The IP protocol of the probe (4 or 6)",
            &fam_labels,
            f64::from(r.family.ip_version()),
        );
        for o in &r.checks {
            let check = o.check.name();
            let labels = [("check", check), ("family", fam)];
            e.add(
                "dualprobe_check_success",
                "Whether the check passed",
                &labels,
                f64::from(u8::from(o.passed())),
            );
            e.add(
                "dualprobe_check_duration_seconds",
                "How long the check took",
                &labels,
                o.duration.as_secs_f64(),
            );
            if let Err(f) = &o.result {
                e.add(
                    "dualprobe_check_failure_info",
                    "Why the check failed (always 1)",
                    &[
                        ("check", check),
                        ("family", fam),
                        ("reason", f.reason.as_str()),
                    ],
                    1.0,
                );
            }
            if let Some((name, help)) = check_for(o.check).blackbox_duration() {
                e.add(name, help, &fam_labels, o.duration.as_secs_f64());
            }
            for (what, value) in &o.observations.measured {
                match what.blackbox {
                    Some((name, help)) => e.add(name, help, &fam_labels, *value as f64),
                    None => e.add(
                        what.metric,
                        what.probe_help,
                        &[("family", fam)],
                        *value as f64,
                    ),
                }
            }
            for v in &o.observations.per_target {
                match v.family {
                    Some(f) => e.add(
                        v.what.metric,
                        v.what.help,
                        &[("family", f.as_str())],
                        v.value,
                    ),
                    None => e.add(v.what.metric, v.what.help, &[], v.value),
                }
            }
        }
        if let Some(met) = r.expectation_met {
            e.add(
                "dualprobe_expectation_met",
                "Whether the target's expectation held",
                &[("family", fam)],
                f64::from(u8::from(met)),
            );
        }
        if let Some(path) = &r.ipv6_path {
            for via in ["native", "nat64"] {
                e.add(
                    "dualprobe_ipv6_path",
                    "1 for the IPv6 path used (native, or nat64: a DNS64-synthesized address), 0 for the other",
                    &[("via", via)],
                    f64::from(u8::from(path.via.as_str() == via)),
                );
            }
        }
    }
    e.finish()
}
