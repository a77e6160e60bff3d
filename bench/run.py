#!/usr/bin/env python3
"""dualprobe benchmark: CPU per probe, memory, time to first result, timing fidelity under load and
the new check kinds' cost, against Prometheus blackbox_exporter, ending in one summary table.

Method
======
The loopback scenarios (compare, scale, metrics, memory, first_result) run on 127.0.0.1 and ::1
only; the root-only ones (fidelity, newkinds) in network namespaces they create and remove
(netns.py; documentation prefixes only; skipped, and said so, without root). Nothing is built
(pass the binaries). Each scenario's own module docstring has its method in full:
first_result.py (exec -> /-/ready), fidelity.py (a target 200 ms away, loaded and not),
memory.py (anonymous memory and PSS), newkinds.py (icmp, happy_eyeballs, pmtu, trace),
scenarios.py (compare, scale, metrics); summary.py builds the table.

Peers, started by this script and killed by it on exit (try/finally, Ctrl-C and SIGTERM too):
  * dnsmasq on 127.0.0.1:P and [::1]:P, answering A (127.0.0.1) and AAAA (::1) for
    t0..t{N-1}.bench.test (localnet.py), no upstream, answer cache off.
  * One asyncio TCP+HTTP server (peer.py, a child process) on 127.0.0.1:Q and [::1]:Q. It
    answers any request with "200 ok" and closes; a bare `tcp` check's connection is just closed.

What is measured (only the probing process itself; peers and this script are excluded):
  * CPU: the process's CPU clock (clock_gettime on the Linux per-process CPU clock of the PID,
    i.e. user+system of every thread, dead ones included, nanosecond resolution). It is the
    same quantity as utime+stime in /proc/PID/stat, which is only 10 ms (USER_HZ) granular; the
    script reads both and prints the /proc figure alongside as a cross-check.
  * dualprobe CPU per check = CPU delta over a window / delta of its own
    `dualprobe_probes_total` counters (all results) over the same window. /metrics is scraped
    just before the window starts and just after it ends, so the scrapes are outside it.
  * blackbox_exporter CPU per probe = CPU delta over the same window / number of /probe
    requests that completed inside the window. The script drives /probe at the same rate
    dualprobe runs checks (N targets x 2 families / interval, per kind), spread evenly in time,
    over a few keep-alive HTTP connections (as Prometheus scrapes it). This cost includes
    serving the /probe HTTP request and rendering its result, which is how blackbox works.
  * Memory (scenario `memory`, memory.py): RssAnon, RssFile, RssShmem from /proc/PID/status and
    Pss, Pss_Anon, Pss_File from /proc/PID/smaps_rollup, of both tools in the same run, idle and
    at 1,000 targets x 2 families x (dns, tcp) every 10 s while scraped every 15 s. Anonymous
    memory is what a Fargate task's limit holds; file-backed pages are reclaimable page cache and
    are shown apart. Goals (issue 15): anonymous idle <= 1 MiB, at 1,000 targets <= 16 MiB.

Fair comparison (scenario `compare`): blackbox's tcp and http probers resolve names with the
system resolver, which cannot be pointed at a loopback dnsmasq on a custom port without
changing /etc/resolv.conf. So each kind is measured in its own phase, both tools doing the
same work at the same rate, in parallel:
  * dns : dualprobe `checks: [dns]` on host tI.bench.test (A for ipv4, AAAA for ipv6), resolver
          = the dnsmasq; blackbox `dns` prober with `target=127.0.0.1:P` (A, ip4) and
          `target=[::1]:P` (AAAA, ip6), query_name t0.bench.test (blackbox takes the name from
          the module, not the request; all names are served from the same dnsmasq table).
  * tcp : IP-literal targets in both tools (127.0.0.1:Q and [::1]:Q), one connect each.
  * http: IP-literal targets in both tools, GET http://127.0.0.1:Q/health (and [::1]), one
          new connection per probe in both (dualprobe keeps no idle pool; blackbox neither).
  * chain: the realistic dualprobe config: hosts by name, `checks: [dns, tcp, http]`, versus
          blackbox driven with all three kinds at the same per-kind rate. The chain phase
          also reports how many DNS queries and TCP connections dualprobe makes per cycle.
Each phase starts fresh processes of both tools; every phase is repeated --repeat times
(default 3) and the median and the min..max spread are reported.

Scenario `scale`: 1,000 targets x 2 families x (dns, tcp) every 10 s, dualprobe alone:
CPU % of one core over the window and RSS. Scenario `metrics`: 1,000 targets, after the first
full cycle, many sequential GET /metrics over one keep-alive loopback connection, with checks
(dns, tcp), (dns, tcp, http), and (dns, tcp, http) with 5 duration buckets instead of 16 (what
`metrics.duration_buckets` saves); reports the median wall time per scrape (this includes HTTP
handling and the loopback round trip) and the CPU dualprobe spent per scrape (CPU during the
scrapes minus its background probing rate).

Every load loop is bounded in count and in time. Usage:
  python3 bench/run.py --bin target/release/dualprobe --scenario all --report docs/bench-latest.md
                       # everything, ~15 min on 2 cores; --report writes the markdown section
  python3 bench/run.py --bin target/release/dualprobe --scenario compare --targets 100
  python3 bench/run.py --bin target/release/dualprobe --scenario memory     # or first_result, ...
  python3 bench/run.py --bin target/release/dualprobe --quick        # CI smoke test, < 60 s
"""

