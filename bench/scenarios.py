"""CPU scenarios: `compare` phases (both tools, same work, same rate), `scale` (dualprobe alone at
1,000 targets) and `metrics` (GET /metrics latency and server CPU)."""

from __future__ import annotations

import socket
import statistics
import time

from agents import start_blackbox, start_driver, start_dualprobe
from common import LOOP4, OPENMETRICS, counter_delta, http_get, probes_total, ready_bound, wait_http
from localnet import Env
from procfs import CpuWindow, mem


def sample_rss(pids: dict, seconds: float) -> dict:
    """Samples each pid once a second for `seconds`: peak VmRSS and peak RssAnon per name."""
    peak = {k: {"VmRSS": 0, "RssAnon": 0} for k in pids}
    end = time.monotonic() + seconds
    while True:
        for k, pid in pids.items():
            try:
                m = mem(pid)
            except OSError:
                continue
            for f in peak[k]:
                peak[k][f] = max(peak[k][f], m[f])
        left = end - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(1.0, left))
    return peak


def scraped_window(pid: int, port: int, seconds: float, every: float) -> dict:
    """A second window in which /metrics is scraped every `every` s the way Prometheus does
    (OpenMetrics): CPU including the scrapes, RSS sampled every 0.25 s and after each scrape."""
    w = CpuWindow()
    w.start(pid)
    t0 = time.monotonic()
    end, next_scrape, peak, scrapes = t0 + seconds, t0, 0, 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if now >= next_scrape:
            http_get(port, "/metrics", timeout=30, headers=OPENMETRICS)
            scrapes += 1
            next_scrape += every
        peak = max(peak, mem(pid)["VmRSS"])
        time.sleep(min(0.25, max(0.0, end - time.monotonic())))
    r = w.stop()
    return {**r, "scrapes": scrapes, "every_s": every, "cpu_pct": 100 * r["cpu_ns"] / 1e9 / r["wall_s"],
            "rss_max": max(peak, mem(pid)["VmRSS"]), "hwm": mem(pid)["VmHWM"]}


