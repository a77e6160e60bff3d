"""Scenario `memory`: dualprobe and blackbox_exporter in the same run, memory split by kind.

What a Fargate task's memory limit holds is anonymous memory (heap, stacks): Fargate has no swap,
so those pages can only be freed by the process. File-backed pages (the mapped binary) are clean
page cache the kernel drops and rereads under pressure, so they are reported apart. PSS divides
each page by the processes sharing it; in a one-process container it equals RSS, and the two
differ here only where a page is shared (e.g. a library mapped by other processes too).

  idle: fresh processes, no targets (dualprobe) / no probes (blackbox), one /metrics scrape
        each, read 5 s after start.
  load: N targets x 2 families x (dns, tcp) every I s (dualprobe's `scale` config: names from
        dnsmasq, `checks: [dns, tcp]`); blackbox gets the same work as Prometheus would send it,
        /probe dns (A, ip4 / AAAA, ip6) and tcp (127.0.0.1 / [::1]) at the same per-kind rate.
        Both are scraped every S s (dualprobe's /metrics in OpenMetrics, as Prometheus asks;
        blackbox's own /metrics). Memory is sampled every 0.25 s and every 2 ms during each
        scrape, whose render buffer lives for milliseconds; the peak of each field is reported.
"""

from __future__ import annotations

import statistics
import time

from agents import start_blackbox, start_driver, start_dualprobe
from common import (MiB, OPENMETRICS, counter_delta, http_get, parse_probes_total, probes_total, ready_bound,
                    wait_http)
from localnet import Env
from procfs import CpuWindow, MemSampler, mem_full
from report import med, spread, verdict

GOAL_IDLE_ANON = 1 * MiB  # issue 15: anonymous idle <= 1 MiB
GOAL_LOAD_ANON = 16 * MiB  # issue 15: anonymous at 1,000 targets, scraped every 15 s, <= 16 MiB

# (field, what it is); file-backed rows come after the anonymous ones, apart.
ROWS = (
    ("RssAnon", "anonymous (heap, stacks)"),
    ("Pss_Anon", "PSS anonymous"),
    ("Pss", "PSS total"),
    ("RssFile", "file-backed (binary, libraries)"),
    ("Pss_File", "PSS file-backed"),
    ("RssShmem", "shared memory"),
    ("VmRSS", "VmRSS (all of the above)"),
)


def idle(env: Env, timeout: float, after: float = 5.0) -> dict:
    """Fresh processes of both tools with no work; one /metrics scrape each; read `after` s after
    start (5 s; --quick reads sooner)."""
    t_start = time.monotonic()
    procs = {}
    try:
        procs["dualprobe"] = start_dualprobe(env, "idle", 0, 15, timeout)
        procs["blackbox"] = start_blackbox(env, timeout)
        for _, port in procs.values():
            http_get(port, "/metrics")
        time.sleep(max(0.0, after - (time.monotonic() - t_start)))
        return {k: mem_full(p.pid) for k, (p, _) in procs.items()}
    finally:
        for p, _ in procs.values():
            env.procs.stop(p)


def _scrape(sampler: MemSampler, port: int, headers: dict) -> bytes:
    sampler.burst(True)
    try:
        status, body = http_get(port, "/metrics", timeout=30, headers=headers)
        if status != 200:
            raise RuntimeError(f"/metrics on :{port} answered {status}")
        time.sleep(0.02)  # the buffer is freed after the last byte is sent: keep sampling a bit
        return body
    finally:
        sampler.burst(False)


def load(env: Env, n: int, interval: float, timeout: float, window: float, every: float) -> dict:
    """Both tools probing n targets x 2 families x (dns, tcp) every `interval`, scraped every
    `every` s for `window` s; peak (and between-scrape median) of every memory field."""
    timeout = min(timeout, interval / 2)
    dp, dport = start_dualprobe(env, "scale", n, interval, timeout)
    bb = driver = None
    try:
        bb, bport = start_blackbox(env, timeout)
        warm = ready_bound(2 * n, interval, timeout)
        driver = start_driver(env, bport, "scale", n, interval, warm + window + 5)
        wait_http(dport, "/-/ready", warm, dp)  # every (target, family) pair has run once
        time.sleep(min(2.0, interval / 2))
        # Before any scrape: what probing alone holds (the first scrape leaves buffers behind).
        unscraped = {"dualprobe": mem_full(dp.pid), "blackbox": mem_full(bb.pid)}
        sampler = MemSampler({"dualprobe": dp.pid, "blackbox": bb.pid})
        sampler.start()
        cpus = {"dualprobe": CpuWindow(), "blackbox": CpuWindow()}
        cpus["dualprobe"].start(dp.pid)
        cpus["blackbox"].start(bb.pid)
        t0 = time.monotonic()
        end, next_scrape, scrapes, c0, size = t0 + window, t0, 0, None, 0
        try:
            while time.monotonic() < end:
                if time.monotonic() >= next_scrape:
                    body = _scrape(sampler, dport, OPENMETRICS)
                    size = len(body)
                    if c0 is None:
                        c0, tc0 = parse_probes_total(body), time.monotonic()
                    _scrape(sampler, bport, {})
                    scrapes += 1
                    next_scrape += every
                time.sleep(max(0.0, min(0.1, end - time.monotonic())))
        finally:
            sampler.stop()
        cpu = {k: w.stop() for k, w in cpus.items()}
        t1 = time.monotonic()
        c1, tc1 = probes_total(dport), time.monotonic()  # after the window: not sampled
        d = counter_delta(c0, c1)
        got = driver.between(t0, t1)
        out = {"targets": n, "interval_s": interval, "every_s": every, "window_s": t1 - t0,
               "scrapes": scrapes, "metrics_bytes": size, "expected_per_s": 4 * n / interval}
        for name, pid, extra in (
            ("dualprobe", dp.pid, {"per_s": sum(d.values()) / (tc1 - tc0),
                                   "failed": sum(v for (_, r), v in d.items() if r != "ok")}),
            ("blackbox", bb.pid, {"per_s": sum(got.values()) / (t1 - t0), "late_skipped": driver.late,
                                  "failed": sum(v for (_, r), v in got.items() if r != "ok")}),
        ):
            slow = sampler.samples[name]
            out[name] = {"peak": sampler.peak[name], "hwm": mem_full(pid).get("VmHWM", 0),
                         "cpu_pct": 100 * cpu[name]["cpu_ns"] / 1e9 / cpu[name]["wall_s"],
                         "unscraped": unscraped[name],
                         "median": {f: statistics.median(s.get(f, 0) for s in slow) for f in slow[0]}
                         if slow else {}, "samples": len(slow), **extra}
        return out
    finally:
        if driver:
            driver.join(5)
        if bb:
            env.procs.stop(bb)
        env.procs.stop(dp)