from __future__ import annotations

import sys

sys.dont_write_bytecode = True  # no __pycache__ left in the checkout by a bench run

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import time  # noqa: E402

import fidelity  # noqa: E402
import first_result  # noqa: E402
import memory  # noqa: E402
import netns  # noqa: E402
import newkinds  # noqa: E402
import runinfo  # noqa: E402
import summary  # noqa: E402
from common import MiB, log  # noqa: E402
from localnet import Env  # noqa: E402
from report import report_compare, report_metrics, report_scale  # noqa: E402
from scenarios import metrics_run, phase  # noqa: E402

SCENARIOS = ["first_result", "fidelity", "memory", "metrics", "compare", "scale", "newkinds"]
NETNS = {"fidelity", "newkinds"}


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default="target/release/dualprobe", help="the dualprobe binary (not built here)")
    ap.add_argument("--blackbox", default=shutil.which("prometheus-blackbox-exporter") or "prometheus-blackbox-exporter")
    ap.add_argument("--scenario", choices=["all"] + SCENARIOS, default="all")
    ap.add_argument("--targets", type=int, help="N (default: compare 100, scale/metrics/memory/fidelity 1000)")
    ap.add_argument("--interval", type=float, help="seconds (default: compare 5, scale/metrics/memory 10)")
    ap.add_argument("--duration", type=float, help="measurement window, seconds (default 20; memory: "
                                                   "at least 3 scrape intervals)")
    ap.add_argument("--timeout", type=float, default=2.0, help="per-check timeout, seconds")
    ap.add_argument("--nameservers", type=int, choices=[1, 2], default=1,
                    help="dualprobe resolver: 1 = 127.0.0.1:P (like blackbox's one server), "
                         "2 = also [::1]:P")
    ap.add_argument("--repeat", type=int, help="runs per measurement (default 2; first_result 3)")
    ap.add_argument("--kinds", default="dns,tcp,http,chain", help="compare phases")
    ap.add_argument("--scrape-every", type=float, default=15.0,
                    help="scale and memory: Prometheus-style scrape interval (s)")
    ap.add_argument("--taskset", help="run dualprobe under `taskset -c CPUS` (tokio starts one "
                                      "worker per allowed CPU: e.g. 1 for a one-worker experiment)")
    ap.add_argument("--scrapes", type=int, default=100, help="GET /metrics per run (metrics)")
    ap.add_argument("--first-sizes", default="2,100,1000", help="first_result: target counts")
    ap.add_argument("--first-interval", type=float, default=30.0, help="first_result: interval (s)")
    ap.add_argument("--delay-ms", type=float, default=200.0, help="fidelity: added round-trip time")
    ap.add_argument("--fidelity-window", type=float, default=30.0, help="fidelity: window per phase (s)")
    ap.add_argument("--fidelity-copies", type=int, default=20,
                    help="fidelity: delayed targets per family (each every 2 s)")
    ap.add_argument("--newkinds-targets", type=int, default=25, help="newkinds: targets per family")
    ap.add_argument("--newkinds-interval", type=float, default=5.0, help="newkinds: interval (s)")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (< 60 s), no thresholds")
    ap.add_argument("--json", help="write every raw result to this file")
    ap.add_argument("--report", help="write the markdown section (summary table, raw output) here")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a goal is missed")
    ap.add_argument("--keep", action="store_true", help="keep the workdir (configs, logs)")
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)
    for b in (args.bin, args.blackbox):
        if not (os.path.isfile(b) and os.access(b, os.X_OK)) and not shutil.which(b):
            ap.error(f"not an executable: {b}")
    if not shutil.which("dnsmasq"):
        ap.error("dnsmasq not found")
    return args


