//! `http`: one request over the cycle's family with reqwest, and the `http:` section of targets
//! and modules (scheme, path, accepted statuses, redirects) that only this check reads. The
//! family is held through redirects: the client's resolver answers only the family's records,
//! and a redirect to an IP literal of the other family is refused.

use std::any::Any;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock};

use futures_util::future::BoxFuture;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Check, CheckContext, CheckEnv, Configure, line_of};
use crate::model::check_kind::CheckKind;
use crate::model::failure::{Failure, FailureReason};
use crate::model::family::Family;
use crate::model::outcome::{CheckOutput, Measurement, Observations};
use crate::model::target::{AddressSelection, Host, Target};
use crate::net::http::{self, CarriedFailure, ClientOptions, Protocols, off_family};

/// The final response's status.
static STATUS: Measurement = Measurement {
    metric: "dualprobe_http_status_code",
    help: "Status of the last HTTP response",
    blackbox: Some(("probe_http_status_code", "Response HTTP status code")),
    probe_help: "",
    key: "http_status",
    describe: Some(describe_status),
};

static MEASURED: &[&Measurement] = &[&STATUS];

fn describe_status(status: i64) -> String {
    format!("HTTP {status}")
}

/// The `http` check.
pub struct Http;

/// The `http:` section of a target or module, as serde reads it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    path: Option<String>,
    scheme: Option<Spanned<String>>,
    expect_status: Option<Vec<Spanned<StatusText>>>,
    follow_redirects: Option<bool>,
}

/// `200` or `"2xx"`: read as text either way so one parser judges it.
#[derive(Debug)]
pub struct StatusText(String);

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

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP.
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// As written in URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

/// One accepted HTTP status: an exact code or a class such as `2xx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatcher {
    /// Exactly this code.
    Code(u16),
    /// Any code of this hundred (2 for `2xx`).
    Class(u16),
}

impl StatusMatcher {
    /// Parses `200` or `2xx`.
    pub fn parse(s: &str) -> Option<StatusMatcher> {
        let s = s.trim();
        if let Some(d) = s.strip_suffix("xx").or_else(|| s.strip_suffix("XX")) {
            let d: u16 = d.parse().ok()?;
            (1..=5).contains(&d).then_some(StatusMatcher::Class(d))
        } else {
            let c: u16 = s.parse().ok()?;
            (100..=599).contains(&c).then_some(StatusMatcher::Code(c))
        }
    }

    /// True when `status` matches.
    pub fn matches(self, status: u16) -> bool {
        match self {
            StatusMatcher::Code(c) => c == status,
            StatusMatcher::Class(d) => status / 100 == d,
        }
    }
}

/// What the `http` check reads back from a target.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Set by `http.scheme` (or an ad-hoc URL); when unset, [`scheme`] derives it from the
    /// chain and port, so a module's port override moves the scheme with it.
    pub scheme: Option<Scheme>,
    /// Request path (with query), starting with `/`.
    pub path: String,
    /// Accepted statuses (default `2xx`).
    pub expect_status: Vec<StatusMatcher>,
    /// Follow redirects (held to the same family).
    pub follow_redirects: bool,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            scheme: None,
            path: "/".into(),
            expect_status: vec![StatusMatcher::Class(2)],
            follow_redirects: true,
        }
    }
}

/// `target`'s `http:` settings (the defaults when it has no section).
pub fn settings(target: &Target) -> &Settings {
    static DEFAULT: LazyLock<Settings> = LazyLock::new(Settings::default);
    target
        .settings
        .get::<Settings>(CheckKind::Http)
        .unwrap_or(&DEFAULT)
}

/// Replaces `target`'s request path (a `/probe?module=` request's own path).
pub fn set_path(target: &mut Target, path: String) {
    let mut s = settings(target).clone();
    s.path = path;
    target.settings.set(CheckKind::Http, Arc::new(s));
}

/// The scheme `target`'s request uses: `http.scheme` when set, else HTTPS when the chain has
/// `tls` or the port is 443, else HTTP.
pub fn scheme(target: &Target) -> Scheme {
    settings(target).scheme.unwrap_or(
        if target.checks.contains(&CheckKind::Tls) || target.port == 443 {
            Scheme::Https
        } else {
            Scheme::Http
        },
    )
}

impl Configure for Http {
    type Raw = Raw;