def phase(env: Env, kind: str, n: int, interval: float, duration: float, timeout: float,
          with_blackbox: bool = True, scrape_every: float | None = None) -> dict:
    """One measurement: dualprobe (and blackbox at the same rate) doing `kind` for `duration`;
    with `scrape_every`, then a second window with Prometheus-style scrapes of /metrics."""
    dp, dport = start_dualprobe(env, kind, n, interval, timeout)
    bb = driver = None
    try:
        rate_per_kind = 2 * n / interval  # (target, family) pairs per second
        if with_blackbox:
            bb, bport = start_blackbox(env, timeout)
            driver = start_driver(env, bport, kind, n, interval, interval + timeout + 2 + duration + 5)
        # dualprobe spreads first runs over one interval; ready = every pair ran once.
        wait_http(dport, "/-/ready", ready_bound(2 * n, interval, timeout), dp)
        time.sleep(min(2.0, interval / 2))
        rss_unscraped = mem(dp.pid)  # before the first /metrics scrape of this process
        c0 = probes_total(dport)
        (q0, tq0), ps0 = (env.dns_queries(), env.peer_stats()) if kind == "chain" else ((None, 0), {})
        w_dp, w_bb = CpuWindow(), CpuWindow()
        w_dp.start(dp.pid)
        if bb:
            w_bb.start(bb.pid)
        t0 = time.monotonic()
        peaks = sample_rss({"dualprobe": dp.pid, **({"blackbox": bb.pid} if bb else {})}, duration)
        r_dp = w_dp.stop()
        r_bb = w_bb.stop() if bb else None
        t1 = time.monotonic()
        c1 = probes_total(dport)
        (q1, tq1), ps1 = (env.dns_queries(), env.peer_stats()) if kind == "chain" else ((None, 0), {})
        d = counter_delta(c0, c1)
        checks = sum(d.values())
        failed = sum(v for (c, r), v in d.items() if r != "ok")
        by_kind: dict = {}
        for (c, r), v in d.items():
            by_kind[c] = by_kind.get(c, 0) + v
        out = {
            "kind": kind, "targets": n, "interval_s": interval,
            "dualprobe": {
                **r_dp, "checks": checks, "failed": failed, "by_check": by_kind,
                "cycles": checks / max(1, len(by_kind)),
                "us_per_check": r_dp["cpu_ns"] / 1e3 / checks if checks else float("nan"),
                "stat_us_per_check": r_dp["stat_cpu_ns"] / 1e3 / checks if checks else float("nan"),
                "cpu_pct": 100 * r_dp["cpu_ns"] / 1e9 / r_dp["wall_s"],
                "rss_max": peaks["dualprobe"]["VmRSS"], "anon_max": peaks["dualprobe"]["RssAnon"],
                "hwm": mem(dp.pid).get("VmHWM", 0),
                "rss_unscraped": rss_unscraped["VmRSS"], "anon_unscraped": rss_unscraped["RssAnon"],
                "expected_checks": rate_per_kind * len(by_kind) * r_dp["wall_s"],
            },
        }
        if bb:
            got = driver.between(t0, t1)
            probes = sum(got.values())
            bfail = sum(v for (k, r), v in got.items() if r != "ok")
            out["blackbox"] = {
                **r_bb, "probes": probes, "failed": bfail, "late_skipped": driver.late,
                "by_kind": {k: v for (k, r), v in got.items() if r == "ok"},
                "us_per_probe": r_bb["cpu_ns"] / 1e3 / probes if probes else float("nan"),
                "stat_us_per_probe": r_bb["stat_cpu_ns"] / 1e3 / probes if probes else float("nan"),
                "cpu_pct": 100 * r_bb["cpu_ns"] / 1e9 / r_bb["wall_s"],
                "rss_max": peaks["blackbox"]["VmRSS"], "anon_max": peaks["blackbox"]["RssAnon"],
                "hwm": mem(bb.pid).get("VmHWM", 0),
            }
        if kind == "chain" and q0 is not None and q1 is not None and ps0 and ps1:
            cycles = by_kind.get("dns", 0)
            # blackbox's own queries and connections over the same stretches of time
            bq = driver.between(tq0, tq1) if driver else {}
            bc = driver.between(ps0["t"], ps1["t"]) if driver else {}
            bb_dns = sum(v for (k, _), v in bq.items() if k == "dns")
            bb_conns = sum(v for (k, _), v in bc.items() if k in ("tcp", "http"))
            conns = ps1["conn_ipv4"] + ps1["conn_ipv6"] - ps0["conn_ipv4"] - ps0["conn_ipv6"]
            # The scrapes around the window widen it by a few ms: ratios, not exact counts.
            out["dualprobe"]["per_cycle"] = {
                "dns_queries": (q1 - q0 - bb_dns) / cycles if cycles else float("nan"),
                "tcp_connections": (conns - bb_conns) / cycles if cycles else float("nan"),
            }
        if scrape_every:
            out["dualprobe"]["scraped"] = scraped_window(dp.pid, dport, max(duration, 3 * scrape_every),
                                                         scrape_every)
        return out
    finally:
        if driver:
            driver.join(5)
        if bb:
            env.procs.stop(bb)
        env.procs.stop(dp)


