"""The one summary table of a bench run: every figure of issues 2, 14 and 15 that the run measured,
dualprobe and blackbox_exporter side by side, the ratio, the goal and PASS/MISS; printed as text
and, for --report, as a markdown section ready to paste into docs/benchmarks.md.

A row is (figure, dualprobe, blackbox, ratio, goal, verdict), all strings; verdict is "" for a
figure without a goal. Values are medians over the run's repeats (the detail sections above the
table print the spreads).
"""

from __future__ import annotations

import math

import fidelity
import memory
from common import MiB
from report import (GOAL_METRICS_HTTP_MS, TARGET_CPU_RATIO, TARGET_METRICS_MS, TARGET_SCALE_CPU_PCT,
                    TARGET_SCALE_RSS, med, verdict)

GOAL_FIRST_S = 1.0  # issue 15: few pairs' first results within 1 s of start (and of a reload)
GOAL_FIDELITY_MS = 2.0  # issue 15: loaded p99 within 2 ms of unloaded


def _ok(x) -> bool:
    return isinstance(x, (int, float)) and not math.isnan(x)


def _ratio(a, b) -> str:
    return f"{a / b:.2f}" if _ok(a) and _ok(b) and b else "-"


def _f(x, fmt: str, unit: str = "") -> str:
    return (fmt.format(x) + unit) if _ok(x) else "n/a"


def _row(figure, dp="-", bb="-", ratio="-", goal="", v="") -> tuple:
    return (figure, dp, bb, ratio, goal, v)


