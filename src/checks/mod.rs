//! The check kinds and the chain that runs them. Each kind lives in its own file behind the
//! [`Check`] trait, and the registry list in `crate::model::check_kind` declares the files and
//! the kind → implementation table below. A check returns a [`CheckOutput`] with a typed
//! [`FailureReason`] and never touches metrics: outcomes flow on to the reports.

mod aws_call;
mod env;
mod judge;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::BoxFuture;
use tokio::net::TcpStream;

pub use env::CheckEnv;
pub use judge::{Verdict, judge};

use crate::model::check_kind::{CheckKind, Layer};
use crate::model::failure::{Failure, FailureReason};
use crate::model::family::Family;
use crate::model::nat64::{Ipv6Path, Via};
use crate::model::outcome::{
    CheckOutput, CycleReport, Measurement, Observations, Outcome, TargetMeasurement,
};
use crate::model::target::{AddressSelection, Host, Target};

macro_rules! register_checks {
    ($($variant:ident $name:literal $module:ident [$($section:ident)?],)*) => {
        $(pub mod $module;)*

        /// The implementation of `kind`.
        pub fn check_for(kind: CheckKind) -> &'static dyn Check {
            match kind {
                $(CheckKind::$variant => &$module::$variant,)*
            }
        }
    };
}
crate::model::check_kind::check_kinds!(register_checks);

/// A check kind with its own config section on targets and modules (e.g. `private_dns:`),
/// named in its registry line: the section's YAML shape and how it becomes the settings the
/// check reads back with `target.settings.get`.
pub trait Configure: Check {
    /// The section as serde reads it (unknown keys denied).
    type Raw: serde::de::DeserializeOwned + std::fmt::Debug;

    /// Validates `raw`; `field` is the section's path (`targets[2].private_dns`). Every problem
    /// goes to `problem(line, field, message)`; `None` when there were any.
    fn configure(
        raw: &Self::Raw,
        field: &str,
        problem: &mut dyn FnMut(Option<u64>, String, String),
    ) -> Option<Arc<dyn std::any::Any + Send + Sync>>;

    /// The port a target with this section defaults to when it sets none, has no `aws:`
    /// endpoint and no `tls` in its chain (those mean 443); `None` leaves it to other kinds.
    fn default_port(_raw: &Self::Raw) -> Option<u16> {
        None
    }
}

/// The 1-based line of a spanned config value, when known.
pub fn line_of<T>(s: &serde_saphyr::Spanned<T>) -> Option<u64> {
    let l = s.referenced.line();
    (l > 0).then_some(l)
}

/// One check kind's behaviour. Implementations are unit structs named after their
/// [`CheckKind`] variant, one per file.
pub trait Check: Send + Sync + 'static {
    /// Which layer the check exercises.
    fn layer(&self) -> Layer {
        Layer::Connect
    }

    /// A diagnosis that runs after an earlier check of the chain failed instead of being
    /// skipped (`trace`).
    fn runs_after_failure(&self) -> bool {
        false
    }

    /// What the check measures besides pass/fail (each a `{target, family}` gauge, a JSON key,
    /// a `/probe` series).
    fn measurements(&self) -> &'static [&'static Measurement] {
        &[]
    }

    /// What the check measures about the target as a whole, not the cycle's family (each a
    /// `{target}` or `{target, family}` float gauge, a JSON key, a `/probe` series).
    fn target_measurements(&self) -> &'static [&'static TargetMeasurement] {
        &[]
    }

    /// The blackbox_exporter series `/probe` derives from this check's duration, e.g.
    /// `probe_dns_lookup_time_seconds` for `dns`: (name, help).
    fn blackbox_duration(&self) -> Option<(&'static str, &'static str)> {
        None
    }

    /// Rejects a target this check cannot run on (e.g. `s3` without an `aws:` block). The message
    /// names the missing field.
    fn validate(&self, _target: &Target) -> Result<(), String> {
        Ok(())
    }

    /// Runs the check. Called only after every earlier check of the chain passed; the runner
    /// enforces the deadline and measures the duration.
    fn run<'a>(&'a self, cx: &'a mut CheckContext<'_>) -> BoxFuture<'a, CheckOutput>;
}

