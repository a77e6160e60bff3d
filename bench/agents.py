"""The two tools under test: dualprobe (config, start) and blackbox_exporter (config, start, and
the Driver that sends it /probe requests the way Prometheus does)."""

from __future__ import annotations

import http.client
import math
import re
import threading
import time

from common import LOOP4, LOOP6, free_port4, wait_http
from localnet import Env


# `metrics.duration_buckets` of the `chain5` kind (README's example).
FIVE_BUCKETS = (0.005, 0.05, 0.25, 1, 5)


def dualprobe_config(env: Env, kind: str, n: int, interval: float, timeout: float, port: int) -> str:
    q = env.peer_port
    lines = [
        f'listen: "{LOOP4}:{port}"',
        f"interval: {interval:g}s",
        f"timeout: {timeout:g}s",
        "families: [ipv4, ipv6]",
        "resolver:",
        "  nameservers: [" + ", ".join(
            [f'"{LOOP4}:{env.dns_port}"', f'"[{LOOP6}]:{env.dns_port}"'][: env.args.nameservers]) + "]",
    ]
    if kind == "chain5":
        # The same series with the bucket set README's example suggests: what the knob saves.
        lines += ["metrics:", f"  duration_buckets: [{', '.join(map(str, FIVE_BUCKETS))}]"]
    targets = []
    if kind in ("dns", "chain", "chain5", "scale"):
        checks = {"dns": "[dns]", "chain": "[dns, tcp, http]", "chain5": "[dns, tcp, http]",
                  "scale": "[dns, tcp]"}[kind]
        for i in range(n):
            t = f"  - {{name: t{i}, host: t{i}.bench.test, port: {q}, checks: {checks}"
            t += ", http: {path: /health}}" if "http" in checks else "}"
            targets.append(t)
    elif kind in ("tcp", "http"):
        extra = ", http: {path: /health}" if kind == "http" else ""
        for i in range(n):
            targets.append(f'  - {{name: {kind}4-{i}, host: "{LOOP4}", port: {q}, checks: [{kind}]{extra}}}')
            targets.append(f'  - {{name: {kind}6-{i}, host: "{LOOP6}", port: {q}, checks: [{kind}]{extra}}}')
    elif kind != "idle":
        raise ValueError(kind)
    lines += ["targets:"] + targets if targets else ["targets: []"]
    path = env.path(f"dualprobe-{kind}-{n}.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def start_dualprobe(env: Env, kind: str, n: int, interval: float, timeout: float):
    timeout = min(timeout, interval / 2)  # the config requires timeout < interval
    port = free_port4()
    cfg = dualprobe_config(env, kind, n, interval, timeout, port)
    pre = ["taskset", "-c", env.args.taskset] if getattr(env.args, "taskset", None) else []
    p = env.procs.start("dualprobe", pre + [env.args.bin, "run", "--config", cfg, "--listen", f"{LOOP4}:{port}"],
                        env.path(f"dualprobe-{kind}.log"))
    wait_http(port, "/-/healthy", 15, p)
    return p, port


BLACKBOX_CONFIG = """modules:
  tcp4: {{prober: tcp, timeout: {t}s, tcp: {{preferred_ip_protocol: ip4, ip_protocol_fallback: false}}}}
  tcp6: {{prober: tcp, timeout: {t}s, tcp: {{preferred_ip_protocol: ip6, ip_protocol_fallback: false}}}}
  http4: {{prober: http, timeout: {t}s, http: {{preferred_ip_protocol: ip4, ip_protocol_fallback: false}}}}
  http6: {{prober: http, timeout: {t}s, http: {{preferred_ip_protocol: ip6, ip_protocol_fallback: false}}}}
  icmp4: {{prober: icmp, timeout: {t}s, icmp: {{preferred_ip_protocol: ip4, ip_protocol_fallback: false}}}}
  icmp6: {{prober: icmp, timeout: {t}s, icmp: {{preferred_ip_protocol: ip6, ip_protocol_fallback: false}}}}
  dns4:
    prober: dns
    timeout: {t}s
    dns: {{query_name: t0.bench.test, query_type: A, transport_protocol: udp,
          preferred_ip_protocol: ip4, ip_protocol_fallback: false}}
  dns6:
    prober: dns
    timeout: {t}s
    dns: {{query_name: t0.bench.test, query_type: AAAA, transport_protocol: udp,
          preferred_ip_protocol: ip6, ip_protocol_fallback: false}}
"""


def blackbox_jobs(env: Env, kind: str) -> list[tuple[str, str]]:
    """(kind, /probe path) per family for one probe kind."""
    q, d = env.peer_port, env.dns_port
    if kind == "tcp":
        return [("tcp", f"/probe?module=tcp4&target={LOOP4}:{q}"),
                ("tcp", f"/probe?module=tcp6&target=[{LOOP6}]:{q}")]
    if kind == "http":
        return [("http", f"/probe?module=http4&target=http://{LOOP4}:{q}/health"),
                ("http", f"/probe?module=http6&target=http://[{LOOP6}]:{q}/health")]
    if kind == "dns":
        return [("dns", f"/probe?module=dns4&target={LOOP4}:{d}"),
                ("dns", f"/probe?module=dns6&target=[{LOOP6}]:{d}")]
    if kind == "chain":
        return blackbox_jobs(env, "dns") + blackbox_jobs(env, "tcp") + blackbox_jobs(env, "http")
    if kind == "scale":
        return blackbox_jobs(env, "dns") + blackbox_jobs(env, "tcp")
    raise ValueError(kind)


def start_blackbox(env: Env, timeout: float):
    cfg = env.path("blackbox.yml")
    with open(cfg, "w") as f:
        f.write(BLACKBOX_CONFIG.format(t=f"{timeout:g}"))
    port = free_port4()
    p = env.procs.start("blackbox", [
        env.args.blackbox, f"--config.file={cfg}", f"--web.listen-address={LOOP4}:{port}",
        "--log.level=warn",
    ], env.path("blackbox.log"))
    wait_http(port, "/-/healthy", 15, p)
    return p, port


PROBE_DURATION_RE = re.compile(rb"^probe_duration_seconds ([0-9.eE+-]+)$", re.M)


class Driver:
    """Drives blackbox's /probe: `jobs` round-robin, `rate` requests/s in total, evenly spaced,
    at most `count` requests and never past `deadline_s`; `workers` keep-alive connections.
    With `durations`, each successful probe's own `probe_duration_seconds` is kept too."""

    def __init__(self, port: int, jobs, rate: float, deadline_s: float, workers: int = 8,
                 durations: bool = False) -> None:
        self.port, self.jobs, self.rate = port, jobs, rate
        self.want_durations = durations
        self.durations: list[tuple[float, str, float]] = []  # (end time, kind, seconds)
        self.count = int(math.ceil(rate * deadline_s))
        self.deadline = deadline_s
        self.workers = workers
        self.done: list[tuple[float, str, bool]] = []  # (monotonic end time, kind, success)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.late = 0
        self.threads: list[threading.Thread] = []

    def start(self) -> None:
        self.t0 = time.monotonic() + 0.05
        for w in range(self.workers):
            th = threading.Thread(target=self._run, args=(w,), daemon=True)
            th.start()
            self.threads.append(th)

    def _run(self, w: int) -> None:
        conn = None
        end = self.t0 + self.deadline
        for k in range(w, self.count, self.workers):
            due = self.t0 + k / self.rate
            now = time.monotonic()
            if due > end or self.stop.is_set():
                break
            if due > now:
                if self.stop.wait(due - now):
                    break
            elif now - due > 1.0:  # fell behind by more than a second: skip, never queue
                with self.lock:
                    self.late += 1
                continue
            kind, path = self.jobs[k % len(self.jobs)]
            ok = False
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(LOOP4, self.port, timeout=10)
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
                ok = r.status == 200 and b"\nprobe_success 1\n" in b"\n" + body
                m = PROBE_DURATION_RE.search(body) if ok and self.want_durations else None
                if m:
                    with self.lock:
                        self.durations.append((time.monotonic(), kind, float(m.group(1))))
            except (OSError, http.client.HTTPException):
                if conn is not None:
                    conn.close()
                conn = None
            with self.lock:
                self.done.append((time.monotonic(), kind, ok))
        if conn is not None:
            conn.close()

    def join(self, timeout: float) -> None:
        self.stop.set()
        end = time.monotonic() + timeout
        for th in self.threads:
            th.join(max(0.0, end - time.monotonic()))

    def between(self, t0: float, t1: float) -> dict:
        out: dict = {}
        with self.lock:
            for t, kind, ok in self.done:
                if t0 <= t < t1:
                    k = (kind, "ok" if ok else "fail")
                    out[k] = out.get(k, 0) + 1
        return out


def start_driver(env: Env, port: int, kind: str, n: int, interval: float, seconds: float) -> Driver:
    """blackbox doing what dualprobe does for `kind`: every (target, family) pair once per
    interval per probe kind, i.e. 2n/interval requests/s per kind, for at most `seconds`."""
    jobs = blackbox_jobs(env, kind)
    rate = 2 * n / interval * len({k for k, _ in jobs})
    driver = Driver(port, jobs, rate, seconds, workers=max(4, min(32, int(rate / 10) + 4)))
    driver.start()
    return driver
