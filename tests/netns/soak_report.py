#!/usr/bin/env python3
"""The soak's verdicts and pictures (tests/netns/soak.py): flatness of RSS, RssAnon, open fds and
threads, a least-squares slope per hour, the curve as an SVG written by hand, and the Markdown
tables of docs/benchmarks.md.

    tests/netns/soak_report.py DIR     rewrites DIR/soak.svg and DIR/table.md, prints table.md

Flatness: the samples of the warm-up (--warmup-fraction of the run, at most 5 minutes) and those
taken while a fault was on or being recovered from (its sockets in flight are not a leak; a leak
stays after the fault) are left out; the rest is cut in thirds and the last third's median must be
within a tolerance of the first third's:
  RSS, RssAnon  10 % of the first third's median, at least 2 MiB. glibc keeps freed /metrics
                render buffers (one body, about 2 MiB at 200 targets, and its copies) resident in
                its arenas, so RSS moves in steps of that size without any leak (docs/benchmarks.md,
                "RSS after scrapes"); a leak of 64 bytes per cycle would add 4 MiB in 30 minutes.
  open fds      4 (the netns suite's --fd-slack): the agent's fixed fds plus sockets in flight; a
                leak of one fd per reload or per fault would add 30-45 over 30 minutes.
  threads       2: tokio's blocking pool (config reads on reload) starts and retires threads.
Runs shorter than 10 minutes (CI's 2 minutes) are a smoke test: their last third holds the first
DNS outage, whose peak of in-flight lookups is allocated once, so they use the netns suite's
flapping bound instead (RSS, RssAnon: +50 % + 16 MiB; fds +8, threads +4): gross leaks only.
The slope is reported, not judged: on a 30-minute run a real leak shows as a steady slope and as
the last third lying wholly above the first ("monotone").
Python 3 standard library only.
"""
import csv
import json
import os
import statistics
import sys

NUM = ("t_s", "vmrss_kib", "rssanon_kib", "vmhwm_kib", "fds", "threads", "cpu_s", "series", "bytes",
       "scrape_ms", "pairs", "failing", "unmet")
MEASURES = [  # (column, label, unit divisor, unit, tolerance(first median, short run))
    ("vmrss_kib", "RSS (VmRSS)", 1024, "MiB", lambda m, short: m * 0.5 + 16384 if short else max(m * 0.1, 2048)),
    ("rssanon_kib", "RssAnon", 1024, "MiB", lambda m, short: m * 0.5 + 16384 if short else max(m * 0.1, 2048)),
    ("fds", "open fds", 1, "", lambda m, short: 8 if short else 4),
    ("threads", "threads", 1, "", lambda m, short: 4 if short else 2),
]


def load_rows(path):
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            for k in NUM:
                if r.get(k) not in (None, ""):
                    r[k] = float(r[k])
                else:
                    r[k] = None
            rows.append(r)
    return rows


def warmup_seconds(minutes, fraction):
    return min(300.0, fraction * minutes * 60)


def slope_per_hour(xs, ys):
    """Least-squares slope of ys over xs (seconds), per hour."""
    if len(xs) < 3:
        return 0.0
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return 3600 * sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx if sxx else 0.0