def opt(v, default):
    return default if v is None else v


def netns_ok(results: dict, name: str) -> bool:
    why = netns.available()
    if why:
        log(f"SKIPPED {name}: {why}")
        results.setdefault("skipped", {})[name] = why
    return why is None


def run_quick(env: Env, args, results: dict) -> bool:
    """Every scenario once, tiny: checks that the bench runs and yields numbers."""
    n, iv, dur = opt(args.targets, 4), opt(args.interval, 2.0), opt(args.duration, 2.0)
    to = min(args.timeout, iv / 2)
    mem_res = {"idle": {k: [v] for k, v in memory.idle(env, to, after=2.0).items()},
               "load": [memory.load(env, n, iv, to, dur, min(args.scrape_every, dur / 2))]}
    results["memory"] = mem_res
    memory.report(mem_res, goals=False)
    ph = phase(env, "chain", n, iv, dur, to)
    results["compare"] = {"phases": {"chain": [ph]}}
    report_compare(results["compare"])
    fr = first_result.run(env, [2], iv, to, 1)
    results["first_result"] = fr
    first_result.report(fr)
    mt = metrics_run(env, n, iv, to, 3, "chain5")
    results["metrics"] = {"dns+tcp+http, 5 buckets": [mt]}
    report_metrics(results["metrics"])
    dp, bb = ph["dualprobe"], ph["blackbox"]
    checks = [dp["us_per_check"], bb["us_per_probe"], dp["anon_max"], bb["anon_max"],
              fr["sizes"][2][0]["ready_s"], fr["blackbox"][0]["healthy_s"],
              mt["openmetrics"]["median_ms"], mt["text"]["median_ms"],
              mt["openmetrics"]["lines"], mt["text"]["lines"]]
    ok = dp["checks"] > 0 and bb["probes"] > 0 and memory.sane(mem_res) and not fr["sizes"][2][0]["timed_out"]
    if netns_ok(results, "fidelity"):
        fd = fidelity.run(env, n=10, k=2, window=dur, delay_ms=args.delay_ms, interval=iv, settle=0.5)
        results["fidelity"] = fd
        fidelity.report(fd)
        for tool in ("dualprobe", "blackbox"):
            for cond in ("unloaded", "loaded"):
                r = fd[tool][cond]
                checks += [r["stats"]["p99"], r["ref"]["p99"]]
                ok = ok and r["stats"]["n"] > 0 and r["failed"] == 0
    if netns_ok(results, "newkinds"):
        nk = newkinds.run(env, n=2, interval=1.0, window=dur, settle=0.5)
        results["newkinds"] = nk
        newkinds.report(nk)
        for r in list(nk["dualprobe"].values()) + list(nk["blackbox"].values()):
            checks += [r["us_per_probe"], *r["bytes_per_cycle"].values()]
            ok = ok and r["probes"] > 0 and r["failed"] == 0
    return ok and all(summary._ok(x) and x > 0 for x in checks)