def rows(results: dict) -> list:
    out: list = []
    fr = results.get("first_result")
    if fr:
        iv = fr["interval_s"]
        bb = med([r["healthy_s"] for r in fr["blackbox"] if r["healthy_s"] is not None])
        for n, runs in fr["sizes"].items():
            ready = med([r["ready_s"] for r in runs])
            late = any(r["timed_out"] for r in runs)
            goal = f"≤ {GOAL_FIRST_S:g} s" if n <= 2 else "rate-bounded"
            v = verdict(ready <= GOAL_FIRST_S and not late) if n <= 2 else ""
            out.append(_row(f"first results: exec → `/-/ready` 200, {n} targets × 2 families, interval {iv:g} s",
                            _f(ready, "{:.2f}", " s") + (" (not ready: bound)" if late else ""),
                            _f(bb, "{:.2f}", " s (healthy)"), "-", goal, v))
            for r in runs:
                rl = r.get("reload")
                if rl and rl.get("status") == 200:
                    x = rl.get("last_first_result_s")
                    out.append(_row(f"first results of 2 targets added by a reload ({n} running)",
                                    _f(x, "{:.2f}", " s") if x is not None else "not seen", "-", "-",
                                    f"≤ {GOAL_FIRST_S:g} s", verdict(x is not None and x <= GOAL_FIRST_S)))
    fd = results.get("fidelity")
    if fd and "dualprobe" in fd:
        dp, bb = fd["dualprobe"], fd.get("blackbox", {})

        def pp(r):
            return f"{r['stats']['p50']:.1f} / {r['stats']['p99']:.1f} ms" if r else "-"

        n = fd["load_targets"]
        out.append(_row(f"tcp to a target {fd['delay_ms']:g} ms away, p50 / p99, unloaded",
                        pp(dp.get("unloaded")), pp(bb.get("unloaded"))))
        out.append(_row(f"… with {n:,} targets × 2 × (dns, tcp) every {fd.get('interval_s', 10):g} s in flight",
                        pp(dp.get("loaded")), pp(bb.get("loaded"))))

        def rise(d):
            if not d.get("loaded") or not d.get("unloaded"):
                return float("nan")
            return d["loaded"]["stats"]["p99"] - d["unloaded"]["stats"]["p99"]

        r_dp, r_bb = rise(dp), rise(bb) if bb else float("nan")
        out.append(_row("… p99 rise under that load", _f(r_dp, "{:+.2f}", " ms"), _f(r_bb, "{:+.2f}", " ms"),
                        "-", f"≤ {GOAL_FIDELITY_MS:g} ms", verdict(_ok(r_dp) and r_dp <= GOAL_FIDELITY_MS)))

        def ref(d):
            u, lo = d.get("unloaded"), d.get("loaded")
            return f"{u['ref']['p99']:.1f} / {lo['ref']['p99']:.1f} ms" if u and lo else "-"

        out.append(_row("… the path's own p99 in the same phases (reference prober), unloaded / loaded",
                        ref(dp), ref(bb) if bb else "-"))
        busy = fidelity.busiest(fd)
        if busy > fidelity.QUIET_LOADAVG:
            out.append(_row(f"… (not a quiet machine: load average up to {busy:.1f} during these phases)"))
    mem = results.get("memory")
    if mem:
        idle, load = mem["idle"], mem["load"]

        def im(tool, field):
            return med([m.get(field) for m in idle[tool] if field in m])

        def lm(tool, field, key="peak"):
            return med([r[tool][key].get(field) for r in load if field in r[tool][key]])

        a_dp, a_bb = im("dualprobe", "RssAnon"), im("blackbox", "RssAnon")
        out.append(_row("anonymous memory, idle", _f(a_dp / MiB, "{:.2f}", " MiB"), _f(a_bb / MiB, "{:.2f}", " MiB"),
                        _ratio(a_dp, a_bb), "≤ 1 MiB", verdict(_ok(a_dp) and a_dp <= memory.GOAL_IDLE_ANON)))
        p_dp, p_bb = im("dualprobe", "Pss"), im("blackbox", "Pss")
        out.append(_row("PSS, idle", _f(p_dp / MiB, "{:.2f}", " MiB"), _f(p_bb / MiB, "{:.2f}", " MiB"),
                        _ratio(p_dp, p_bb)))
        if load:
            r0 = load[0]
            what = (f"{r0['targets']:,} targets × 2 × (dns, tcp) every {r0['interval_s']:g} s, "
                    f"scraped every {r0['every_s']:g} s")
            a_dp, a_bb = lm("dualprobe", "RssAnon"), lm("blackbox", "RssAnon")
            out.append(_row(f"anonymous memory, peak, {what}", _f(a_dp / MiB, "{:.2f}", " MiB"),
                            _f(a_bb / MiB, "{:.2f}", " MiB"), _ratio(a_dp, a_bb), "≤ 16 MiB",
                            verdict(_ok(a_dp) and a_dp <= memory.GOAL_LOAD_ANON)))
            m_dp, m_bb = lm("dualprobe", "RssAnon", "median"), lm("blackbox", "RssAnon", "median")
            out.append(_row("… anonymous, median between scrapes", _f(m_dp / MiB, "{:.2f}", " MiB"),
                            _f(m_bb / MiB, "{:.2f}", " MiB"), _ratio(m_dp, m_bb)))
            out.append(_row("… anonymous added during a scrape (peak − between scrapes)",
                            _f((a_dp - m_dp) / MiB, "{:.2f}", " MiB"), _f((a_bb - m_bb) / MiB, "{:.2f}", " MiB")))
            p_dp, p_bb = lm("dualprobe", "Pss"), lm("blackbox", "Pss")
            out.append(_row("… PSS, peak", _f(p_dp / MiB, "{:.2f}", " MiB"), _f(p_bb / MiB, "{:.2f}", " MiB"),
                            _ratio(p_dp, p_bb)))
            c_dp = med([r["dualprobe"].get("cpu_pct") for r in load])
            c_bb = med([r["blackbox"].get("cpu_pct") for r in load])
            out.append(_row("… CPU % of one core, scrapes included (blackbox: serving /probe)",
                            _f(c_dp, "{:.2f}", " %"), _f(c_bb, "{:.2f}", " %"), _ratio(c_dp, c_bb),
                            f"< {TARGET_SCALE_CPU_PCT:g} %", verdict(_ok(c_dp) and c_dp < TARGET_SCALE_CPU_PCT)))
    cmp_ = results.get("compare")
    if cmp_:
        for kind, runs in cmp_["phases"].items():
            if not runs:
                continue
            dp = med([r["dualprobe"]["us_per_check"] for r in runs])
            bb = med([r["blackbox"]["us_per_probe"] for r in runs])
            r0 = runs[0]
            out.append(_row(f"CPU per check: {kind} ({r0['targets']} targets × 2 every {r0['interval_s']:g} s)",
                            _f(dp, "{:.0f}", " µs"), _f(bb, "{:.0f}", " µs"), _ratio(dp, bb),
                            f"≤ {TARGET_CPU_RATIO:g} × blackbox",
                            verdict(_ok(dp) and _ok(bb) and dp / bb <= TARGET_CPU_RATIO)))
    sc = results.get("scale")
    if sc:
        r0 = sc[0]
        cpu = med([r["dualprobe"]["cpu_pct"] for r in sc])
        rss = med([r["dualprobe"]["rss_max"] for r in sc])
        what = f"{r0['targets']:,} targets × 2 × (dns, tcp) every {r0['interval_s']:g} s"
        out.append(_row(f"CPU % of one core, {what}, unscraped", _f(cpu, "{:.2f}", " %"), "-", "-",
                        f"< {TARGET_SCALE_CPU_PCT:g} %", verdict(cpu < TARGET_SCALE_CPU_PCT)))
        out.append(_row(f"VmRSS max, {what}", _f(rss / MiB, "{:.1f}", " MiB"), "-", "-",
                        f"< {TARGET_SCALE_RSS // MiB} MiB", verdict(rss < TARGET_SCALE_RSS)))
    mt = results.get("metrics")
    if mt:
        for kind, runs in mt.items():
            goal_ms = GOAL_METRICS_HTTP_MS if "http" in kind else TARGET_METRICS_MS
            for mode, label in (("openmetrics", "OpenMetrics"), ("text", "text 0.0.4")):
                ms = med([r[mode]["median_ms"] for r in runs])
                size = med([r[mode]["bytes"] for r in runs])
                out.append(_row(f"`/metrics`, {runs[0]['targets']:,} targets, {kind}, {label} ({size / MiB:.1f} MiB), "
                                f"median GET", _f(ms, "{:.2f}", " ms"), "-", "-", f"≤ {goal_ms:g} ms",
                                verdict(_ok(ms) and ms <= goal_ms)))
    nk = results.get("newkinds")
    if nk and nk.get("dualprobe"):
        for kind, r in nk["dualprobe"].items():
            bb = nk["blackbox"].get(kind)
            what, per = (("per race", "") if kind == "happy_eyeballs" else ("per probe", " per family"))
            out.append(_row(f"CPU {what}: {kind} ({nk['targets']} targets{per} every {nk['interval_s']:g} s)",
                            _f(r["us_per_probe"], "{:.0f}", " µs"),
                            _f(bb["us_per_probe"], "{:.0f}", " µs") if bb else "-",
                            _ratio(r["us_per_probe"], bb["us_per_probe"]) if bb else "-"))
            b = r["bytes_per_cycle"]
            if kind == "happy_eyeballs":
                dpb = _f(b.get("race"), "{:.0f}", " B per race") + (
                    f" (IPv4 {b['of which ipv4']:.0f} + IPv6 {b['of which ipv6']:.0f}; DNS included)"
                    if "of which ipv4" in b else "")
            elif "ipv4" in b:
                dpb = f"{_f(b['ipv4'], '{:.0f}')} / {_f(b['ipv6'], '{:.0f}')} B"
            else:
                dpb = _f(b.get("both"), "{:.0f}", " B")
            bbb = "-"
            if bb:
                x = bb["bytes_per_cycle"]
                bbb = (f"{_f(x['ipv4'], '{:.0f}')} / {_f(x['ipv6'], '{:.0f}')} B" if "ipv4" in x
                       else _f(x.get("both"), "{:.0f}", " B"))
            out.append(_row(f"bytes sent per cycle: {kind}" + ("" if kind == "happy_eyeballs" else ", IPv4 / IPv6"),
                            dpb, bbb))
    for name, why in results.get("skipped", {}).items():
        out.append(_row(f"{name}: skipped ({why})", "-", "-"))
    return out


