"""Scenario `fidelity` (issue 15, item 2): is a probe's measured duration the network's, or does
the agent's own queueing leak into it under load?

Topology (netns.py; root only): a `t` (task) and an `s` (server) namespace joined by a veth pair
(192.0.2.1/24 and 192.0.2.2/24, 2001:db8:1::1/64 and ::2/64), and a second, slow path between
them through the netns suite's delay relay (tests/netns/delay_relay.py: a TUN device in each
namespace, every packet copied across after DELAY/2, so a round trip takes DELAY longer). The
delayed target is 203.0.113.10 and 2001:db8:3::10 on `s`'s loopback, routed from `t` over the
relay (source 198.51.100.10 / 2001:db8:2::10, routed back the same way). In `s` run dnsmasq
(t0..tN.bench.test: A 192.0.2.2, AAAA 2001:db8:1::2) and the bench's TCP peer on port 80 of every
address. The relay runs under `chrt -f` where the kernel allows it, so load on the CPUs delays
the agents, not the path.

Phases, each with fresh processes, in the `t` namespace, one after the other:
  dualprobe, unloaded: only the delayed target: K copies per family (`slow4-*`, `slow6-*`, IP
           literals, `checks: [tcp]`, interval 2 s), i.e. K*2/2 = K tcp probes a second.
  dualprobe, loaded:   the same plus N targets x 2 families x (dns, tcp) every 10 s over the
           fast path (names from dnsmasq): 4N/10 checks a second, on the default single worker.
  blackbox, unloaded / loaded: the same work as /probe requests at the same rates (tcp4/tcp6 to
           the delayed target; dns4/dns6 at dnsmasq and tcp4/tcp6 at the peer for the load).
Each window is --fidelity-window seconds, after every pair's first cycle (/-/ready) and 2 s more;
dualprobe's /metrics is scraped only 1 s before and 1 s after it (a scrape holds the worker).

The durations: dualprobe's are its own, from `--emf`: one JSON line per check per cycle, whose
ProbeDuration is the measured duration in milliseconds as an f64 (what the histogram observes,
unrounded). That is the most precise source: `dualprobe_probe_duration_seconds` only has buckets
0.1 and 0.25 s around 200 ms, and `/probe` runs outside the schedule. The histogram's _sum/_count
over the same window are read as a cross-check of the mean. blackbox's are the
`probe_duration_seconds` of each /probe answer. A reference (refprobe.py, under `chrt -f`) times
a connect to the same target twice a second through every phase: the path's own figure.
Result: p50/p99 of each tool loaded and unloaded, and the p99 rise (goal: <= 2 ms for dualprobe).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

from agents import Driver, start_blackbox
from common import (LOOP4, OPENMETRICS, counter_delta, free_port4, http_get, log, parse_probes_total, ready_bound,
                    wait_http)
from localnet import PEER, Env
from netns import HERE, Netns
from procfs import CpuWindow

T4, S4, T6, S6 = "192.0.2.1", "192.0.2.2", "2001:db8:1::1", "2001:db8:1::2"
FAR4, FAR6 = "203.0.113.10", "2001:db8:3::10"  # the target 200 ms away, on s's loopback
TUN4, TUN6 = "198.51.100.10", "2001:db8:2::10"  # t's source address on the delayed path
PORT = 80
SLOW_INTERVAL = 2.0
# Above this, more was runnable than there are cores (the bench's own load is about 1.5 at most).
QUIET_LOADAVG = float(os.cpu_count() or 1)
RELAY = os.path.join(os.path.dirname(HERE), "tests", "netns", "delay_relay.py")
REFPROBE = os.path.join(HERE, "refprobe.py")
SUM_RE = re.compile(r'^dualprobe_probe_duration_seconds_(sum|count)\{([^}]*)\}\s+([0-9.eE+-]+)', re.M)
LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def rt_prefix(prio: int) -> list[str]:
    """`chrt -f PRIO` when SCHED_FIFO is allowed here, else nothing (the report says which)."""
    try:
        ok = subprocess.run(["chrt", "-f", str(prio), "true"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return ["chrt", "-f", str(prio)] if ok else []


def pct(xs: list, q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of xs; nan when empty."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(-(-q * len(s) // 100)) - 1))
    return s[k]


def stats_ms(xs: list) -> dict:
    return {"n": len(xs), "p50": pct(xs, 50), "p99": pct(xs, 99), "max": max(xs) if xs else float("nan"),
            "mean": sum(xs) / len(xs) if xs else float("nan"), "min": min(xs) if xs else float("nan")}


class Topology:
    """The two namespaces, the delay relay and the peers in `s`."""

    def __init__(self, env: Env, names: int, delay_ms: float) -> None:
        self.env, self.delay_ms = env, delay_ms
        self.ns = Netns(["t", "s"])
        try:
            self._build(names)
        except Exception:
            self.close()
            raise

    def _build(self, names: int) -> None:
        ns, env = self.ns, self.env
        ns.veth("t", "v-t", "s", "v-s", [f"{T4}/24", f"{T6}/64"], [f"{S4}/24", f"{S6}/64"])
        ns.ip("s", "addr", "add", f"{FAR4}/32", "dev", "lo")
        ns.ip("s", "addr", "add", f"{FAR6}/128", "dev", "lo")
        self.rt = rt_prefix(20)
        self.relay = env.procs.start("relay", self.rt + [
            sys.executable, "-B", RELAY, "--ns-a", ns.name("t"), "--dev-a", "dly-t", "--ns-b", ns.name("s"),
            "--dev-b", "dly-s", "--delay-ms", f"{self.delay_ms / 2:g}", "--max-seconds", "3600",
            "--ignore-stdin"], env.path("relay.log"), stdout=subprocess.PIPE)
        if self.relay.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"the delay relay did not start (see {env.path('relay.log')})")
        ns.ip("t", "link", "set", "dly-t", "up")
        ns.ip("s", "link", "set", "dly-s", "up")
        ns.ip("t", "addr", "add", f"{TUN4}/32", "dev", "dly-t")
        ns.ip("t", "addr", "add", f"{TUN6}/128", "dev", "dly-t", "nodad")
        ns.ip("t", "route", "add", f"{FAR4}/32", "dev", "dly-t", "src", TUN4)
        ns.ip("t", "-6", "route", "add", f"{FAR6}/128", "dev", "dly-t", "src", TUN6)
        ns.ip("s", "route", "add", f"{TUN4}/32", "dev", "dly-s")
        ns.ip("s", "-6", "route", "add", f"{TUN6}/128", "dev", "dly-s")
        hosts = env.path("fidelity-hosts")
        with open(hosts, "w") as f:
            for i in range(names):
                f.write(f"{S4} t{i}.bench.test\n{S6} t{i}.bench.test\n")
        os.chmod(hosts, 0o644)
        self.dnsmasq = env.procs.start("dnsmasq-s", ns.argv("s", [
            "dnsmasq", "--no-daemon", "--port=53", f"--listen-address={S4},{S6}", "--bind-interfaces",
            "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}", "--cache-size=0", "--pid-file="]),
            env.path("dnsmasq-s.log"))
        self.peer = env.procs.start("peer-s", ns.argv("s", [sys.executable, "-B", PEER, "0.0.0.0", "::", str(PORT)]),
                                    env.path("peer-s.log"), stdout=subprocess.PIPE)
        if not self.peer.stdout.readline().strip():
            raise RuntimeError(f"the peer did not start in {ns.name('s')} (see peer-s.log)")
        time.sleep(0.3)  # dnsmasq binding its addresses

    def close(self) -> None:
        self.ns.close()


def slow_targets(k: int) -> list[str]:
    out = []
    for fam, addr in (("4", FAR4), ("6", FAR6)):
        for i in range(k):
            out.append(f'  - {{name: slow{fam}-{i}, host: "{addr}", port: {PORT}, checks: [tcp], '
                       f'interval: {SLOW_INTERVAL:g}s, timeout: 1s}}')
    return out


def write_config(env: Env, port: int, k: int, n: int, interval: float, timeout: float) -> str:
    lines = [f'listen: "{LOOP4}:{port}"', f"interval: {interval:g}s", f"timeout: {timeout:g}s",
             "families: [ipv4, ipv6]", "resolver:", f'  nameservers: ["{S4}:53"]', "targets:"]
    lines += slow_targets(k)
    lines += [f"  - {{name: t{i}, host: t{i}.bench.test, port: {PORT}, checks: [dns, tcp]}}" for i in range(n)]
    path = env.path(f"fidelity-{n}.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def slow_histogram(body: bytes) -> dict:
    """(sum, count) of the slow targets' tcp duration histograms."""
    out = {"sum": 0.0, "count": 0.0}
    for kind, labels, v in SUM_RE.findall(body.decode()):
        lab = dict(LABEL_RE.findall(labels))
        if lab.get("target", "").startswith("slow") and lab.get("check") == "tcp":
            out[kind] += float(v)
    return out