/// Shared state of one cycle: the target, the family, and what earlier checks left behind
/// (resolved addresses, an open connection) for later ones.
pub struct CheckContext<'a> {
    /// The target being probed.
    pub target: &'a Target,
    /// The family every socket of this cycle is pinned to.
    pub family: Family,
    /// Shared resources: resolver, clients, address guard.
    pub env: &'a CheckEnv,
    /// The per-check deadline.
    pub timeout: Duration,
    addresses: Option<Vec<IpAddr>>,
    connection: Option<TcpStream>,
    debug: Option<Vec<String>>,
    /// The address the running check is talking to: what a timeout names.
    attempting: Option<SocketAddr>,
    /// The address a TCP connect is under way to: a deadline passing there, at a synthesized
    /// address, is `nat64_unreachable`, not a plain timeout.
    connecting: Option<SocketAddr>,
    /// Whether an earlier check of this cycle's chain failed.
    chain_failed: bool,
}

impl<'a> CheckContext<'a> {
    /// A fresh context for one cycle.
    pub fn new(target: &'a Target, family: Family, env: &'a CheckEnv, debug: bool) -> Self {
        CheckContext {
            target,
            family,
            env,
            timeout: target.timeout,
            addresses: None,
            connection: None,
            debug: debug.then(Vec::new),
            attempting: None,
            connecting: None,
            chain_failed: false,
        }
    }

    /// Whether an earlier check of this cycle's chain failed (for diagnoses such as `trace`).
    pub fn chain_failed(&self) -> bool {
        self.chain_failed
    }

    /// Opens a TCP connection to `addr` for a check: refused when it is the agent's own
    /// listener; a connect to a NAT64-synthesized address that times out or finds no route is
    /// `nat64_unreachable`, naming the IPv4 address behind it.
    pub async fn connect(&mut self, addr: SocketAddr) -> Result<TcpStream, Failure> {
        self.env.check_socket(addr)?;
        self.attempting = Some(addr);
        self.connecting = Some(addr);
        let result = tcp::connect(addr).await;
        self.connecting = None;
        result.map_err(|f| self.nat64_failure(addr, f))
    }

    /// `f` as `nat64_unreachable` when it is a timeout or no route to a synthesized address.
    pub fn nat64_failure(&self, addr: SocketAddr, f: Failure) -> Failure {
        if !matches!(
            f.reason,
            FailureReason::Timeout | FailureReason::Unreachable
        ) {
            return f;
        }
        match self.env.nat64.classify_ip(addr.ip()) {
            Some(Via::Nat64 { prefix, ipv4 }) => Failure::new(
                FailureReason::Nat64Unreachable,
                format!(
                    "{} (a NAT64 address for {ipv4} under {prefix}: the path through the NAT64 translator does not connect)",
                    f.detail
                ),
            ),
            _ => f,
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

    /// Notes the address the check is about to talk to, so that a deadline passing there is
    /// reported with it (and with every address the check had).
    pub fn attempting(&mut self, addr: SocketAddr) {
        self.attempting = Some(addr);
    }

    /// The address [`CheckContext::attempting`] last named.
    pub fn attempting_ip(&self) -> Option<IpAddr> {
        self.attempting.map(|a| a.ip())
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
                // The guard first: a forbidden literal is refused as such, whatever its family,
                // unless the configured target names that literal on purpose.
                if !self.target.allow_metadata_address {
                    self.env.check_addresses(&[*ip])?;
                }
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
                    .map_err(|e| lookup_failure(name, self.family, &e))?;
                self.env.check_addresses(&answer.addresses)?;
                answer.addresses
            }
        };
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
        self.connect(SocketAddr::new(first, self.target.port)).await
    }
}