class ScrapeClient:
    """GET /metrics over one kept-alive connection, read the way Prometheus' Go client does: big
    reads into one buffer until the chunked body's last chunk, parsed only after the clock stops.
    Python's http.client decodes a chunked body chunk by chunk with a readline and a read each;
    at 12 MB that costs the client more time than the agent takes to write it, and the figure
    is the agent's."""

    END = b"\r\n0\r\n\r\n"  # exposition lines end in a bare \n, so only the body's end matches
    OK = b"HTTP/1.1 200 "

    def __init__(self, port: int, accept: str | None) -> None:
        self.sock = socket.create_connection((LOOP4, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head = "GET /metrics HTTP/1.1\r\nHost: bench\r\n"
        self.request = (head + (f"Accept: {accept}\r\n" if accept else "") + "\r\n").encode()
        self.buf = bytearray(32 << 20)
        self.at = 0

    def get(self) -> float:
        """Milliseconds from sending the request to the body's last byte; the answer must be a
        200 (checked once its status line is in). `last()` is its raw response."""
        view, at = memoryview(self.buf), 0
        s = time.perf_counter()
        self.sock.sendall(self.request)
        while True:
            if at == len(self.buf):
                raise RuntimeError("/metrics answer larger than the buffer")
            n = self.sock.recv_into(view[at:])
            if n == 0:
                raise RuntimeError("/metrics: connection closed before the end of the body")
            if at < len(self.OK) <= at + n and not self.buf.startswith(self.OK):
                # Anything else may not be chunked: say what it was instead of waiting it out.
                raise RuntimeError("/metrics answered " + bytes(self.buf[:40]).decode(errors="replace"))
            at += n
            if self.buf[max(0, at - len(self.END)):at] == self.END:
                break
        ms = (time.perf_counter() - s) * 1e3
        self.at = at
        return ms

    def last(self) -> bytes:
        """The raw response of the last `get()`."""
        return bytes(self.buf[:self.at])

    def close(self) -> None:
        self.sock.close()


def dechunk(raw: bytes) -> bytes:
    """The body of one chunked HTTP/1.1 response."""
    head, _, rest = raw.partition(b"\r\n\r\n")
    if b"transfer-encoding: chunked" not in head.lower():
        raise RuntimeError("/metrics was not chunked: " + head.decode(errors="replace"))
    parts, at = [], 0
    while True:
        eol = rest.index(b"\r\n", at)
        size = int(rest[at:eol].split(b";")[0], 16)
        if size == 0:
            return b"".join(parts)
        parts.append(rest[eol + 2:eol + 2 + size])
        at = eol + 2 + size + 2


def metrics_run(env: Env, n: int, interval: float, timeout: float, scrapes: int, kind: str) -> dict:
    dp, port = start_dualprobe(env, kind, n, interval, timeout)
    try:
        wait_http(port, "/-/ready", ready_bound(2 * n, interval, timeout), dp)
        time.sleep(1.0)
        # Background probing CPU, to subtract from the scrape window.
        w = CpuWindow()
        w.start(dp.pid)
        time.sleep(min(5.0, interval))
        bg = w.stop()
        bg_rate = bg["cpu_ns"] / bg["wall_s"]
        out = {"kind": kind, "targets": n}
        for mode, accept in (("openmetrics", OPENMETRICS["Accept"]), ("text", None)):
            client = ScrapeClient(port, accept)
            lat = []
            w.start(dp.pid)
            end = time.monotonic() + 120  # bounded in time as well as in count
            try:
                for _ in range(scrapes):
                    if time.monotonic() > end:
                        break
                    lat.append(client.get())
            finally:
                client.close()
            cw = w.stop()
            body = dechunk(client.last())
            if mode == "openmetrics" and not body.endswith(b"# EOF\n"):
                raise RuntimeError("/metrics (OpenMetrics) did not end in # EOF")
            cpu_scrapes = cw["cpu_ns"] - bg_rate * cw["wall_s"]
            lat.sort()
            out[mode] = {
                "scrapes": len(lat), "median_ms": statistics.median(lat),
                "p90_ms": lat[int(0.9 * (len(lat) - 1))], "max_ms": lat[-1], "min_ms": lat[0],
                "bytes": len(body), "lines": body.count(b"\n"),
                "server_cpu_ms_per_scrape": cpu_scrapes / 1e6 / max(1, len(lat)),
            }
        out["rss"] = mem(dp.pid)["VmRSS"]
        return out
    finally:
        env.procs.stop(dp)


