//! Probers and the chain that runs them. Each probe kind lives in its own file behind the
//! [`Prober`] trait; [`PROBERS`] is the one list of kinds. A prober returns a [`CheckOutput`] with a
//! typed [`FailureReason`] and never touches metrics: results flow on to `results`.

mod dns;
mod ec2;
mod http;
mod private_dns;
pub mod reason;
mod s3;
mod tcp;
mod tls;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::BoxFuture;
use serde::Serialize;
use tokio::net::TcpStream;

use crate::env::ProbeEnv;
use crate::family::Family;
use crate::target::{AddressSelection, Expect, Host, Target};
pub use reason::{Failure, FailureReason};

/// Every probe kind, in the order a chain runs them. Adding a kind: one new file plus one line here.
pub static PROBERS: &[&dyn Prober] = &[
    &dns::Dns,
    &private_dns::PrivateDns,
    &tcp::Tcp,
    &tls::Tls,
    &http::Http,
    &s3::S3,
    &ec2::Ec2,
];

/// How deep into the stack a check goes; `expect: unreachable` is judged on the layers above
/// name resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Layer {
    /// Name resolution: may succeed even when the path is down.
    Resolve,
    /// Anything that sends packets to the target's address.
    Connect,
}

/// One probe kind. Implementations are unit structs registered in [`PROBERS`].
pub trait Prober: Send + Sync + 'static {
    /// The name used in config (`checks: [...]`) and as the `check` label.
    fn name(&self) -> &'static str;

    /// Which layer the check exercises.
    fn layer(&self) -> Layer {
        Layer::Connect
    }

    /// Rejects a target this check cannot run on (e.g. `s3` without an `aws:` block). The message
    /// names the missing field.
    fn validate(&self, _target: &Target) -> Result<(), String> {
        Ok(())
    }

    /// Runs the check. Called only after every earlier check of the chain passed; the runner
    /// enforces the deadline and measures the duration.
    fn probe<'a>(&'a self, cx: &'a mut ProbeContext<'_>) -> BoxFuture<'a, CheckOutput>;
}

/// A registered probe kind, compared by name.
#[derive(Clone, Copy)]
pub struct CheckKind(&'static dyn Prober);

impl CheckKind {
    /// Looks a kind up by its config name.
    pub fn from_name(name: &str) -> Option<CheckKind> {
        PROBERS
            .iter()
            .find(|p| p.name() == name)
            .map(|p| CheckKind(*p))
    }

    /// The config name and `check` label.
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// The prober behind this kind.
    pub fn prober(self) -> &'static dyn Prober {
        self.0
    }

    /// Position in [`PROBERS`]: chains run in this order.
    pub fn order(self) -> usize {
        PROBERS
            .iter()
            .position(|p| p.name() == self.name())
            .unwrap_or(usize::MAX)
    }

    /// All names, for error messages and help.
    pub fn all_names() -> Vec<&'static str> {
        PROBERS.iter().map(|p| p.name()).collect()
    }
}

impl PartialEq for CheckKind {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}
impl Eq for CheckKind {}

impl std::hash::Hash for CheckKind {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state)
    }
}

impl fmt::Debug for CheckKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for CheckKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// What a check observed besides pass/fail; each field feeds one metric or JSON field.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Observations {
    /// Addresses the check resolved or tried, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<IpAddr>,
    /// Number of answers of this family's record type.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_answers: Option<u32>,
    /// The peer actually connected to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<SocketAddr>,
    /// Leaf certificate notAfter, unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cert_not_after: Option<i64>,
    /// Final HTTP status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// On a pass: a reason that still goes into the `result` label. AWS answering AccessDenied
    /// proves the family's path (the check passes) but is counted as `aws_denied`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<Failure>,
}

/// What a prober hands back: pass or a typed failure, plus observations either way.
#[derive(Debug, Clone)]
pub struct CheckOutput {
    /// Pass, or why not.
    pub result: Result<(), Failure>,
    /// What was seen on the way.
    pub observations: Observations,
}

impl CheckOutput {
    /// A pass with observations.
    pub fn pass(observations: Observations) -> CheckOutput {
        CheckOutput {
            result: Ok(()),
            observations,
        }
    }

    /// A failure with no observations.
    pub fn fail(failure: Failure) -> CheckOutput {
        CheckOutput {
            result: Err(failure),
            observations: Observations::default(),
        }
    }

    /// Replaces the observations.
    pub fn with(mut self, observations: Observations) -> CheckOutput {
        self.observations = observations;
        self
    }
}