def analyse(rows, minutes, fraction):
    """Per measure: first/last third medians, tolerance, slope, verdict."""
    warm = warmup_seconds(minutes, fraction)
    short = minutes < 10
    out = []
    for col, label, div, unit, tol in MEASURES:
        pts = [(r["t_s"], r[col]) for r in rows
               if r["t_s"] >= warm and r.get(col) is not None and not r.get("fault")]
        if len(pts) < 3:
            out.append(dict(col=col, label=label, ok=False, line=f"only {len(pts)} samples after warm-up"))
            continue
        k = max(1, len(pts) // 3)
        first, last = [y for _, y in pts[:k]], [y for _, y in pts[-k:]]
        m1, m3 = statistics.median(first), statistics.median(last)
        t = tol(m1, short)
        slope = slope_per_hour([x for x, _ in pts], [y for _, y in pts])
        monotone = slope > 0 and min(last) > max(first)
        out.append(dict(col=col, label=label, div=div, unit=unit, ok=m3 <= m1 + t, first=m1, last=m3, tol=t,
                        slope=slope, monotone=monotone, n=len(pts), k=k, warm=warm, short=short,
                        lo=min(y for _, y in pts), hi=max(y for _, y in pts)))
    return out


def fmt_v(v, div, unit):
    return f"{v / div:.2f} {unit}".strip() if div != 1 else f"{v:.0f}"


def flatness(rows, minutes, fraction):
    """[(ok, name, line)] for soak.py's pass/fail lines."""
    res = []
    for a in analyse(rows, minutes, fraction):
        if "first" not in a:
            res.append((False, f"flat {a['label']}", a["line"]))
            continue
        d, u = a["div"], a["unit"]
        line = (f"median {fmt_v(a['first'], d, u)} (first third of {a['n']} quiet samples after "
                f"{a['warm'] / 60:.1f} min warm-up) -> "
                f"{fmt_v(a['last'], d, u)} (last third), tolerance +{fmt_v(a['tol'], d, u)}; range "
                f"{fmt_v(a['lo'], d, u)}..{fmt_v(a['hi'], d, u)}; slope {a['slope'] / d:+.2f}{(' ' + u) if u else ''}/h"
                f"{' (MONOTONE: last third wholly above the first)' if a['monotone'] else ''}"
                f"{' [short run: smoke tolerances]' if a['short'] else ''}")
        res.append((a["ok"], f"flat {a['label']}", line))
    return res


# ---- the curve ---------------------------------------------------------------------------------
COLORS = {"ipv6-default-route-flap": "#d62728", "egw-link-flap": "#ff7f0e", "dnsmasq-restart": "#9467bd",
          "reload-bad": "#000000", "reload-good": "#bbbbbb"}


def svg(rows, events, title):
    W, H, L, R, T, B = 820, 420, 64, 64, 40, 80
    pw, ph = W - L - R, H - T - B
    pts = [r for r in rows if r.get("vmrss_kib") is not None]
    tmax = max(60.0, max((r["t_s"] for r in pts), default=60.0))
    mib = max(r["vmrss_kib"] for r in pts) / 1024
    ytop = max(8, int(mib * 1.25 / 4 + 1) * 4)
    fmax = max(r["fds"] for r in pts)
    ftop = max(16, int(fmax * 1.5 / 8 + 1) * 8)

    def x(t):
        return L + pw * t / tmax

    def y(v, top):
        return T + ph * (1 - v / top)
    o = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" '
         f'font-family="sans-serif" font-size="11">',
         f'<rect width="{W}" height="{H}" fill="white"/>',
         f'<text x="{W / 2}" y="18" text-anchor="middle" font-size="13">{esc(title)}</text>']
    for i in range(5):  # grid and left axis (MiB)
        v = ytop * i / 4
        o.append(f'<line x1="{L}" x2="{L + pw}" y1="{y(v, ytop):.1f}" y2="{y(v, ytop):.1f}" stroke="#eee"/>')
        o.append(f'<text x="{L - 6}" y="{y(v, ytop) + 4:.1f}" text-anchor="end">{v:g}</text>')
        fv = ftop * i / 4
        o.append(f'<text x="{L + pw + 6}" y="{y(fv, ftop) + 4:.1f}" fill="#2ca02c">{fv:g}</text>')
    step = 5 if tmax > 600 else 1
    for m in range(0, int(tmax / 60) + 1, step):
        o.append(f'<line x1="{x(m * 60):.1f}" x2="{x(m * 60):.1f}" y1="{T + ph}" y2="{T + ph + 4}" stroke="black"/>')
        o.append(f'<text x="{x(m * 60):.1f}" y="{T + ph + 16}" text-anchor="middle">{m}</text>')
    o.append(f'<text x="{L + pw - 4}" y="{T + ph + 30}" text-anchor="end">minutes since the soak started</text>')
    o.append(f'<text x="16" y="{T + ph / 2}" transform="rotate(-90 16 {T + ph / 2})" text-anchor="middle">MiB</text>')
    o.append(f'<text x="{W - 14}" y="{T + ph / 2}" transform="rotate(90 {W - 14} {T + ph / 2})" '
             f'text-anchor="middle" fill="#2ca02c">open fds</text>')
    for e in events:  # faults: a band from applied to undone; reloads: a tick along the top
        kind = e.get("kind") or ("reload-bad" if "bad" in e["name"] else "reload-good" if "reload" in e["name"] else None)
        if kind not in COLORS or not e.get("minute"):
            continue
        if e.get("kind"):
            x1 = x(float(e.get("start_minute") or e["minute"]) * 60)
            w = min(max(1.5, x(float(e.get("held_s") or 0)) - L), L + pw - x1)
            o.append(f'<rect x="{x1:.1f}" y="{T}" width="{w:.1f}" height="{ph}" fill="{COLORS[kind]}" '
                     f'fill-opacity="{0.18 if e.get("ok") else 0.5}"/>')
        else:
            xe = x(float(e["minute"]) * 60)
            o.append(f'<line x1="{xe:.1f}" x2="{xe:.1f}" y1="{T}" y2="{T + 12}" stroke="{COLORS[kind]}" '
                     f'stroke-width="1.5"/>')
    o.append(f'<rect x="{L}" y="{T}" width="{pw}" height="{ph}" fill="none" stroke="black"/>')
    for col, top, color, dash in (("vmrss_kib", ytop, "#1f77b4", ""), ("rssanon_kib", ytop, "#17becf", ""),
                                  ("fds", ftop, "#2ca02c", ' stroke-dasharray="5,3"')):
        div = 1024 if col != "fds" else 1
        path = " ".join(f"{x(r['t_s']):.1f},{y(r[col] / div, top):.1f}" for r in pts if r.get(col) is not None)
        o.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.6"{dash} points="{path}"/>')
    legend = [("VmRSS (MiB)", "#1f77b4"), ("RssAnon (MiB)", "#17becf"), ("open fds (right axis)", "#2ca02c"),
              ("IPv6 route removed", COLORS["ipv6-default-route-flap"]), ("egw link down", COLORS["egw-link-flap"]),
              ("dnsmasq restart", COLORS["dnsmasq-restart"]), ("reload (tick: good, black: refused)", "#888888")]
    lx, ly = L, H - 24
    for i, (text, color) in enumerate(legend):
        if i == 3:
            lx, ly = L, H - 8
        o.append(f'<rect x="{lx}" y="{ly - 6}" width="10" height="6" fill="{color}"/>')
        o.append(f'<text x="{lx + 14}" y="{ly}">{esc(text)}</text>')
        lx += 14 + 6.0 * len(text) + 16
    o.append("</svg>")
    return "\n".join(o) + "\n"


def esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---- tables ------------------------------------------------------------------------------------
def table(rows, minutes):
    step = 5 if minutes >= 10 else 1
    out = ["| minute | VmRSS MiB | RssAnon MiB | open fds | threads | series | /metrics KiB | failing pairs | CPU s |",
           "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    pts = [r for r in rows if r.get("vmrss_kib") is not None]
    marks = list(range(0, minutes + 1, step))
    if marks[-1] != minutes:
        marks.append(minutes)  # and the end of the run
    for m in marks:
        r = min(pts, key=lambda r: abs(r["t_s"] - 60 * m))
        if abs(r["t_s"] - 60 * m) > 20:
            continue
        out.append(f"| {m} | {r['vmrss_kib'] / 1024:.2f} | {r['rssanon_kib'] / 1024:.2f} | {r['fds']:.0f} | "
                   f"{r['threads']:.0f} | {r['series'] or 0:.0f} | {(r['bytes'] or 0) / 1024:.0f} | "
                   f"{r['failing'] if r['failing'] is not None else '-'} | {r['cpu_s']:.1f} |".replace(".0 |", " |", 1))
    return "\n".join(out)


def events_table(events):
    out = ["| minute | event | result | reflected: median / max (s) | held (s) | recovered: max (s) | what the agent reported |",
           "|---:|---|---|---:|---:|---:|---|"]
    for e in events:
        if not (e.get("kind") or "reload" in e["name"]):
            continue
        ok = "PASS" if e.get("ok") in (True, "True") else "**FAIL**"
        if e.get("kind"):
            reasons = e.get("reasons") or {}
            rep = f"{e['pairs']} pairs: " + ", ".join(f"{k} on {v}" for k, v in sorted(reasons.items()))
            out.append(f"| {float(e['minute']):.1f} | {e['name']} | {ok} | {e.get('detect_median_s')} / "
                       f"{e.get('detect_max_s')} | {e.get('held_s')} | {e.get('recover_max_s')} | {rep} |")
        else:
            out.append(f"| {float(e['minute']):.1f} | {e['name']} | {ok} | {e.get('took_s', '-')} (applied) | | | "
                       f"{esc(e['line'])[:160]} |")
    return "\n".join(out)


def latency_summary(events):
    by = {}
    for e in events:
        if e.get("kind"):
            by.setdefault(e["kind"], []).append(e)
    lines = []
    for kind, es in sorted(by.items()):
        dmax = [e["detect_max_s"] for e in es if e.get("detect_max_s") is not None]
        rmax = [e["recover_max_s"] for e in es if e.get("recover_max_s") is not None]
        fails = sum(1 for e in es if not e.get("ok"))
        lines.append(f"- {kind}: {len(es)} times, {fails} failed; slowest pair reflected it after "
                     f"{round(statistics.median(dmax), 2) if dmax else '-'} s (median over faults), "
                     f"{max(dmax, default='-')} s (worst); recovered within {max(rmax, default='-')} s (worst)")
    return "\n".join(lines)


def write_all(out):
    rows = load_rows(f"{out}/samples.csv")
    with open(f"{out}/summary.json") as f:
        summ = json.load(f)
    events = summ.get("events", [])
    title = (f"dualprobe soak: {summ['targets']} targets ({summ['pairs']} pairs), interval {summ['interval_s']}s, "
             f"{summ['minutes']} min, {summ.get('commit') or '?'}")
    with open(f"{out}/soak.svg", "w") as f:
        f.write(svg(rows, events, title))
    flat = flatness(rows, summ["minutes"], summ.get("warmup_fraction", 0.2))
    cpu = [r for r in rows if r.get("cpu_s") is not None]
    cpu_line = ""
    if len(cpu) >= 2 and cpu[-1]["t_s"] > cpu[0]["t_s"]:
        cpu_line = (f" CPU {100 * (cpu[-1]['cpu_s'] - cpu[0]['cpu_s']) / (cpu[-1]['t_s'] - cpu[0]['t_s']):.1f} % "
                    f"of one core on average (faults, reloads and {summ['scrape_every_s']:.0f} s scrapes included).")
    md = [f"Soak {summ['started_utc']}: {summ['minutes']} min, binary {summ['version']} (commit "
          f"{summ.get('commit') or '?'}), {summ['passed']} passed, {summ['failed']} failed; load average at the "
          f"end {', '.join(f'{x:.1f}' for x in summ.get('load_avg', []))}.{cpu_line}", "",
          table(rows, summ["minutes"]), "",
          *[f"- {'PASS' if ok else 'FAIL'} {name}: {line}" for ok, name, line in flat], "",
          latency_summary(events), "", events_table(events), ""]
    with open(f"{out}/table.md", "w") as f:
        f.write("\n".join(md))
    return "\n".join(md)


if __name__ == "__main__":
    if len(sys.argv) != 2 or not os.path.isdir(sys.argv[1]):
        sys.exit(f"usage: {sys.argv[0]} DIR  (a soak.py --out directory)")
    print(write_all(sys.argv[1]))
