//! `happy_eyeballs`: what an RFC 8305 client would do against the target — the AAAA/A
//! resolution race (50 ms Resolution Delay), the connection-attempt race (250 ms Connection
//! Attempt Delay, IPv6 first, families interleaved), which family wins, by what margin, and
//! whether a failing IPv6 path is masked by the fallback to IPv4.
//!
//! The race is about both families at once while cycles are per (target, family): it runs in
//! the target's IPv6 cycle (its IPv4 cycle when it probes IPv4 only) with its own A and AAAA
//! lookups, every address through the address guard, and reports target measurements
//! (`dualprobe_happy_eyeballs_winner{target,family}`, `…_fallback_seconds{target}`,
//! `…_margin_seconds{target}`). In the other cycle it passes at once and measures nothing.
//! It passes when the race connected (a dual-stack client gets through) and fails as the last
//! attempt did when nothing connected. Its layer is `Resolve`: it may pass while the cycle's
//! own family is down, so `expect: unreachable` is judged on the chain's other checks.
//!
//! Hand-written rather than a crate: the crates on crates.io (`happy-eyeballs`,
//! `happyeyeballs`) resolve through the system resolver before racing (no resolution race, no
//! address guard, no cache-less family-pinned lookups) and return only the stream, not who won
//! or when each attempt started, which is what this check reports.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use tokio::time::{Instant, sleep_until};

use super::{Check, CheckContext};
use crate::model::check_kind::Layer;
use crate::model::failure::{Failure, FailureReason};
use crate::model::family::Family;
use crate::model::outcome::{CheckOutput, Observations, TargetMeasurement};
use crate::model::target::{Host, Target};

/// RFC 8305 §3: how long to wait for AAAA after A answered first.
pub const RESOLUTION_DELAY: Duration = Duration::from_millis(50);
/// RFC 8305 §5: how long an attempt runs before the next one starts alongside it.
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// 1 for the family whose connection won the race, 0 for the other.
static WINNER: TargetMeasurement = TargetMeasurement {
    metric: "dualprobe_happy_eyeballs_winner",
    help: "1 for the family an RFC 8305 client connects over (the happy-eyeballs race's winner), 0 for the other",
    key: "happy_eyeballs_winner",
    per_family: true,
};

/// How long the client waited on IPv6 before the IPv4 connection that won started.
static FALLBACK: TargetMeasurement = TargetMeasurement {
    metric: "dualprobe_happy_eyeballs_fallback_seconds",
    help: "How long an RFC 8305 client waited on IPv6 before falling back to the IPv4 connection that won (0 when IPv6 won or was not tried)",
    key: "happy_eyeballs_fallback_seconds",
    per_family: false,
};

/// The winner's lead: from its connection to the other family's first attempt start (actual, or
/// due, when the winner connected before it started).
static MARGIN: TargetMeasurement = TargetMeasurement {
    metric: "dualprobe_happy_eyeballs_margin_seconds",
    help: "Time between the winning connection and the other family's first attempt start (due or actual): how clearly the race was won",
    key: "happy_eyeballs_margin_seconds",
    per_family: false,
};

static MEASURED: &[&TargetMeasurement] = &[&WINNER, &FALLBACK, &MARGIN];

/// The `happy_eyeballs` check.
pub struct HappyEyeballs;

impl Check for HappyEyeballs {
    fn layer(&self) -> Layer {
        Layer::Resolve
    }

