//! `trace`: tracepath-style hops towards the family's first address, with rising hop limits and
//! the socket error queue (Time Exceeded from each router, port unreachable or a connect from
//! the target), no raw sockets. Every probe goes to the one guarded address.
//!
//! As a check it is a diagnosis: in a chain it runs after an earlier check failed (a passing
//! chain does not send it, unless `trace.run: always`), and on its own (`--check trace`,
//! `/probe?check=trace`) it always runs. It passes when the target answered, else fails
//! `unreachable`; the hops go into the observations (JSON `hops` and `last_hop`, the status
//! page and the log line), never a label. The `dualprobe trace` command prints the same hops as
//! a table.
//!
//! The `trace:` section of targets and modules (`max_hops`, `proto`, `wait`, `run`) is read
//! here. The waves of one trace share the check's deadline: a wave waits at most what is left
//! of it, so a trace that never reaches its target still reports the hops it saw.

use std::any::Any;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use serde::Deserialize;
use serde_saphyr::Spanned;

use super::{Check, CheckContext, Configure, line_of};
use crate::model::check_kind::CheckKind;
use crate::model::failure::{Failure, FailureReason};
use crate::model::outcome::{CheckOutput, Observations};
use crate::model::target::Target;
use crate::model::trace::{Hop, Trace as Hops};
use crate::net::errqueue;

/// How a trace probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// One small UDP datagram per hop limit to the target's port.
    Udp,
    /// One TCP SYN (a connect) per hop limit to the target's port.
    Tcp,
}

impl Proto {
    fn as_str(self) -> &'static str {
        match self {
            Proto::Udp => "udp",
            Proto::Tcp => "tcp",
        }
    }
}

/// How far and how long a trace goes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The highest hop limit tried.
    pub max_hops: u8,
    /// Hop limits probed at once (a wave).
    pub wave: u8,
    /// How long a wave waits for its answers.
    pub wait: Duration,
    /// The whole trace's time, when bounded: a wave waits at most what is left of it, and no
    /// wave starts once it is spent (the hops so far are the answer).
    pub total: Option<Duration>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_hops: 30,
            wave: WAVE,
            wait: Duration::from_secs(2),
            total: None,
        }
    }
}

/// Hop limits probed at once.
const WAVE: u8 = 8;
/// The longest `trace.wait`; also the default wait's cap.
const MAX_WAIT: Duration = Duration::from_secs(60);
/// The default wait's cap, tracepath's order of magnitude.
const DEFAULT_WAIT: Duration = Duration::from_secs(2);
/// The highest `trace.max_hops`: the default IPv6 hop limit (paths on the internet are well
/// under 32 hops).
const MAX_HOPS: u64 = 64;

/// When a trace in a chain runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    /// Only after an earlier check of the chain failed (the default): a diagnosis.
    AfterFailure,
    /// Every cycle, the chain passing or not.
    Always,
}

/// The `trace:` section of a target or module, as serde reads it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Raw {
    max_hops: Option<Spanned<u64>>,
    proto: Option<Spanned<String>>,
    wait: Option<Spanned<String>>,
    run: Option<Spanned<String>>,
}

/// What the `trace` check reads back from a target (the defaults without a section).
#[derive(Debug, Clone)]
pub struct Settings {
    /// The highest hop limit (1-64, default 30).
    pub max_hops: u8,
    /// UDP datagrams (default) or TCP SYNs to the target's port.
    pub proto: Proto,
    /// How long each wave of hops waits; `None`: sized from the deadline (at most 2 s).
    pub wait: Option<Duration>,
    /// When it runs in a chain.
    pub run: Run,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            max_hops: 30,
            proto: Proto::Udp,
            wait: None,
            run: Run::AfterFailure,
        }
    }
}

/// `target`'s `trace:` settings (the defaults when it has no section).
pub fn settings(target: &Target) -> &Settings {
    static DEFAULT: LazyLock<Settings> = LazyLock::new(Settings::default);
    target
        .settings
        .get::<Settings>(CheckKind::Trace)
        .unwrap_or(&DEFAULT)
}

/// How many waves reach `max_hops`.
fn waves(max_hops: u8) -> u32 {
    u32::from(max_hops).div_ceil(u32::from(WAVE))
}

