"""Scenario `first_result` (issue 15, item 1): how long after exec every (target, family) pair has
its first result, i.e. `GET /-/ready` answers 200, for N targets x 2 families.

Loopback, like `compare` (localnet.py): names t0..tN-1.bench.test from the bench's dnsmasq,
`checks: [dns, tcp]` at the bench's TCP peer, interval 30 s (the embedded default's), timeout
--timeout. The clock starts just before the exec (subprocess.Popen); /-/healthy (the listener
is up) and then /-/ready are polled every 10 ms over one keep-alive connection, so a figure is
at most ~10 ms late. The binary is run once (`--version`) first so that every timed run starts
with its pages in the page cache, as the repeats would anyway. Each N is repeated --repeat times
(median reported), unless its first run took over 5 s (first runs spread over the interval: a
repeat measures the same spread again); a run not ready within interval + timeout + 15 s (+ 20 ms
per pair, common.ready_bound) counts as that bound.

A reload that adds targets (N = 100 only): once ready, the config gets two more targets (four
pairs), `POST /-/reload`, and /metrics is polled every 25 ms until each new pair has a
`dualprobe_probes_total` series (its first result).

blackbox_exporter has no per-target first result: it probes when Prometheus asks. Its figure is
exec -> /-/healthy (ready to answer /probe); the first results come with Prometheus' first
scrape of each target, up to one scrape interval later.
"""

from __future__ import annotations

import http.client
import subprocess
import time

from agents import BLACKBOX_CONFIG, dualprobe_config
from common import LOOP4, free_port4, log, parse_probes_by, ready_bound
from localnet import Env
from report import med, spread


# A run longer than this is the interval's spread (deterministic), not noise: no repeats, so the
# full run stays bounded on a binary that spreads first runs over 30 s.
REPEAT_ONLY_UNDER_S = 5.0


def _poll(port: int, path: str, proc, deadline: float, every: float = 0.01):
    """Monotonic time of the first 200 on `path`, or None by `deadline` (or if proc exits)."""
    conn = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None
        try:
            if conn is None:
                conn = http.client.HTTPConnection(LOOP4, port, timeout=2)
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                t = time.monotonic()
                conn.close()
                return t
        except (OSError, http.client.HTTPException):
            if conn is not None:
                conn.close()
            conn = None
        time.sleep(every)
    if conn is not None:
        conn.close()
    return None


def dp_once(env: Env, n: int, interval: float, timeout: float, reload: bool = False) -> dict:
    timeout = min(timeout, interval / 2)
    port = free_port4()
    cfg = dualprobe_config(env, "scale", n, interval, timeout, port)
    bound = ready_bound(2 * n, interval, timeout)
    t0 = time.monotonic()
    p = env.procs.start("dualprobe", [env.args.bin, "run", "--config", cfg, "--listen", f"{LOOP4}:{port}"],
                        env.path(f"dualprobe-first-{n}.log"))
    try:
        healthy = _poll(port, "/-/healthy", p, t0 + 15)
        ready = _poll(port, "/-/ready", p, t0 + bound) if healthy else None
        out = {"targets": n, "pairs": 2 * n, "interval_s": interval, "bound_s": bound,
               "healthy_s": (healthy - t0) if healthy else None,
               "ready_s": (ready - t0) if ready else bound, "timed_out": ready is None}
        if reload and ready:
            out["reload"] = _reload(env, p, port, cfg, n, interval, timeout)
        return out
    finally:
        env.procs.stop(p)


def _reload(env: Env, p, port: int, cfg: str, n: int, interval: float, timeout: float) -> dict:
    """Adds targets t{n} and t{n+1} (the dnsmasq table has them), POST /-/reload, and times the
    first result of each of their four pairs."""
    new = dualprobe_config(env, "scale", n + 2, interval, timeout, port)
    with open(new) as f:
        text = f.read()
    with open(cfg, "w") as f:
        f.write(text)
    want = {(f"t{i}", fam) for i in (n, n + 1) for fam in ("ipv4", "ipv6")}
    conn = http.client.HTTPConnection(LOOP4, port, timeout=10)
    try:
        t0 = time.monotonic()
        conn.request("POST", "/-/reload")
        r = conn.getresponse()
        r.read()
        applied = time.monotonic() - t0
        if r.status != 200:
            return {"status": r.status}
        bound = t0 + interval + timeout + 5
        seen: dict = {}
        while time.monotonic() < bound and len(seen) < len(want):
            conn.request("GET", "/metrics")
            body = conn.getresponse().read()
            now = time.monotonic() - t0
            for (target, fam) in parse_probes_by(body, ("target", "family")):
                if (target, fam) in want and (target, fam) not in seen:
                    seen[(target, fam)] = now
            time.sleep(0.025)
        return {"status": 200, "applied_s": applied, "pairs": len(want), "seen": len(seen),
                "last_first_result_s": max(seen.values()) if len(seen) == len(want) else None}
    finally:
        conn.close()