class RefProbe:
    """refprobe.py running through one phase; read() gives its connect times in a window."""

    def __init__(self, env: Env, rt: list, seconds: float) -> None:
        self.file = env.path(f"refprobe-{time.monotonic_ns()}.txt")
        with open(self.file, "wb") as out:
            self.proc = env.procs.start("refprobe", rt + [sys.executable, "-B", REFPROBE, FAR4, FAR6, str(PORT),
                                                          "0.5", f"{seconds:g}"], env.path("refprobe.log"), stdout=out)

    def read(self, t0: float, t1: float) -> list:
        self.stop()
        out = []
        with open(self.file) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3 and t0 <= float(parts[0]) <= t1 and float(parts[2]) >= 0:
                    out.append(float(parts[2]) * 1e3)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)


def dp_phase(env: Env, topo: Topology, k: int, n: int, window: float, rt: list, interval: float,
             settle: float) -> dict:
    timeout = min(2.0, interval / 2)
    port = free_port4()
    cfg = write_config(env, port, k, n, interval, timeout)
    emf = env.path(f"fidelity-emf-{n}.jsonl")
    with open(emf, "wb") as out:
        dp = env.procs.start("dualprobe", [env.args.bin, "run", "--config", cfg, "--listen", f"{LOOP4}:{port}",
                                           "--emf"], env.path(f"dualprobe-fidelity-{n}.log"), stdout=out)
    ref = None
    try:
        wait_http(port, "/-/healthy", 15, dp)
        wait_http(port, "/-/ready", ready_bound(2 * (n + k), interval, timeout), dp)
        time.sleep(settle)
        ref = RefProbe(env, rt, window + 10)
        # One scrape on each side (probe counters and the histogram from the same body), 1 s
        # away from the window: a scrape holds the worker while it renders.
        _, body0 = http_get(port, "/metrics", timeout=30, headers=OPENMETRICS)
        tc0, h_w0 = time.monotonic(), time.time()
        gap = min(1.0, 2 * settle)
        time.sleep(gap)
        w0, m0 = time.time(), time.monotonic()
        cpu = CpuWindow()
        cpu.start(dp.pid)
        time.sleep(window)
        c = cpu.stop()
        w1, m1 = time.time(), time.monotonic()
        time.sleep(gap)
        h_w1, tc1 = time.time(), time.monotonic()
        _, body1 = http_get(port, "/metrics", timeout=30, headers=OPENMETRICS)
    finally:
        env.procs.stop(dp)
    durs, fails, span = {"ipv4": [], "ipv6": []}, 0, []
    with open(emf) as f:
        for line in f:
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if not str(d.get("target", "")).startswith("slow") or d.get("check") != "tcp":
                continue
            ts = d.get("_aws", {}).get("Timestamp", 0) / 1e3
            if h_w0 <= ts <= h_w1 and d.get("result") == "ok":
                span.append(float(d["ProbeDuration"]))
            if not (w0 <= ts <= w1):
                continue
            if d.get("result") == "ok":
                durs[d["family"]].append(float(d["ProbeDuration"]))
            else:
                fails += 1
    h0, h1 = slow_histogram(body0), slow_histogram(body1)
    hn = h1["count"] - h0["count"]
    delta = counter_delta(parse_probes_total(body0), parse_probes_total(body1))
    allms = durs["ipv4"] + durs["ipv6"]
    return {"tool": "dualprobe", "load_targets": n, "stats": stats_ms(allms),
            "by_family": {f: stats_ms(v) for f, v in durs.items()}, "failed": fails,
            "hist_mean_ms": (h1["sum"] - h0["sum"]) / hn * 1e3 if hn else float("nan"), "hist_n": hn,
            "emf_span": stats_ms(span),
            "checks_per_s": sum(delta.values()) / (tc1 - tc0),
            "expected_per_s": k * 2 / SLOW_INTERVAL + 4 * n / interval,
            "cpu_pct": 100 * c["cpu_ns"] / 1e9 / c["wall_s"], "ref": stats_ms(ref.read(m0, m1) if ref else []),
            "window_s": m1 - m0}