/// The limits a check with `settings` and deadline `timeout` traces with. The whole trace gets
/// the deadline less a tenth (at most 250 ms), so its hops are reported before the runner's
/// deadline ends the check; the default wait lets every wave fit in that.
fn limits_for(s: &Settings, timeout: Duration) -> Limits {
    let total = timeout.saturating_sub((timeout / 10).min(Duration::from_millis(250)));
    Limits {
        max_hops: s.max_hops,
        wave: WAVE,
        wait: s
            .wait
            .unwrap_or_else(|| (total / waves(s.max_hops)).min(DEFAULT_WAIT)),
        total: Some(total),
    }
}

impl Configure for Trace {
    type Raw = Raw;

    fn configure(
        raw: &Raw,
        field: &str,
        problem: &mut dyn FnMut(Option<u64>, String, String),
    ) -> Option<Arc<dyn Any + Send + Sync>> {
        let mut ok = true;
        let mut s = Settings::default();
        if let Some(m) = &raw.max_hops {
            match u8::try_from(m.value) {
                Ok(n) if (1..=MAX_HOPS).contains(&m.value) => s.max_hops = n,
                _ => {
                    ok = false;
                    problem(
                        line_of(m),
                        format!("{field}.max_hops"),
                        format!("must be 1-{MAX_HOPS}"),
                    );
                }
            }
        }
        match raw.proto.as_ref().map(|p| (p, p.value.trim())) {
            None => {}
            Some((_, "udp")) => s.proto = Proto::Udp,
            Some((_, "tcp")) => s.proto = Proto::Tcp,
            Some((p, _)) => {
                ok = false;
                problem(
                    line_of(p),
                    format!("{field}.proto"),
                    format!("`{}` is not udp or tcp", p.value),
                );
            }
        }
        if let Some(w) = &raw.wait {
            match humantime::parse_duration(w.value.trim()) {
                Ok(d) if d.is_zero() => {
                    ok = false;
                    problem(
                        line_of(w),
                        format!("{field}.wait"),
                        "must be greater than zero".into(),
                    );
                }
                Ok(d) if d > MAX_WAIT => {
                    ok = false;
                    problem(
                        line_of(w),
                        format!("{field}.wait"),
                        format!("`{}` is longer than 1m", w.value),
                    );
                }
                Ok(d) => s.wait = Some(d),
                Err(e) => {
                    ok = false;
                    problem(
                        line_of(w),
                        format!("{field}.wait"),
                        format!(
                            "`{}` is not a duration ({e}); write e.g. 15s, 500ms, 1m",
                            w.value
                        ),
                    );
                }
            }
        }
        match raw.run.as_ref().map(|r| (r, r.value.trim())) {
            None => {}
            Some((_, "after_failure")) => s.run = Run::AfterFailure,
            Some((_, "always")) => s.run = Run::Always,
            Some((r, _)) => {
                ok = false;
                problem(
                    line_of(r),
                    format!("{field}.run"),
                    format!("`{}` is not after_failure or always", r.value),
                );
            }
        }
        ok.then(|| Arc::new(s) as Arc<dyn Any + Send + Sync>)
    }
}

/// The `trace` check.
pub struct Trace;

impl Check for Trace {
    fn runs_after_failure(&self) -> bool {
        true
    }

    /// A configured wait must let every wave fit in the target's timeout.
    fn validate(&self, target: &Target) -> Result<(), String> {
        let s = settings(target);
        let Some(wait) = s.wait else { return Ok(()) };
        let n = waves(s.max_hops);
        let all = wait * n;
        if all > target.timeout {
            return Err(format!(
                "`trace.wait` {} for each of {n} wave(s) of up to {WAVE} hops (max_hops {}) is {}, more than the timeout {}: lower trace.wait or trace.max_hops, or raise timeout",
                humantime::format_duration(wait),
                s.max_hops,
                humantime::format_duration(all),
                humantime::format_duration(target.timeout),
            ));
        }
        Ok(())
    }