/// A failed lookup as a check failure. A name AWS documents as dual-stack that has no AAAA
/// says so: the endpoint is not what its name promises (or this path's DNS drops AAAA).
pub fn lookup_failure(
    name: &str,
    family: Family,
    err: &crate::net::resolver::LookupError,
) -> Failure {
    let mut f = err.to_failure();
    if family == Family::Ipv6
        && f.reason == FailureReason::Nodata
        && let Some(why) = crate::model::aws::documented_dual_stack(name)
    {
        f.detail = format!(
            "{}; {why}, so it should have AAAA: the name is not dual-stack here, or this path's DNS drops AAAA",
            f.detail
        );
    }
    f
}

/// Runs every configured check of `target` over `family`, in chain order, each under the
/// target's timeout. A check after a failure is reported as `skipped`.
pub async fn run_cycle(
    target: &Arc<Target>,
    family: Family,
    env: &CheckEnv,
    keep_debug: bool,
) -> CycleReport {
    run_cycle_until(target, family, env, keep_debug, None).await
}

/// [`run_cycle`] that also ends by `deadline`: each check gets the smaller of the target's
/// timeout and what is left, and checks past the deadline time out at once.
pub async fn run_cycle_until(
    target: &Arc<Target>,
    family: Family,
    env: &CheckEnv,
    keep_debug: bool,
    deadline: Option<tokio::time::Instant>,
) -> CycleReport {
    let mut cx = CheckContext::new(target, family, env, keep_debug);
    let mut checks = Vec::with_capacity(target.checks.len());
    let mut failed = false;
    for &kind in &target.checks {
        if failed && !check_for(kind).runs_after_failure() {
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
        cx.attempting = None;
        cx.connecting = None;
        cx.chain_failed = failed;
        let output = match tokio::time::timeout(timeout, check_for(kind).run(&mut cx)).await {
            Ok(output) => output,
            Err(_) => {
                let within = humantime::format_duration(timeout);
                let detail = match cx.attempting {
                    Some(addr) => format!("no answer from {addr} within {within}"),
                    None => format!("no answer within {within}"),
                };
                // What the check had got to: its addresses, when it was connecting.
                let observations = match (cx.attempting, &cx.addresses) {
                    (Some(_), Some(addrs)) => Observations {
                        addresses: addrs.clone(),
                        ..Observations::default()
                    },
                    _ => Observations::default(),
                };
                let failure = Failure::new(FailureReason::Timeout, detail);
                let failure = match cx.connecting {
                    Some(addr) => cx.nat64_failure(addr, failure),
                    None => failure,
                };
                CheckOutput::fail(failure).with(observations)
            }
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
    let ipv6_path = ipv6_path(family, &checks, cx.addresses.as_deref(), env);
    let verdict = judge(
        target.expect.for_family(family),
        target.expect.via_for(family),
        &checks,
        ipv6_path.as_ref(),
    );
    CycleReport {
        target: Arc::clone(target),
        family,
        checks,
        expectation_met: verdict.met,
        expectation_violation: verdict.violation,
        ipv6_path,
        finished_at: SystemTime::now(),
        debug: cx.debug.unwrap_or_default(),
    }
}

/// The IPv6 path a cycle used: the first peer a check connected to, else the first address
/// resolved or tried, classified under the agent's NAT64 prefixes. `None` for IPv4 cycles and
/// cycles that never had an address.
fn ipv6_path(
    family: Family,
    checks: &[Outcome],
    resolved: Option<&[IpAddr]>,
    env: &CheckEnv,
) -> Option<Ipv6Path> {
    if family != Family::Ipv6 {
        return None;
    }
    let used = checks
        .iter()
        .find_map(|o| o.observations.remote.map(|r| r.ip()))
        .or_else(|| resolved.and_then(|a| a.first().copied()))
        .or_else(|| {
            checks
                .iter()
                .find_map(|o| o.observations.addresses.first().copied())
        })?;
    let IpAddr::V6(address) = used else {
        return None;
    };
    Some(Ipv6Path {
        address,
        via: env.nat64.classify_ip(used)?,
    })
}