/// The outcome of one check in one cycle.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Which check.
    pub check: CheckKind,
    /// Pass, or the typed failure.
    #[serde(flatten, serialize_with = "serialize_result")]
    pub result: Result<(), Failure>,
    /// Wall time the check took (zero when skipped).
    #[serde(serialize_with = "serialize_secs")]
    pub duration: Duration,
    /// What it observed.
    #[serde(flatten)]
    pub observations: Observations,
}

impl Outcome {
    /// True when the check passed.
    pub fn passed(&self) -> bool {
        self.result.is_ok()
    }

    /// `ok` (or a pass's note, e.g. `aws_denied`) or the failure reason: the `result` label.
    pub fn result_label(&self) -> &'static str {
        self.result_reason().map_or("ok", FailureReason::as_str)
    }

    /// The reason behind [`Outcome::result_label`]: `None` for a plain `ok`, else the failure
    /// reason or a pass's note.
    pub fn result_reason(&self) -> Option<FailureReason> {
        match &self.result {
            Ok(()) => self.observations.note.as_ref().map(|n| n.reason),
            Err(f) => Some(f.reason),
        }
    }
}

fn serialize_result<S: serde::Serializer>(
    r: &Result<(), Failure>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(None)?;
    match r {
        Ok(()) => {
            m.serialize_entry("success", &true)?;
            m.serialize_entry("reason", "ok")?;
        }
        Err(f) => {
            m.serialize_entry("success", &false)?;
            m.serialize_entry("reason", f.reason.as_str())?;
            m.serialize_entry("detail", &f.detail)?;
        }
    }
    m.end()
}

fn serialize_secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Everything one cycle of one (target, family) produced.
#[derive(Debug, Clone, Serialize)]
pub struct CycleReport {
    /// The target probed.
    #[serde(skip)]
    pub target: Arc<Target>,
    /// The family it was pinned to.
    pub family: Family,
    /// One outcome per configured check, in chain order.
    pub checks: Vec<Outcome>,
    /// Whether the cycle matched the target's expectation for this family (`None` for `any`).
    pub expectation_met: Option<bool>,
    /// When the cycle finished.
    #[serde(skip)]
    pub finished_at: SystemTime,
    /// Debug lines the probers wrote (kept only when asked for).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub debug: Vec<String>,
}

impl CycleReport {
    /// True when every check passed.
    pub fn all_passed(&self) -> bool {
        self.checks.iter().all(Outcome::passed)
    }

    /// Total time of the cycle.
    pub fn duration(&self) -> Duration {
        self.checks.iter().map(|o| o.duration).sum()
    }
}

/// Shared state of one cycle: the target, the family, and what earlier checks left behind
/// (resolved addresses, an open connection) for later ones.
pub struct ProbeContext<'a> {
    /// The target being probed.
    pub target: &'a Target,
    /// The family every socket of this cycle is pinned to.
    pub family: Family,
    /// Shared resources: resolver, clients, address guard.
    pub env: &'a ProbeEnv,
    /// The per-check deadline.
    pub timeout: Duration,
    addresses: Option<Vec<IpAddr>>,
    connection: Option<TcpStream>,
    debug: Option<Vec<String>>,
}

impl<'a> ProbeContext<'a> {
    /// A fresh context for one cycle.
    pub fn new(target: &'a Target, family: Family, env: &'a ProbeEnv, debug: bool) -> Self {
        ProbeContext {
            target,
            family,
            env,
            timeout: target.timeout,
            addresses: None,
            connection: None,
            debug: debug.then(Vec::new),
        }
    }

    /// Records a debug line (kept only for `debug=true` probes; logged at trace level always).
    pub fn debug(&mut self, line: impl Into<String>) {
        let line = line.into();
        tracing::trace!(target = %self.target.name, family = %self.family, "{line}");
        if let Some(lines) = &mut self.debug {
            lines.push(line);
        }
    }

    /// Stores what the `dns` check resolved, for later checks.
    pub fn set_addresses(&mut self, addresses: Vec<IpAddr>) {
        self.addresses = Some(addresses);
    }

    /// The addresses of this family to connect to: what `dns` resolved, the IP literal, or a fresh
    /// lookup when the chain has no `dns` check. Guarded addresses are refused here.
    pub async fn addresses(&mut self) -> Result<Vec<IpAddr>, Failure> {
        if let Some(a) = &self.addresses {
            return Ok(a.clone());
        }
        let addrs = match &self.target.host {
            Host::Ip(ip) => {
                // The guard first: a forbidden literal is refused as such, whatever its family.
                self.env.check_addresses(&[*ip])?;
                if Family::of(*ip) != self.family {
                    return Err(Failure::new(
                        FailureReason::Unreachable,
                        format!("{ip} is not an {} address", self.family),
                    ));
                }
                vec![*ip]
            }
            Host::Name(name) => {
                let answer = self
                    .env
                    .resolver
                    .lookup(name, self.family)
                    .await
                    .map_err(|e| e.to_failure())?;
                answer.addresses
            }
        };
        self.env.check_addresses(&addrs)?;
        self.addresses = Some(addrs.clone());
        Ok(addrs)
    }