    fn run<'a>(&'a self, cx: &'a mut CheckContext<'_>) -> BoxFuture<'a, CheckOutput> {
        Box::pin(async move {
            let s = settings(cx.target).clone();
            if !cx.chain_failed() && cx.target.checks.len() > 1 && s.run == Run::AfterFailure {
                cx.debug("the chain passed: no trace needed");
                return CheckOutput::pass(Observations::default());
            }
            let limits = limits_for(&s, cx.timeout);
            cx.debug(format!(
                "trace over {} to hop {}, {:?} a wave",
                s.proto.as_str(),
                limits.max_hops,
                limits.wait
            ));
            let (to, hops) = match trace_target(cx, s.proto, limits).await {
                Ok(t) => t,
                Err(f) => return CheckOutput::fail(f),
            };
            let summary = hops.summary();
            cx.debug(format!("trace to {to}: {summary}"));
            let reached = hops.reached();
            let obs = Observations {
                remote: Some(to),
                trace: Some(hops),
                ..Observations::default()
            };
            if reached {
                CheckOutput::pass(obs)
            } else {
                CheckOutput::fail(Failure::new(
                    FailureReason::Unreachable,
                    format!("trace to {to}: {summary}"),
                ))
                .with(obs)
            }
        })
    }
}

/// Traces the first address of `cx`'s family at the target's port, through the guard: what
/// the check and `dualprobe trace` run.
pub async fn trace_target(
    cx: &mut CheckContext<'_>,
    proto: Proto,
    limits: Limits,
) -> Result<(SocketAddr, Hops), Failure> {
    let addrs = cx.connect_addresses().await?;
    let ip = addrs.first().copied().ok_or_else(|| {
        Failure::new(
            FailureReason::Unreachable,
            format!("no {} address", cx.family),
        )
    })?;
    let to = SocketAddr::new(ip, cx.target.port);
    cx.env.check_socket(to)?;
    cx.attempting(to);
    let hops = trace(to, proto, limits)
        .await
        .map_err(|e| Failure::from_io(&format!("trace {to}"), &e))?;
    Ok((to, hops))
}

/// `dualprobe trace`: every family of `target` traced, as hop tables, and whether every family
/// reached it.
pub async fn trace_families(
    target: &crate::model::target::Target,
    env: &super::CheckEnv,
    proto: Proto,
    limits: Limits,
) -> (String, bool) {
    let mut out = String::new();
    let mut all = true;
    for &f in &target.families {
        let mut cx = CheckContext::new(target, f, env, false);
        match trace_target(&mut cx, proto, limits).await {
            Ok((to, hops)) => {
                all &= hops.reached();
                out.push_str(&render(f, to, &hops));
            }
            Err(e) => {
                all = false;
                out.push_str(&format!("{f}: {e}\n"));
            }
        }
        out.push('\n');
    }
    (out, all)
}

/// The hop table `dualprobe trace` prints for one family.
pub fn render(family: crate::model::family::Family, to: SocketAddr, hops: &Hops) -> String {
    use std::fmt::Write;
    let mut s =
        format!("{family} trace to {to}\n HOP  ADDRESS                                  RTT\n");
    for h in &hops.hops {
        let address = h.address.map_or_else(|| "*".to_string(), |a| a.to_string());
        let rtt = h.rtt.map_or_else(String::new, |d| {
            format!("{:.1}ms", d.as_secs_f64() * 1000.0)
        });
        let mark = if h.reached { "  (target)" } else { "" };
        let _ = writeln!(s, "{:>4}  {address:<39}  {rtt}{mark}", h.ttl);
    }
    let _ = writeln!(s, "{}", hops.summary());
    s
}

/// Traces `to` (guarded by the caller): waves of `limits.wave` hop limits, each probe on a
/// socket of its own, until the target answers or `limits.max_hops`. Hops past the first that
/// reached the target are dropped.
pub async fn trace(to: SocketAddr, proto: Proto, limits: Limits) -> std::io::Result<Hops> {
    let mut hops = Vec::new();
    let mut first = 1u8;
    let deadline = limits.total.map(|t| Instant::now() + t);
    while first <= limits.max_hops {
        let wait = match deadline {
            Some(d) => limits.wait.min(d.saturating_duration_since(Instant::now())),
            None => limits.wait,
        };
        if wait.is_zero() {
            break;
        }
        let last = first.saturating_add(limits.wave - 1).min(limits.max_hops);
        let mut pending: FuturesUnordered<_> = (first..=last)
            .map(|ttl| probe(to, proto, ttl, wait))
            .collect();
        let mut wave: Vec<Hop> = Vec::new();
        // A wave ends early once the target answered and every lower hop limit is settled:
        // the probes past the target need no waiting for.
        while let Some(answer) = pending.next().await {
            wave.push(answer?);
            let reached = wave.iter().filter(|h| h.reached).map(|h| h.ttl).min();
            if let Some(r) = reached
                && wave.iter().filter(|h| h.ttl < r).count() == usize::from(r - first)
            {
                break;
            }
        }
        drop(pending);
        wave.sort_by_key(|h| h.ttl);
        for hop in wave {
            let reached = hop.reached;
            hops.push(hop);
            if reached {
                return Ok(Hops { hops });
            }
        }
        first = last.saturating_add(1);
        if last == limits.max_hops {
            break;
        }
    }
    Ok(Hops { hops })
}