    fn target_measurements(&self) -> &'static [&'static TargetMeasurement] {
        MEASURED
    }

    fn validate(&self, target: &Target) -> Result<(), String> {
        match target.host {
            Host::Name(_) => Ok(()),
            Host::Ip(_) => Err("happy_eyeballs needs a host name (a literal has one family)".into()),
        }
    }

    fn run<'a>(&'a self, cx: &'a mut CheckContext<'_>) -> BoxFuture<'a, CheckOutput> {
        Box::pin(async move {
            if cx.family != race_family(cx.target) {
                cx.debug("the happy-eyeballs race runs in the IPv6 cycle");
                return CheckOutput::pass(Observations::default());
            }
            let Host::Name(name) = &cx.target.host else {
                return CheckOutput::fail(Failure::new(
                    FailureReason::Other,
                    "happy_eyeballs needs a host name",
                ));
            };
            let name = name.clone();
            let race = match race(cx, &name).await {
                Ok(r) => r,
                Err(f) => return CheckOutput::fail(f),
            };
            for line in &race.log {
                cx.debug(line.clone());
            }
            let mut obs = Observations {
                addresses: race.addresses.clone(),
                remote: race.winner.map(|w| w.addr),
                ..Observations::default()
            };
            let Some(w) = race.winner else {
                let f = race.last_failure.unwrap_or_else(|| {
                    Failure::new(FailureReason::Unreachable, format!("{name}: no address"))
                });
                return CheckOutput::fail(f).with(
                    obs.measure_target(&WINNER, Some(Family::Ipv6), 0.0)
                        .measure_target(&WINNER, Some(Family::Ipv4), 0.0),
                );
            };
            let family = Family::of(w.addr.ip());
            for f in Family::ALL {
                obs = obs.measure_target(&WINNER, Some(f), f64::from(u8::from(f == family)));
            }
            obs = obs.measure_target(&FALLBACK, None, race.fallback.as_secs_f64());
            if let Some(m) = race.margin {
                obs = obs.measure_target(&MARGIN, None, m.as_secs_f64());
            }
            CheckOutput::pass(obs)
        })
    }
}

/// The cycle the race runs in: IPv6 when the target probes it, else IPv4.
pub fn race_family(target: &Target) -> Family {
    if target.families.contains(&Family::Ipv6) {
        Family::Ipv6
    } else {
        Family::Ipv4
    }
}

/// The connection that won.
#[derive(Debug, Clone, Copy)]
struct Win {
    /// Its peer.
    addr: SocketAddr,
}

/// What the race saw.
#[derive(Debug, Default)]
struct Race {
    /// The winner, if any attempt connected.
    winner: Option<Win>,
    /// Every address the lookups gave, AAAA first.
    addresses: Vec<IpAddr>,
    /// How long IPv6 had been tried when the winning IPv4 attempt started (zero otherwise).
    fallback: Duration,
    /// The winner's lead (see [`MARGIN`]); `None` when the other family's lookup gave no address.
    margin: Option<Duration>,
    /// The last failed attempt, or a lookup failure when no address was found.
    last_failure: Option<Failure>,
    /// A timeline, for debug answers.
    log: Vec<String>,
}

/// The addresses of one family and how far the race has got through them.
#[derive(Default)]
struct Queue {
    /// Not yet attempted.
    left: VecDeque<IpAddr>,
    /// When the family's first attempt started, relative to the race's start.
    first_start: Option<Duration>,
}