    fn configure(
        raw: &Raw,
        field: &str,
        problem: &mut dyn FnMut(Option<u64>, String, String),
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let mut ok = true;
        let scheme = match &raw.scheme {
            None => None,
            Some(s) if s.value == "http" => Some(Scheme::Http),
            Some(s) if s.value == "https" => Some(Scheme::Https),
            Some(s) => {
                ok = false;
                problem(
                    line_of(s),
                    format!("{field}.scheme"),
                    format!("`{}` is not http or https", s.value),
                );
                None
            }
        };
        let mut expect_status = Vec::new();
        for (j, s) in raw.expect_status.iter().flatten().enumerate() {
            match StatusMatcher::parse(&s.value.0) {
                Some(m) => expect_status.push(m),
                None => {
                    ok = false;
                    problem(
                        line_of(s),
                        format!("{field}.expect_status[{j}]"),
                        format!("`{}` is not a status like 200 or \"2xx\"", s.value.0),
                    );
                }
            }
        }
        if expect_status.is_empty() {
            expect_status.push(StatusMatcher::Class(2));
        }
        let mut path = raw.path.clone().unwrap_or_else(|| "/".to_string());
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let settings = Settings {
            scheme,
            path,
            expect_status,
            follow_redirects: raw.follow_redirects.unwrap_or(true),
        };
        ok.then(|| Arc::new(settings) as Arc<dyn Any + Send + Sync>)
    }

    /// A target with an `http:` section and no `tls` in its chain defaults to port 80, or 443
    /// for `scheme: https`.
    fn default_port(raw: &Raw) -> Option<u16> {
        Some(match raw.scheme.as_ref().map(|s| s.value.as_str()) {
            Some("https") => 443,
            _ => 80,
        })
    }
}

impl Check for Http {
    fn measurements(&self) -> &'static [&'static Measurement] {
        MEASURED
    }

    fn run<'a>(&'a self, cx: &'a mut CheckContext<'_>) -> BoxFuture<'a, CheckOutput> {
        Box::pin(async move {
            // Resolve (and guard) first so an IP literal of the other family fails clearly.
            let addresses = match cx.addresses().await {
                Ok(a) => a,
                Err(f) => return CheckOutput::fail(f),
            };
            let target = cx.target;
            let family = cx.family;
            // The resolver below re-checks names, but a literal host never reaches it.
            if let Some(f) = addresses.iter().find_map(|ip| off_family(*ip, family)) {
                return CheckOutput::fail(f);
            }
            for ip in &addresses {
                if let Err(f) = cx.env.check_socket(SocketAddr::new(*ip, target.port)) {
                    return CheckOutput::fail(f);
                }
            }
            let url_host = match server_name_alias(target) {
                Some((server_name, _)) => server_name,
                None => target.host.url_host(),
            };
            let url = format!(
                "{}://{url_host}:{}{}",
                scheme(target).as_str(),
                target.port,
                settings(target).path
            );
            // `addresses: all`: one request pinned to each resolved address, all must pass.
            let pins: Vec<Option<IpAddr>> = match (&target.host, target.addresses) {
                (Host::Name(_), AddressSelection::All) if addresses.len() > 1 => {
                    addresses.iter().copied().map(Some).collect()
                }
                _ => vec![None],
            };
            let mut passed = None;
            for pin in pins {
                let client = match pin {
                    None => cx
                        .env
                        .client(target, family, "http", || {
                            build_client(target, family, cx.env, None)
                        })
                        .map(|c| (*c).clone()),
                    Some(ip) => build_client(target, family, cx.env, Some((url_host.clone(), ip))),
                };
                let client = match client {
                    Ok(c) => c,
                    Err(f) => return CheckOutput::fail(f),
                };
                if let Some(ip) = pin.or(addresses.first().copied()) {
                    cx.attempting(SocketAddr::new(ip, target.port));
                }
                let mut out = request(cx, &client, &url, pin).await;
                if pin.is_some() {
                    out.observations.addresses.clone_from(&addresses);
                }
                if out.result.is_err() {
                    return out;
                }
                // The first address's answer stands for the check (status, remote).
                passed.get_or_insert(out);
            }
            passed.unwrap_or_else(|| {
                CheckOutput::fail(Failure::new(FailureReason::Other, "no request was sent"))
            })
        })
    }
}