def bb_phase(env: Env, k: int, n: int, window: float, rt: list, interval: float, settle: float) -> dict:
    bb, bport = start_blackbox(env, min(2.0, interval / 2))
    slow_rate = k * 2 / SLOW_INTERVAL
    warm = 1.0 + settle
    drivers = []
    ref = None
    try:
        slow = Driver(bport, [("ipv4", f"/probe?module=tcp4&target={FAR4}:{PORT}"),
                              ("ipv6", f"/probe?module=tcp6&target=[{FAR6}]:{PORT}")],
                      slow_rate, warm + window + 5, workers=8, durations=True)
        drivers.append(slow)
        if n:
            jobs = [("dns", f"/probe?module=dns4&target={S4}:53"), ("dns", f"/probe?module=dns6&target=[{S6}]:53"),
                    ("tcp", f"/probe?module=tcp4&target={S4}:{PORT}"),
                    ("tcp", f"/probe?module=tcp6&target=[{S6}]:{PORT}")]
            rate = 4 * n / interval
            drivers.append(Driver(bport, jobs, rate, warm + window + 5, workers=max(4, min(32, int(rate / 10) + 4))))
        for d in drivers:
            d.start()
        time.sleep(warm)
        ref = RefProbe(env, rt, window + 10)
        time.sleep(0.5)
        m0 = time.monotonic()
        cpu = CpuWindow()
        cpu.start(bb.pid)
        time.sleep(window)
        c = cpu.stop()
        m1 = time.monotonic()
    finally:
        for d in drivers:
            d.join(5)
        env.procs.stop(bb)
    by_fam = {"ipv4": [], "ipv6": []}
    for t, fam, secs in slow.durations:
        if m0 <= t <= m1:
            by_fam[fam].append(secs * 1e3)
    done = sum(sum(d.between(m0, m1).values()) for d in drivers)
    failed = sum(v for d in drivers for (kind, r), v in d.between(m0, m1).items() if r != "ok")
    allms = by_fam["ipv4"] + by_fam["ipv6"]
    return {"tool": "blackbox", "load_targets": n, "stats": stats_ms(allms),
            "by_family": {f: stats_ms(v) for f, v in by_fam.items()}, "failed": failed,
            "checks_per_s": done / (m1 - m0), "expected_per_s": slow_rate + (4 * n / interval if n else 0),
            "late_skipped": sum(d.late for d in drivers),
            "cpu_pct": 100 * c["cpu_ns"] / 1e9 / c["wall_s"], "ref": stats_ms(ref.read(m0, m1) if ref else []),
            "window_s": m1 - m0}