/// Runs the RFC 8305 race for `name`. `Err` only when the guard refuses an address.
async fn race(cx: &CheckContext<'_>, name: &str) -> Result<Race, Failure> {
    let start = Instant::now();
    let resolver = &cx.env.resolver;
    let port = cx.target.port;
    let mut out = Race::default();
    let mut aaaa = std::pin::pin!(resolver.lookup(name, Family::Ipv6));
    let mut a = std::pin::pin!(resolver.lookup(name, Family::Ipv4));
    let (mut aaaa_done, mut a_done) = (false, false);
    let mut v6 = Queue::default();
    let mut v4 = Queue::default();
    // When connecting may begin: at once on AAAA, Resolution Delay after A alone.
    let mut connect_from: Option<Instant> = None;
    let mut next_attempt: Option<Instant> = None;
    let mut last_family: Option<Family> = None;
    let mut attempts = FuturesUnordered::new();
    let far = start + Duration::from_secs(86_400);
    loop {
        let can_start = connect_from.is_some_and(|t| t <= Instant::now());
        if can_start && next_attempt.is_none_or(|t| t <= Instant::now()) {
            // RFC 8305 §4: IPv6 first, then alternate families while both have addresses.
            let prefer = match last_family {
                Some(Family::Ipv6) => Family::Ipv4,
                _ => Family::Ipv6,
            };
            let pick = match prefer {
                Family::Ipv6 if !v6.left.is_empty() => Some(Family::Ipv6),
                Family::Ipv4 if !v4.left.is_empty() => Some(Family::Ipv4),
                _ if !v6.left.is_empty() => Some(Family::Ipv6),
                _ if !v4.left.is_empty() => Some(Family::Ipv4),
                _ => None,
            };
            if let Some(fam) = pick {
                let q = if fam == Family::Ipv6 { &mut v6 } else { &mut v4 };
                let ip = q.left.pop_front().expect("picked a non-empty queue");
                let at = start.elapsed();
                q.first_start.get_or_insert(at);
                let sa = SocketAddr::new(ip, port);
                cx.env.check_socket(sa)?;
                out.log.push(format!("{:?}: connecting to {sa}", at));
                last_family = Some(fam);
                next_attempt = Some(Instant::now() + ATTEMPT_DELAY);
                attempts.push(async move { (sa, at, super::tcp::connect(sa).await) });
                continue;
            }
            next_attempt = None;
        }
        if aaaa_done && a_done && attempts.is_empty() && v6.left.is_empty() && v4.left.is_empty()
        {
            break;
        }
        let wake = [connect_from.filter(|_| !can_start), next_attempt]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(far);
        tokio::select! {
            r = &mut aaaa, if !aaaa_done => {
                aaaa_done = true;
                let at = start.elapsed();
                match r {
                    Ok(ans) => {
                        cx.env.check_addresses(&ans.addresses)?;
                        out.log.push(format!("{at:?}: AAAA {:?}", ans.addresses));
                        out.addresses.splice(0..0, ans.addresses.iter().copied());
                        v6.left.extend(ans.addresses);
                    }
                    Err(e) => {
                        out.log.push(format!("{at:?}: AAAA failed: {e}"));
                        out.last_failure.get_or_insert(super::lookup_failure(name, Family::Ipv6, &e));
                    }
                }
                // AAAA answered (or failed): no reason to wait any longer.
                let now = Instant::now();
                if (!v6.left.is_empty() || a_done) && connect_from.is_none_or(|t| t > now) {
                    connect_from = Some(now);
                }
            }
            r = &mut a, if !a_done => {
                a_done = true;
                let at = start.elapsed();
                match r {
                    Ok(ans) => {
                        cx.env.check_addresses(&ans.addresses)?;
                        out.log.push(format!("{at:?}: A {:?}", ans.addresses));
                        out.addresses.extend(ans.addresses.iter().copied());
                        v4.left.extend(ans.addresses);
                    }
                    Err(e) => {
                        out.log.push(format!("{at:?}: A failed: {e}"));
                        out.last_failure.get_or_insert(super::lookup_failure(name, Family::Ipv4, &e));
                    }
                }
                if connect_from.is_none() {
                    connect_from = Some(if aaaa_done {
                        Instant::now()
                    } else {
                        Instant::now() + RESOLUTION_DELAY
                    });
                }
            }
            Some((sa, started, result)) = attempts.next(), if !attempts.is_empty() => {
                let at = start.elapsed();
                match result {
                    Ok(_stream) => {
                        out.log.push(format!("{at:?}: connected to {sa} (started at {started:?})"));
                        let won = Family::of(sa.ip());
                        let other = match won {
                            Family::Ipv6 => &v4,
                            Family::Ipv4 => &v6,
                        };
                        if won == Family::Ipv4 && let Some(t6) = v6.first_start {
                            out.fallback = started.saturating_sub(t6);
                        }
                        // The other family's first attempt: started, or due at the next slot
                        // at the earliest (also while its lookup is still out: it could not
                        // have started sooner). Absent only when it had no address at all.
                        let other_pending = match won {
                            Family::Ipv6 => !a_done,
                            Family::Ipv4 => !aaaa_done,
                        };
                        out.margin = match other.first_start {
                            Some(t) => Some(at.abs_diff(t)),
                            None if !other.left.is_empty() || other_pending => next_attempt
                                .map(|n| n.saturating_duration_since(Instant::now())),
                            None => None,
                        };
                        out.winner = Some(Win { addr: sa });
                        // The streams still racing are dropped here, as a client cancels them.
                        return Ok(out);
                    }
                    Err(f) => {
                        out.log.push(format!("{at:?}: {sa} failed: {f}"));
                        out.last_failure = Some(f);
                        // RFC 8305 §5: a failed attempt starts the next one at once.
                        next_attempt = Some(Instant::now());
                    }
                }
            }
            _ = sleep_until(wake) => {}
        }
    }
    Ok(out)
}