def run_full(env: Env, args, scenarios: list, results: dict) -> None:
    repeat = max(1, opt(args.repeat, 2))
    dur = opt(args.duration, 20.0)
    if "first_result" in scenarios:
        sizes = [int(x) for x in args.first_sizes.split(",") if x.strip()]
        res = first_result.run(env, sizes, args.first_interval, args.timeout, max(1, opt(args.repeat, 3)))
        results["first_result"] = res
        first_result.report(res)

    if "fidelity" in scenarios and netns_ok(results, "fidelity"):
        res = fidelity.run(env, n=opt(args.targets, 1000), k=args.fidelity_copies, window=args.fidelity_window,
                           delay_ms=args.delay_ms)
        results["fidelity"] = res
        fidelity.report(res)

    if "memory" in scenarios:
        n, iv = opt(args.targets, 1000), opt(args.interval, 10.0)
        window = max(dur, 3 * args.scrape_every)
        res = {"idle": {"dualprobe": [], "blackbox": []}, "load": []}
        for rep in range(repeat):
            log(f"memory run {rep + 1}/{repeat}: idle, then {n} targets x 2 families x (dns, tcp) "
                f"every {iv:g}s, scraped every {args.scrape_every:g}s, {window:g}s window")
            for which, m in memory.idle(env, args.timeout).items():
                res["idle"][which].append(m)
            r = memory.load(env, n, iv, args.timeout, window, args.scrape_every)
            log(f"  anonymous peak: dualprobe {r['dualprobe']['peak'].get('RssAnon', 0) / MiB:.2f} MiB, "
                f"blackbox {r['blackbox']['peak'].get('RssAnon', 0) / MiB:.2f} MiB")
            res["load"].append(r)
        results["memory"] = res
        memory.report(res)

    if "metrics" in scenarios:
        n, iv = opt(args.targets, 1000), opt(args.interval, 10.0)
        res = {}
        for kind in ("scale", "chain", "chain5"):
            res[kind] = []
            for rep in range(repeat):
                log(f"metrics run {rep + 1}/{repeat}: {n} targets, checks of `{kind}`")
                res[kind].append(metrics_run(env, n, iv, args.timeout, args.scrapes, kind))
        label = {"scale": "dns+tcp", "chain": "dns+tcp+http", "chain5": "dns+tcp+http, 5 buckets"}
        results["metrics"] = {label[k]: v for k, v in res.items()}
        report_metrics(results["metrics"])

    if "compare" in scenarios:
        n, iv = opt(args.targets, 100), opt(args.interval, 5.0)
        kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
        res = {"phases": {k: [] for k in kinds}}
        for rep in range(repeat):
            for k in kinds:
                log(f"compare run {rep + 1}/{repeat}: {k}, {n} targets x 2 families every {iv:g}s, {dur:g}s window")
                r = phase(env, k, n, iv, dur, args.timeout)
                log(f"  dualprobe {r['dualprobe']['us_per_check']:.1f} us/check ({r['dualprobe']['checks']:.0f}), "
                    f"blackbox {r['blackbox']['us_per_probe']:.1f} us/probe ({r['blackbox']['probes']})")
                res["phases"][k].append(r)
        results["compare"] = res
        report_compare(res)

    if "scale" in scenarios:
        n, iv = opt(args.targets, 1000), opt(args.interval, 10.0)
        # With `all`, the memory scenario already measures this load scraped (CPU of both tools).
        scrape = None if len(scenarios) > 1 else args.scrape_every
        runs = []
        for rep in range(repeat):
            log(f"scale run {rep + 1}/{repeat}: {n} targets x 2 families x (dns, tcp) every {iv:g}s")
            r = phase(env, "scale", n, iv, dur, args.timeout, with_blackbox=False, scrape_every=scrape)
            log(f"  {r['dualprobe']['cpu_pct']:.2f}% CPU, {r['dualprobe']['rss_max'] / MiB:.1f} MiB")
            runs.append(r)
        results["scale"] = runs
        report_scale(runs)

    if "newkinds" in scenarios and netns_ok(results, "newkinds"):
        res = newkinds.run(env, n=args.newkinds_targets, interval=args.newkinds_interval, window=dur)
        results["newkinds"] = res
        newkinds.report(res)


def main() -> int:
    args = parse_args()

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT too: it may arrive ignored
        signal.signal(sig, on_term)

    scenarios = SCENARIOS if args.scenario == "all" else [args.scenario]
    if args.quick:
        max_names = opt(args.targets, 4)
    else:
        max_names = max(opt(args.targets, 100 if s == "compare" else 1000) for s in scenarios) + 2
    tee = runinfo.Tee() if args.report else None
    env = Env(args)
    results: dict = {"machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()},
                     "binaries": {"dualprobe": args.bin, "blackbox": args.blackbox}}
    try:
        env.start_peers(max_names)
        t_all = time.monotonic()
        if args.quick:
            ok = run_quick(env, args, results)
        else:
            run_full(env, args, scenarios, results)
        results["machine"]["loadavg_end"] = os.getloadavg()
        results["elapsed_s"] = time.monotonic() - t_all
        rows = summary.rows(results)
        if args.quick:
            rows = summary.unjudged(rows)
        summary.print_table(rows)
        print(f"({os.cpu_count()} cores, shared and noisy; load average at start "
              f"{results['machine']['loadavg_start'][0]:.2f}, end {results['machine']['loadavg_end'][0]:.2f}; "
              f"{results['elapsed_s']:.0f}s)")
        if args.quick:
            print(f"\nquick: {'OK' if ok else 'FAILED'} ({results['elapsed_s']:.0f}s; no thresholds checked)")
            rc = 0 if ok else 1
        else:
            rc = 1 if args.strict and any(r[5] == "MISS" for r in rows) else 0
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1, default=str)
        if tee:
            runinfo.write_report(args.report, rows, results, tee.text(), args)
            log(f"wrote {args.report}")
        return rc
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); stopping everything")
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # let cleanup finish
            signal.signal(sig, signal.SIG_IGN)
        env.close()
        if tee:
            tee.close()


if __name__ == "__main__":
    sys.exit(main())