def _row(label: str, dp: list, bb: list, goal: str = "", v: str = "") -> str:
    def mib(xs):
        return spread([x / MiB for x in xs], "{:.2f}") if xs else "n/a"

    ratio = f"{med(dp) / med(bb):6.2f}" if dp and bb and med(bb) else f"{'-':>6}"
    return f"  {label:34} {mib(dp):>22} {mib(bb):>22} {ratio}  {goal:>9} {v}"


def report(res: dict, goals: bool = True) -> None:
    """Prints idle and load side by side, with issue 15's goals unless `goals` is false."""
    runs = res["load"]
    r0 = runs[0] if runs else None
    print("\n== memory: dualprobe vs blackbox_exporter, same run (MiB, median [min..max] over runs) ==")
    print(f"  {'':34} {'dualprobe':>22} {'blackbox':>22} {'ratio':>6}  {'goal':>9}")
    print("idle (no targets, one scrape, 5 s after start):")
    idle_rows = res["idle"]
    for field, what in ROWS:
        dp = [m[field] for m in idle_rows["dualprobe"] if field in m]
        bb = [m[field] for m in idle_rows["blackbox"] if field in m]
        goal = v = ""
        if field == "RssAnon" and goals:
            goal, v = "<= 1 MiB", verdict(bool(dp) and med(dp) <= GOAL_IDLE_ANON)
        print(_row(what, dp, bb, goal, v))
    if not r0:
        return
    print(f"load ({r0['targets']} targets x 2 families x (dns, tcp) every {r0['interval_s']:g}s, "
          f"scraped every {r0['every_s']:g}s; peak over {r0['window_s']:.0f}s):")
    for field, what in ROWS:
        dp = [r["dualprobe"]["peak"][field] for r in runs if field in r["dualprobe"]["peak"]]
        bb = [r["blackbox"]["peak"][field] for r in runs if field in r["blackbox"]["peak"]]
        goal = v = ""
        if field == "RssAnon" and goals:
            goal, v = "<= 16 MiB", verdict(bool(dp) and med(dp) <= GOAL_LOAD_ANON)
        print(_row(what, dp, bb, goal, v))
    for label, key in (("anonymous, before the first scrape", "unscraped"),
                       ("anonymous, median between scrapes", "median")):
        print(_row(label, *([r[k][key].get("RssAnon", 0) for r in runs] for k in ("dualprobe", "blackbox"))))
    print(f"  VmHWM (peak of VmRSS since start): dualprobe "
          f"{spread([r['dualprobe']['hwm'] / MiB for r in runs], '{:.1f}')}, blackbox "
          f"{spread([r['blackbox']['hwm'] / MiB for r in runs], '{:.1f}')}")
    print(f"  CPU % of one core over the window, scrapes included: dualprobe "
          f"{spread([r['dualprobe'].get('cpu_pct') for r in runs], '{:.2f}')}, blackbox "
          f"{spread([r['blackbox'].get('cpu_pct') for r in runs], '{:.2f}')} (serving /probe included)")
    print(f"  work: dualprobe {spread([r['dualprobe']['per_s'] for r in runs], '{:.1f}')} checks/s, "
          f"blackbox {spread([r['blackbox']['per_s'] for r in runs], '{:.1f}')} probes/s "
          f"(expected {r0['expected_per_s']:.1f}); failed {sum(r['dualprobe']['failed'] for r in runs):.0f}"
          f"/{sum(r['blackbox']['failed'] for r in runs)}, blackbox requests skipped as late "
          f"{sum(r['blackbox']['late_skipped'] for r in runs)}; {r0['scrapes']} scrapes of "
          f"{r0['metrics_bytes'] / 1024:.0f} KiB each")


def sane(res: dict) -> bool:
    """--quick: every field read, work done, nothing failed."""
    ok = all(m.get("RssAnon", 0) > 0 and m.get("Pss", 0) > 0 for ms in res["idle"].values() for m in ms)
    for r in res["load"]:
        ok = ok and r["scrapes"] > 0 and r["dualprobe"]["per_s"] > 0 and r["blackbox"]["per_s"] > 0
        ok = ok and all(r[k]["peak"].get("RssAnon", 0) > 0 and r[k]["peak"].get("Pss", 0) > 0
                        for k in ("dualprobe", "blackbox"))
    return ok