/// One GET of `url` (pinned to `pin` when set) and what its answer means.
async fn request(
    cx: &mut CheckContext<'_>,
    client: &reqwest::Client,
    url: &str,
    pin: Option<IpAddr>,
) -> CheckOutput {
    let (target, family) = (cx.target, cx.family);
    match pin {
        Some(ip) => cx.debug(format!("GET {url} over {family}, to {ip}")),
        None => cx.debug(format!("GET {url} over {family}")),
    }
    match client.get(url).send().await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            let obs = Observations {
                remote: resp.remote_addr(),
                ..Observations::default()
            }
            .measure(&STATUS, i64::from(status));
            if let Some(remote) = resp.remote_addr()
                && Family::of(remote.ip()) != family
            {
                return CheckOutput::fail(Failure::new(
                    FailureReason::Other,
                    format!("answered from {remote}, not over {family}"),
                ))
                .with(obs);
            }
            cx.debug(format!(
                "{} {status} from {:?}",
                resp.url(),
                resp.remote_addr()
            ));
            if settings(target).expect_status.iter().any(|m| m.matches(status)) {
                CheckOutput::pass(obs)
            } else {
                let at = pin.map(|ip| format!(" (at {ip})")).unwrap_or_default();
                CheckOutput::fail(Failure::new(
                    FailureReason::HttpStatus,
                    format!(
                        "status {status} from {}{at} is not an expected one",
                        resp.url()
                    ),
                ))
                .with(obs)
            }
        }
        Err(e) => {
            let mut f = http::classify(&e);
            // A connect that failed at a synthesized address: the NAT64 path is what broke.
            if e.is_connect()
                && let Some(ip) = pin.or(cx.attempting_ip())
            {
                f = cx.nat64_failure(SocketAddr::new(ip, target.port), f);
            }
            if let Some(ip) = pin {
                f.detail = format!("{ip}: {}", f.detail);
            }
            CheckOutput::fail(f)
        }
    }
}

/// For HTTPS with `tls.server_name` other than the host: the name the request uses (for SNI,
/// certificate verification and the Host header) and the host it really goes to.
fn server_name_alias(target: &Target) -> Option<(String, Host)> {
    let sn = target
        .tls
        .server_name
        .as_deref()?
        .trim()
        .to_ascii_lowercase();
    (scheme(target) == Scheme::Https && !sn.is_empty() && Host::parse(&sn) != target.host)
        .then(|| (sn, target.host.clone()))
}

/// One client per (target, family): pinned resolver, the target's TLS roots, no proxy from the
/// environment, no connection pooling (every probe opens a real connection).
/// `pin` sends the request's name to one address (`addresses: all`), like curl's `--resolve`.
pub fn build_client(
    target: &Target,
    family: Family,
    env: &CheckEnv,
    pin: Option<(String, IpAddr)>,
) -> Result<reqwest::Client, Failure> {
    let policy = env.policy.clone();
    let own = env.own.clone();
    let redirect_policy = {
        let policy = policy.clone();
        let follow = settings(target).follow_redirects;
        reqwest::redirect::Policy::custom(move |attempt| {
            if !follow {
                return attempt.stop();
            }
            if attempt.previous().len() >= 10 {
                return attempt.error(CarriedFailure(Failure::new(
                    FailureReason::HttpStatus,
                    "more than 10 redirects",
                )));
            }
            let host = attempt.url().host_str().map(crate::model::target::Host::parse);
            // Every hop passes the policy first: literals are guarded, names must be allowed.
            if let (Some(p), Some(h)) = (&policy, &host)
                && let Err(f) = p.check_host(h)
            {
                return attempt.error(CarriedFailure(f));
            }
            // A hop back into this agent (its `/probe` would fan the request out again).
            if let (Some(own), Some(Host::Ip(ip)), Some(port)) =
                (&own, &host, attempt.url().port_or_known_default())
                && let Err(f) = own.check(SocketAddr::new(*ip, port))
            {
                return attempt.error(CarriedFailure(f));
            }
            if let Some(crate::model::target::Host::Ip(ip)) = &host
                && let Some(f) = off_family(*ip, family)
            {
                let msg = format!(
                    "redirect to {} leaves {family}: {}",
                    attempt.url(),
                    f.detail
                );
                return attempt.error(CarriedFailure(Failure::new(
                    FailureReason::Unreachable,
                    msg,
                )));
            }
            attempt.follow()
        })
    };
    http::build_client(ClientOptions {
        family: Some(family),
        resolver: env.resolver.clone(),
        policy,
        tls: Arc::clone(&target.tls.client_config),
        protocols: Protocols::Http2AndHttp1,
        timeout: target.timeout,
        pool: false,
        redirect: redirect_policy,
        // A pinned address was resolved and guarded by the check already.
        alias_exempt: pin.is_some() || target.allow_metadata_address,
        alias: match pin {
            Some((name, ip)) => Some((name, Host::Ip(ip))),
            None => server_name_alias(target),
        },
        origin: env.own.as_ref().map(|o| o.origin().to_string()),
    })
}
