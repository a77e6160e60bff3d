"""Printing the CPU scenarios' results (compare, scale, metrics): median [min..max] over repeated
runs and ratios. The goals and PASS/MISS verdicts are summary.py's."""

from __future__ import annotations

import math
import statistics

from common import MiB

# Targets from issue 2 (CPU and /metrics; its idle-RSS targets gave way to issue 15's
# anonymous-memory goals, in memory.py) and issue 15's /metrics goal.
TARGET_CPU_RATIO = 0.25  # dualprobe CPU per probe <= 1/4 of blackbox's
TARGET_SCALE_CPU_PCT = 3.0
TARGET_SCALE_RSS = 40 * MiB
TARGET_METRICS_MS = 10.0  # issue 2: 1,000 targets, dns+tcp
GOAL_METRICS_HTTP_MS = 5.0  # issue 15: 1,000 targets, dns+tcp+http, render and send


def med(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return statistics.median(xs) if xs else float("nan")


def spread(xs, fmt="{:.0f}"):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs:
        return "n/a"
    return f"{fmt.format(med(xs))} [{fmt.format(min(xs))}..{fmt.format(max(xs))}]"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report_compare(res: dict) -> None:
    print("\n== compare: dualprobe vs blackbox_exporter (median [min..max] over runs) ==")
    print(f"{'kind':6} {'dualprobe us/check':>28} {'blackbox us/probe':>28} {'ratio':>6} "
          f"{'dp anon max MiB':>16} {'bb anon max MiB':>16} {'dp checks':>9} {'bb probes':>9} {'fail dp/bb':>10}")
    for kind, runs in res["phases"].items():
        dp = [r["dualprobe"]["us_per_check"] for r in runs]
        bb = [r["blackbox"]["us_per_probe"] for r in runs]
        ratio = med(dp) / med(bb)
        paired = [r["dualprobe"]["us_per_check"] / r["blackbox"]["us_per_probe"] for r in runs]
        print(f"{kind:6} {spread(dp):>28} {spread(bb):>28} {ratio:6.3f} "
              f"{spread([r['dualprobe']['anon_max'] / MiB for r in runs], '{:.1f}'):>16} "
              f"{spread([r['blackbox']['anon_max'] / MiB for r in runs], '{:.1f}'):>16} "
              f"{med([r['dualprobe']['checks'] for r in runs]):9.0f} {med([r['blackbox']['probes'] for r in runs]):9.0f} "
              f"{sum(r['dualprobe']['failed'] for r in runs):.0f}/{sum(r['blackbox']['failed'] for r in runs)}")
        stat = [r["dualprobe"]["stat_us_per_check"] for r in runs]
        print(f"{'':6} ratio per run (paired) {spread(paired, '{:.3f}')}; /proc/PID/stat cross-check "
              f"(10 ms ticks): dualprobe {med(stat):.0f}, blackbox {med([r['blackbox']['stat_us_per_probe'] for r in runs]):.0f}")
        pc = [r["dualprobe"].get("per_cycle") for r in runs if r["dualprobe"].get("per_cycle")]
        if pc:
            print(f"{'':6} dualprobe per (target, family) cycle: "
                  f"{med([p['dns_queries'] for p in pc]):.2f} DNS queries, "
                  f"{med([p['tcp_connections'] for p in pc]):.2f} TCP connections")


def report_scale(res: list) -> None:
    print("\n== scale: dualprobe alone (median [min..max] over runs) ==")
    r0 = res[0]
    print(f"{r0['targets']} targets x 2 families x (dns, tcp) every {r0['interval_s']:g}s")
    cpu = [r["dualprobe"]["cpu_pct"] for r in res]
    rss = [r["dualprobe"]["rss_max"] for r in res]
    us = [r["dualprobe"]["us_per_check"] for r in res]
    rate = [r["dualprobe"]["checks"] / r["dualprobe"]["wall_s"] for r in res]
    exp = [r["dualprobe"]["expected_checks"] / r["dualprobe"]["wall_s"] for r in res]
    print(f"CPU % of one core  {spread(cpu, '{:.2f}')}")
    print(f"RSS max MiB        {spread([x / MiB for x in rss], '{:.1f}')}   "
          f"(VmHWM {spread([r['dualprobe']['hwm'] / MiB for r in res], '{:.1f}')})")
    print(f"RSS before any /metrics scrape MiB {spread([r['dualprobe']['rss_unscraped'] / MiB for r in res], '{:.1f}')} "
          f"(anon {spread([r['dualprobe']['anon_unscraped'] / MiB for r in res], '{:.1f}')}); "
          f"the window max above follows one scrape")
    print(f"us per check       {spread(us)}")
    sc = [r["dualprobe"]["scraped"] for r in res if r["dualprobe"].get("scraped")]
    if sc:
        print(f"with /metrics scraped every {sc[0]['every_s']:g}s (OpenMetrics), {sc[0]['wall_s']:.0f}s window: "
              f"CPU % {spread([x['cpu_pct'] for x in sc], '{:.2f}')}, RSS max MiB "
              f"{spread([x['rss_max'] / MiB for x in sc], '{:.1f}')}, VmHWM MiB {spread([x['hwm'] / MiB for x in sc], '{:.1f}')}")
    print(f"checks/s           {spread(rate, '{:.1f}')} (expected {med(exp):.1f}); "
          f"failed checks {sum(r['dualprobe']['failed'] for r in res):.0f}")


def report_metrics(res: dict) -> None:
    print("\n== metrics: sequential GET /metrics over loopback (median [min..max] over runs) ==")
    for kind, runs in res.items():
        for mode in ("openmetrics", "text"):
            m = [r[mode] for r in runs]
            print(f"{runs[0]['targets']} targets, checks {kind:5} {mode:11}: median "
                  f"{spread([x['median_ms'] for x in m], '{:.2f}')} ms, p90 {med([x['p90_ms'] for x in m]):.2f} ms, "
                  f"server CPU {spread([x['server_cpu_ms_per_scrape'] for x in m], '{:.2f}')} ms/scrape, "
                  f"{med([x['bytes'] for x in m]) / 1024:.0f} KiB, {med([x['lines'] for x in m]):.0f} lines")