def run(env: Env, n: int, k: int, window: float, delay_ms: float, interval: float = 10.0,
        settle: float = 2.0, with_blackbox: bool = True) -> dict:
    """All four phases in one topology; returns {"dualprobe": {...}, "blackbox": {...}}.
    `interval` is the load's (10 s in the issue; --quick uses less)."""
    topo = Topology(env, n, delay_ms)
    out: dict = {"delay_ms": delay_ms, "load_targets": n, "copies_per_family": k, "window_s": window,
                 "relay_rt": bool(topo.rt), "interval_s": interval}
    try:
        with topo.ns.entered("t"):
            for tool in ("dualprobe", "blackbox") if with_blackbox else ("dualprobe",):
                out[tool] = {}
                for load in (0, n):
                    what = f"loaded: {n} targets x 2 x (dns, tcp) every {interval:g}s" if load else "unloaded"
                    log(f"fidelity: {tool}, {what}, {window:g}s window")
                    r = (dp_phase(env, topo, k, load, window, topo.rt, interval, settle) if tool == "dualprobe"
                         else bb_phase(env, k, load, window, topo.rt, interval, settle))
                    st = r["stats"]
                    log(f"  delayed tcp: p50 {st['p50']:.2f} ms, p99 {st['p99']:.2f} ms (n={st['n']}); "
                        f"reference p99 {r['ref']['p99']:.2f} ms; {r['checks_per_s']:.0f}/s; CPU {r['cpu_pct']:.1f}%")
                    r["loadavg"] = os.getloadavg()[0]  # of the last minute: the phase's
                    out[tool]["loaded" if load else "unloaded"] = r
    finally:
        topo.close()
    return out