def bb_once(env: Env, timeout: float) -> dict:
    cfg = env.path("blackbox-first.yml")
    with open(cfg, "w") as f:
        f.write(BLACKBOX_CONFIG.format(t=f"{timeout:g}"))
    port = free_port4()
    t0 = time.monotonic()
    p = env.procs.start("blackbox", [env.args.blackbox, f"--config.file={cfg}",
                                     f"--web.listen-address={LOOP4}:{port}", "--log.level=warn"],
                        env.path("blackbox-first.log"))
    try:
        healthy = _poll(port, "/-/healthy", p, t0 + 15)
        return {"healthy_s": (healthy - t0) if healthy else None}
    finally:
        env.procs.stop(p)


def run(env: Env, sizes: list, interval: float, timeout: float, repeat: int, with_blackbox: bool = True) -> dict:
    subprocess.run([env.args.bin, "--version"], capture_output=True, timeout=30)  # page cache warm
    out: dict = {"interval_s": interval, "sizes": {}, "blackbox": []}
    for n in sizes:
        runs = []
        for rep in range(repeat):
            if rep and runs[0]["ready_s"] > REPEAT_ONLY_UNDER_S:
                log(f"first_result: {n} targets: not repeated (the first run took {runs[0]['ready_s']:.1f}s: "
                    f"first runs spread over the interval, which repeats would only measure again)")
                break
            r = dp_once(env, n, interval, timeout, reload=(n == 100 and rep == 0))
            log(f"first_result: {n} targets x 2 families, run {rep + 1}/{repeat}: ready after "
                f"{r['ready_s']:.3f}s{' (NOT READY: bound)' if r['timed_out'] else ''}, healthy after "
                f"{r['healthy_s'] if r['healthy_s'] is None else round(r['healthy_s'], 3)}s"
                + (f"; reload +2 targets: first results after {r['reload'].get('last_first_result_s')}s"
                   if "reload" in r else ""))
            runs.append(r)
        out["sizes"][n] = runs
    if with_blackbox:
        for _ in range(repeat):
            out["blackbox"].append(bb_once(env, timeout))
    return out


def report(res: dict) -> None:
    print(f"\n== first_result: exec -> /-/ready 200 (every pair has a first result), interval "
          f"{res['interval_s']:g}s (s, median [min..max] over runs) ==")
    for n, runs in res["sizes"].items():
        ready = [r["ready_s"] for r in runs]
        healthy = [r["healthy_s"] for r in runs if r["healthy_s"] is not None]
        late = sum(r["timed_out"] for r in runs)
        print(f"  {n:5} targets x 2 families: ready {spread(ready, '{:.3f}')}, listener up (/-/healthy) "
              f"{spread(healthy, '{:.3f}')}; {2 * n / med(ready):.1f} pairs per second"
              + (f"; {late} run(s) not ready within {runs[0]['bound_s']:g}s" if late else ""))
        for r in runs:
            if "reload" in r:
                rl = r["reload"]
                last = rl.get("last_first_result_s")
                print(f"        reload adding 2 targets (4 pairs): POST answered in {rl.get('applied_s', 0):.3f}s, "
                      f"their first results after {'n/a' if last is None else f'{last:.3f}'}s "
                      f"({rl.get('seen')} of {rl.get('pairs')} seen)")
    bb = [r["healthy_s"] for r in res["blackbox"] if r["healthy_s"] is not None]
    if bb:
        print(f"  blackbox_exporter exec -> /-/healthy {spread(bb, '{:.3f}')} (its first results come with "
              f"Prometheus' first scrapes)")