/// One probe with hop limit `ttl`, waiting up to `wait` for its answer.
async fn probe(to: SocketAddr, proto: Proto, ttl: u8, wait: Duration) -> std::io::Result<Hop> {
    let start = Instant::now();
    let answer = match proto {
        Proto::Udp => udp_probe(to, ttl, wait).await?,
        Proto::Tcp => tcp_probe(to, ttl, wait).await?,
    };
    Ok(match answer {
        Some((address, reached)) => Hop {
            ttl,
            address: Some(address),
            rtt: Some(start.elapsed()),
            reached,
        },
        None => Hop {
            ttl,
            address: None,
            rtt: None,
            reached: false,
        },
    })
}

/// Who answered a probe and whether it was the target.
type Answer = Option<(std::net::IpAddr, bool)>;

async fn udp_probe(to: SocketAddr, ttl: u8, wait: Duration) -> std::io::Result<Answer> {
    let socket = errqueue::udp_socket(to).await?;
    errqueue::set_hop_limit(&socket, to.is_ipv6(), u32::from(ttl))?;
    socket.send(&[0u8; 32]).await?;
    let mut buf = [0u8; 64];
    // With the error queue on, the same ICMP error is also reported once to the next `recv`
    // (as ECONNREFUSED, EHOSTUNREACH, ...): then the queued entry says who sent it.
    let answer = async {
        loop {
            tokio::select! {
                e = errqueue::read(&socket) => return e.map(|e| classify(&e, to)),
                r = socket.recv(&mut buf) => match r {
                    Ok(_) => return Ok(Some((to.ip(), true))),
                    Err(e) => {
                        if let Some(q) = errqueue::read_now(&socket)? {
                            return Ok(classify(&q, to));
                        }
                        if e.kind() == std::io::ErrorKind::ConnectionRefused {
                            return Ok(Some((to.ip(), true)));
                        }
                    }
                },
            }
        }
    };
    match tokio::time::timeout(wait, answer).await {
        Ok(a) => a,
        Err(_) => Ok(None),
    }
}

async fn tcp_probe(to: SocketAddr, ttl: u8, wait: Duration) -> std::io::Result<Answer> {
    let socket = match to {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    errqueue::enable(&socket, to.is_ipv6())?;
    errqueue::set_hop_limit(&socket, to.is_ipv6(), u32::from(ttl))?;
    let std_socket = socket2::SockRef::from(&socket).try_clone()?;
    match tokio::time::timeout(wait, socket.connect(to)).await {
        Err(_) => Ok(None),
        Ok(Ok(_)) => Ok(Some((to.ip(), true))),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            Ok(Some((to.ip(), true)))
        }
        Ok(Err(e)) => match errqueue::read_now(&std_socket)? {
            Some(q) => Ok(classify(&q, to)),
            None => Err(e),
        },
    }
}

/// A queued error as a hop: Time Exceeded names a router; anything from the target is the
/// target answering.
fn classify(e: &errqueue::QueuedError, to: SocketAddr) -> Answer {
    let from = e.offender?;
    if e.time_exceeded() && from != to.ip() {
        Some((from, false))
    } else {
        Some((from, from == to.ip() || e.port_unreachable()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_trace_over_loopback_reaches_the_target_at_hop_one() {
        let port = {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.local_addr().unwrap().port()
        };
        let to: SocketAddr = ([127, 0, 0, 1], port).into();
        let hops = trace(to, Proto::Udp, Limits::default()).await.unwrap();
        assert_eq!(hops.hops.len(), 1, "{hops:?}");
        assert!(hops.reached());
        assert_eq!(hops.last_responding().unwrap().address, Some(to.ip()));
    }
}