def unjudged(rs: list) -> list:
    """The rows without verdicts (--quick: its tiny figures are not the goals' conditions)."""
    return [r[:5] + ("",) for r in rs]


def print_table(rs: list) -> None:
    print("\n== summary: dualprobe vs blackbox_exporter (issues 2, 14, 15; MISS = goal missed) ==")
    w = max([len(r[0]) for r in rs] + [10])
    w = min(w, 96)
    print(f"{'':4}  {'figure':{w}}  {'dualprobe':>22}  {'blackbox':>20}  {'ratio':>5}  goal")
    for fig, dp, bb, ratio, goal, v in rs:
        print(f"{v:4}  {fig:{w}}  {dp:>22}  {bb:>20}  {ratio:>5}  {goal}")


def markdown(rs: list, meta: dict, raw: str) -> str:
    """The report section: what ran, the table, the raw output folded."""
    lines = [f"### Bench run {meta['when']}: `{meta['version']}`", "",
             f"`{meta['command']}` — {meta['cpus']} cores, load average {meta['load_start']:.2f} at start, "
             f"{meta['load_end']:.2f} at end, {meta['elapsed_s'] / 60:.1f} min. Binary `{meta['bin']}` "
             f"(sha256 {meta['sha256'][:12]}), tree {meta['git']}; {meta['blackbox']}.", "",
             "| figure | dualprobe | blackbox_exporter | ratio | goal | |", "|---|---|---|---|---|---|"]
    for fig, dp, bb, ratio, goal, v in rs:
        mark = "**MISS**" if v == "MISS" else ("pass" if v == "PASS" else "")
        lines.append(f"| {fig} | {dp} | {bb} | {ratio} | {goal} | {mark} |")
    misses = [r[0] for r in rs if r[5] == "MISS"]
    lines += ["", f"Misses: {len(misses)}" + (" — " + "; ".join(misses) if misses else "") + ".", "",
              "<details><summary>Raw output of this run</summary>", "", "```", raw.rstrip(), "```", "",
              "</details>", ""]
    return "\n".join(lines)