    /// The addresses to connect to under the target's `addresses:` selection.
    pub async fn connect_addresses(&mut self) -> Result<Vec<IpAddr>, Failure> {
        let mut addrs = self.addresses().await?;
        if self.target.addresses == AddressSelection::First {
            addrs.truncate(1);
        }
        Ok(addrs)
    }

    /// Keeps the connection the `tcp` check opened for `tls` to reuse.
    pub fn set_connection(&mut self, stream: TcpStream) {
        self.connection = Some(stream);
    }

    /// The connection `tcp` left, or a new one to the first address when the chain has no `tcp`.
    pub async fn take_connection(&mut self) -> Result<TcpStream, Failure> {
        if let Some(s) = self.connection.take() {
            return Ok(s);
        }
        let addrs = self.addresses().await?;
        let first = addrs.first().copied().ok_or_else(|| {
            Failure::new(
                FailureReason::Unreachable,
                format!("no {} address", self.family),
            )
        })?;
        tcp::connect(SocketAddr::new(first, self.target.port)).await
    }
}

/// Runs every configured check of `target` over `family`, in chain order, each under the
/// target's timeout. A check after a failure is reported as `skipped`.
pub async fn run_cycle(
    target: &Arc<Target>,
    family: Family,
    env: &ProbeEnv,
    keep_debug: bool,
) -> CycleReport {
    run_cycle_until(target, family, env, keep_debug, None).await
}

/// [`run_cycle`] that also ends by `deadline`: each check gets the smaller of the target's
/// timeout and what is left, and checks past the deadline time out at once.
pub async fn run_cycle_until(
    target: &Arc<Target>,
    family: Family,
    env: &ProbeEnv,
    keep_debug: bool,
    deadline: Option<tokio::time::Instant>,
) -> CycleReport {
    let mut cx = ProbeContext::new(target, family, env, keep_debug);
    let mut checks = Vec::with_capacity(target.checks.len());
    let mut failed = false;
    for &kind in &target.checks {
        if failed {
            checks.push(Outcome {
                check: kind,
                result: Err(Failure::new(
                    FailureReason::Skipped,
                    "an earlier check failed",
                )),
                duration: Duration::ZERO,
                observations: Observations::default(),
            });
            continue;
        }
        let start = Instant::now();
        let timeout = match deadline {
            Some(d) => cx
                .timeout
                .min(d.saturating_duration_since(tokio::time::Instant::now())),
            None => cx.timeout,
        };
        let output = match tokio::time::timeout(timeout, kind.prober().probe(&mut cx)).await {
            Ok(output) => output,
            Err(_) => CheckOutput::fail(Failure::new(
                FailureReason::Timeout,
                format!("no answer within {}", humantime::format_duration(timeout)),
            )),
        };
        let duration = start.elapsed();
        if let Err(f) = &output.result {
            cx.debug(format!("{} failed after {duration:?}: {f}", kind.name()));
            failed = true;
        } else {
            cx.debug(format!("{} passed in {duration:?}", kind.name()));
        }
        checks.push(Outcome {
            check: kind,
            result: output.result,
            duration,
            observations: output.observations,
        });
    }
    let expectation_met = judge(target.expect.for_family(family), &checks);
    CycleReport {
        target: Arc::clone(target),
        family,
        checks,
        expectation_met,
        finished_at: SystemTime::now(),
        debug: cx.debug.unwrap_or_default(),
    }
}

/// `reachable`: every check passed. `unreachable`: nothing above name resolution passed (and if
/// only resolution was configured, it failed). `any`: not judged.
pub fn judge(expect: Expect, checks: &[Outcome]) -> Option<bool> {
    match expect {
        Expect::Any => None,
        Expect::Reachable => Some(checks.iter().all(Outcome::passed)),
        Expect::Unreachable => {
            let above: Vec<&Outcome> = checks
                .iter()
                .filter(|o| o.check.prober().layer() > Layer::Resolve)
                .collect();
            if above.is_empty() {
                Some(!checks.iter().all(Outcome::passed))
            } else {
                Some(above.iter().all(|o| !o.passed()))
            }
        }
    }
}