def report(res: dict) -> None:
    print(f"\n== fidelity: tcp to a target {res['delay_ms']:g} ms away, unloaded vs "
          f"{res['load_targets']} targets x 2 x (dns, tcp) every {res['interval_s']:g}s (ms; "
          f"{res['window_s']:g}s windows) ==")
    print(f"  {'':22} {'n':>5} {'p50':>8} {'p99':>8} {'max':>8} {'mean':>8}  {'ref p50':>7} {'ref p99':>7} "
          f"{'rate/s':>7} {'expected':>8} {'CPU %':>6} {'failed':>6}")
    for tool in ("dualprobe", "blackbox"):
        for cond in ("unloaded", "loaded"):
            r = res.get(tool, {}).get(cond)
            if not r:
                continue
            st, ref = r["stats"], r["ref"]
            print(f"  {tool + ' ' + cond:22} {st['n']:5} {st['p50']:8.2f} {st['p99']:8.2f} {st['max']:8.2f} "
                  f"{st['mean']:8.2f}  {ref['p50']:7.2f} {ref['p99']:7.2f} {r['checks_per_s']:7.1f} "
                  f"{r['expected_per_s']:8.1f} {r['cpu_pct']:6.1f} {r['failed']:6}")
            for fam, fs in r["by_family"].items():
                print(f"    {fam:20} {fs['n']:5} {fs['p50']:8.2f} {fs['p99']:8.2f} {fs['max']:8.2f} {fs['mean']:8.2f}")
            if "hist_mean_ms" in r:
                sp = r["emf_span"]
                print(f"    histogram cross-check, scrape to scrape: mean {r['hist_mean_ms']:.2f} ms over "
                      f"{r['hist_n']:.0f} observations; EMF lines of the same span: {sp['mean']:.2f} ms over {sp['n']}")
    print(f"  reference = refprobe.py{' under chrt -f' if res['relay_rt'] else ' (no SCHED_FIFO here)'}, "
          f"the delay relay{' too' if res['relay_rt'] else ' without it either'}")
    busy = busiest(res)
    if busy > QUIET_LOADAVG:
        print(f"  WARNING: load average up to {busy:.1f} at the end of a phase, over the {QUIET_LOADAVG:g} cores: "
              f"other processes competed for the CPUs, so part of these timings is theirs, not the agents' "
              f"(the reference shows the path's)")


def busiest(res: dict) -> float:
    """The highest 1-minute load average at the end of a phase (0 when none was recorded)."""
    return max([r.get("loadavg", 0.0) for t in ("dualprobe", "blackbox") for r in res.get(t, {}).values()] + [0.0])
