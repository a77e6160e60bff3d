#!/usr/bin/env python3
"""dualprobe benchmark: CPU per probe and memory, against Prometheus blackbox_exporter.

Method
======
Everything runs on loopback only (127.0.0.1 and ::1); nothing is built (pass the binaries).

Peers, started by this script and killed by it on exit (try/finally, Ctrl-C and SIGTERM too):
  * dnsmasq on 127.0.0.1:P and [::1]:P, answering A (127.0.0.1) and AAAA (::1) for
    t0..t{N-1}.bench.test from an --addn-hosts file, --cache-size=0 (hosts entries are
    answered from dnsmasq's own table either way; its answer cache is simply off), no upstream.
  * One asyncio TCP+HTTP server (this file, run as a child process with --peer) listening on
    127.0.0.1:Q and [::1]:Q (same port on both families). It answers any request with
    "200 ok" and closes; a connection that sends nothing (a bare `tcp` check) is just closed.
    It counts connections per family, served via GET /__stats (used for diagnostics only).

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
  * RSS: VmRSS from /proc/PID/status. "Idle" = a fresh process with no targets (dualprobe)
    or no probes (blackbox), 5 s after start, after one scrape of its own /metrics.
    "Load" = the maximum VmRSS sampled once a second during the window (VmHWM also kept).

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
full cycle, many sequential GET /metrics over one keep-alive loopback connection; reports the
median wall time per scrape (this includes HTTP handling and the loopback round trip) and
the CPU dualprobe spent per scrape (CPU during the scrapes minus its background probing rate).

Every load loop is bounded in count and in time. Usage:
  python3 bench/run.py --bin target/release/dualprobe                 # all scenarios
  python3 bench/run.py --bin target/release/dualprobe --scenario compare --targets 100
  python3 bench/run.py --bin target/release/dualprobe --quick         # ~15 s CI smoke test
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import http.client
import json
import math
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

MiB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")
LOOP4, LOOP6 = "127.0.0.1", "::1"

# Targets from the issue (docs: issue 2, "Benchmark").
TARGET_CPU_RATIO = 0.25  # dualprobe CPU per probe <= 1/4 of blackbox's
TARGET_IDLE_RSS_RATIO = 0.5  # dualprobe idle RSS <= 1/2 of blackbox's
TARGET_IDLE_RSS = 10 * MiB
TARGET_SCALE_CPU_PCT = 3.0
TARGET_SCALE_RSS = 40 * MiB
TARGET_METRICS_MS = 10.0


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# /proc readings of one process


def cpu_ns(pid: int) -> int:
    """CPU time (user+sys, all threads incl. exited ones) of `pid`, in ns."""
    # Linux encodes a process CPU clock as ((~pid) << 3) | CPUCLOCK_SCHED.
    return time.clock_gettime_ns(((~pid) << 3) | 2)


def stat_cpu_ns(pid: int) -> int:
    """utime+stime from /proc/PID/stat (USER_HZ granularity), in ns."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * 1_000_000_000 // CLK_TCK


def mem(pid: int) -> dict:
    """VmRSS, VmHWM, RssAnon (heap, stacks) and RssFile (mapped binary) of `pid`, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssFile:")):
                k, v = line.split(":", 1)
                out[k] = int(v.split()[0]) * 1024
    return out


class CpuWindow:
    """CPU of one process between start() and stop()."""

    def start(self, pid: int) -> None:
        self.pid = pid
        self.t0 = time.monotonic()
        self.c0 = cpu_ns(pid)
        self.s0 = stat_cpu_ns(pid)

    def stop(self) -> dict:
        c1, s1, t1 = cpu_ns(self.pid), stat_cpu_ns(self.pid), time.monotonic()
        return {"cpu_ns": c1 - self.c0, "stat_cpu_ns": s1 - self.s0, "wall_s": t1 - self.t0}


# ---------------------------------------------------------------------------------------------
# Processes: every child is registered and killed in stop_all() (called from finally).

_libc = None


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM the child if this script dies without cleaning up (SIGKILL)."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        _libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class Procs:
    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], logfile: str, **kw) -> subprocess.Popen:
        out = open(logfile, "ab")
        p = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=kw.pop("stdout", out), stderr=out,
            preexec_fn=_die_with_parent, **kw,
        )
        out.close()
        p.logfile = logfile
        self.children.append((name, p))
        return p

    def stop(self, p: subprocess.Popen, grace: float = 3.0) -> None:
        if p.poll() is None:
            try:
                p.terminate()
                p.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=grace)
            except ProcessLookupError:
                pass
        self.children = [(n, c) for n, c in self.children if c is not p]

    def stop_all(self) -> None:
        for _, p in reversed(list(self.children)):
            try:
                self.stop(p)
            except Exception as e:  # keep going: every child must be stopped
                log(f"stopping pid {p.pid}: {e}")
                try:
                    p.kill()
                except Exception:
                    pass


# ---------------------------------------------------------------------------------------------
# Ports and small HTTP helpers (loopback only)


def dual_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port number currently free on both 127.0.0.1 and ::1."""
    for _ in range(50):
        s6 = socket.socket(socket.AF_INET6, kind)
        s4 = socket.socket(socket.AF_INET, kind)
        try:
            s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            s6.bind((LOOP6, 0))
            port = s6.getsockname()[1]
            s4.bind((LOOP4, port))
            if kind == socket.SOCK_DGRAM:  # dnsmasq also listens on TCP with the same port
                t4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                t6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
                try:
                    t6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    t4.bind((LOOP4, port))
                    t6.bind((LOOP6, port))
                finally:
                    t4.close()
                    t6.close()
            return port
        except OSError:
            continue
        finally:
            s4.close()
            s6.close()
    raise RuntimeError("no free port on both loopback families")


def free_port4() -> int:
    with socket.socket() as s:
        s.bind((LOOP4, 0))
        return s.getsockname()[1]


def http_get(port: int, path: str, timeout: float = 5.0, headers: dict | None = None):
    conn = http.client.HTTPConnection(LOOP4, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def wait_http(port: int, path: str, deadline_s: float, proc: subprocess.Popen, want=200) -> None:
    end = time.monotonic() + deadline_s
    last = None
    while time.monotonic() < end:
        if proc.poll() is not None:
            tail = ""
            logf = getattr(proc, "logfile", None)
            if logf and os.path.exists(logf):
                with open(logf, errors="replace") as f:
                    tail = "".join(f.readlines()[-5:])
            raise RuntimeError(f"process {proc.pid} exited with {proc.returncode}:\n{tail}")
        try:
            status, _ = http_get(port, path, timeout=2)
            if status == want:
                return
            last = status
        except OSError as e:
            last = e
        time.sleep(0.1)
    raise RuntimeError(f"GET {path} on :{port} not {want} within {deadline_s}s (last: {last})")


PROBES_RE = re.compile(r'^dualprobe_probes_total\{([^}]*)\}\s+([0-9.eE+-]+)', re.M)
LABEL_RE = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def probes_total(port: int) -> dict:
    """Sum of dualprobe_probes_total by (check, result)."""
    status, body = http_get(port, "/metrics", timeout=30)
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    out: dict = {}
    for labels, value in PROBES_RE.findall(body.decode()):
        lab = dict(LABEL_RE.findall(labels))
        key = (lab.get("check", "?"), lab.get("result", "?"))
        out[key] = out.get(key, 0.0) + float(value)
    return out


def counter_delta(a: dict, b: dict) -> dict:
    return {k: b.get(k, 0.0) - a.get(k, 0.0) for k in set(a) | set(b) if b.get(k, 0.0) != a.get(k, 0.0)}


# ---------------------------------------------------------------------------------------------
# The TCP+HTTP peer (child process: `run.py --peer`)


def peer_main() -> None:
    stats = {"conn_ipv4": 0, "conn_ipv6": 0, "requests": 0, "no_request": 0}
    resp = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        stats["conn_ipv6" if peer and ":" in peer[0] else "conn_ipv4"] += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                ConnectionError, OSError):
            stats["no_request"] += 1
            writer.close()
            return
        if head.startswith(b"GET /__stats"):
            body = json.dumps(stats).encode()
            out = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                   b"Connection: close\r\n\r\n" % len(body)) + body
        else:
            stats["requests"] += 1
            out = resp
        try:
            writer.write(out)
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        writer.close()

    async def main() -> None:
        for _ in range(50):
            s6 = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            s4 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                for s in (s4, s6):
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s6.bind((LOOP6, 0))
                port = s6.getsockname()[1]
                s4.bind((LOOP4, port))
                break
            except OSError:
                s4.close()
                s6.close()
        else:
            raise SystemExit("peer: no free port")
        servers = [await asyncio.start_server(handle, sock=s, backlog=4096) for s in (s4, s6)]
        print(port, flush=True)
        await asyncio.gather(*(s.serve_forever() for s in servers))

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    asyncio.run(main())


# ---------------------------------------------------------------------------------------------
# Environment: workdir, dnsmasq, peer


class Env:
    def __init__(self, args) -> None:
        self.args = args
        self.procs = Procs()
        self.dir = tempfile.mkdtemp(prefix="dualprobe-bench-")
        os.chmod(self.dir, 0o755)  # dnsmasq drops privileges and must read the hosts file
        self.names = 0
        self.dns_port = 0
        self.peer_port = 0
        self.dnsmasq = None
        self.peer = None

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def start_peers(self, names: int) -> None:
        hosts = self.path("hosts")
        with open(hosts, "w") as f:
            for i in range(names):
                f.write(f"{LOOP4} t{i}.bench.test\n{LOOP6} t{i}.bench.test\n")
        os.chmod(hosts, 0o644)
        self.names = names
        for attempt in range(5):
            self.dns_port = dual_port(socket.SOCK_DGRAM)
            self.dnsmasq = self.procs.start("dnsmasq", [
                "dnsmasq", "--no-daemon", f"--port={self.dns_port}",
                f"--listen-address={LOOP4},{LOOP6}", "--bind-interfaces", "--no-resolv",
                "--no-hosts", f"--addn-hosts={hosts}", "--cache-size=0", "--pid-file=",
                f"--log-facility={self.path('dnsmasq.log')}",
            ], self.path("dnsmasq.out"))
            if self._dns_ok():
                break
            self.procs.stop(self.dnsmasq)
        else:
            raise RuntimeError("dnsmasq did not start (see dnsmasq.out)")
        self.peer = self.procs.start("peer", [sys.executable, os.path.abspath(__file__), "--peer"],
                                     self.path("peer.log"), stdout=subprocess.PIPE)
        line = self.peer.stdout.readline().strip()
        if not line:
            raise RuntimeError("peer did not start (see peer.log)")
        self.peer_port = int(line)
        log(f"peers: dnsmasq :{self.dns_port} ({names} names), tcp/http :{self.peer_port} "
            f"on {LOOP4} and [{LOOP6}]; workdir {self.dir}")

    def _dns_ok(self) -> bool:
        q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x02t0\x05bench\x04test\x00\x00\x01\x00\x01"
        for _ in range(30):
            if self.dnsmasq.poll() is not None:
                return False
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(0.2)
                try:
                    s.sendto(q, (LOOP4, self.dns_port))
                    d = s.recv(512)
                    if d[:2] == b"\x12\x34" and d[3] & 15 == 0 and d[7] >= 1:
                        return True
                except OSError:
                    pass
            time.sleep(0.1)
        return False

    def dns_queries(self) -> tuple:
        """(total queries dnsmasq answered, when asked): SIGUSR1 makes it log its statistics."""
        if not self.dnsmasq or self.dnsmasq.poll() is not None:
            return None, None
        logf = self.path("dnsmasq.log")
        size = os.path.getsize(logf) if os.path.exists(logf) else 0
        t = time.monotonic()
        os.kill(self.dnsmasq.pid, signal.SIGUSR1)
        end = time.monotonic() + 3
        while time.monotonic() < end:
            time.sleep(0.1)
            with open(logf, errors="replace") as f:
                f.seek(size)
                m = re.findall(r"queries answered locally (\d+)", f.read())
            if m:
                return int(m[-1]), t
        return None, None

    def peer_stats(self) -> dict:
        try:
            t = time.monotonic()
            _, body = http_get(self.peer_port, "/__stats")
            return {**json.loads(body), "t": t}
        except Exception:
            return {}

    def close(self) -> None:
        self.procs.stop_all()
        if not self.args.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
        else:
            log(f"kept {self.dir}")


# ---------------------------------------------------------------------------------------------
# dualprobe and blackbox_exporter


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
    targets = []
    if kind in ("dns", "chain", "scale"):
        checks = {"dns": "[dns]", "chain": "[dns, tcp, http]", "scale": "[dns, tcp]"}[kind]
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


class Driver:
    """Drives blackbox's /probe: `jobs` round-robin, `rate` requests/s in total, evenly spaced,
    at most `count` requests and never past `deadline_s`; `workers` keep-alive connections."""

    def __init__(self, port: int, jobs, rate: float, deadline_s: float, workers: int = 8) -> None:
        self.port, self.jobs, self.rate = port, jobs, rate
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


def idle_rss(env: Env, timeout: float) -> dict:
    """Fresh processes of both tools with no work; one /metrics scrape each; RSS 5 s after start."""
    t_start = time.monotonic()
    procs = {}
    try:
        procs["dualprobe"] = start_dualprobe(env, "idle", 0, 15, timeout)
        procs["blackbox"] = start_blackbox(env, timeout)
        for _, port in procs.values():
            http_get(port, "/metrics")
        time.sleep(max(0.0, 5.0 - (time.monotonic() - t_start)))
        return {k: mem(p.pid) for k, (p, _) in procs.items()}
    finally:
        for p, _ in procs.values():
            env.procs.stop(p)


# ---------------------------------------------------------------------------------------------
# Scenarios


def sample_rss(pids: dict, seconds: float, stop_early=None) -> dict:
    """Samples VmRSS of each pid once a second for `seconds`; returns max and last per name."""
    peak = {k: 0 for k in pids}
    end = time.monotonic() + seconds
    while True:
        for k, pid in pids.items():
            try:
                peak[k] = max(peak[k], mem(pid)["VmRSS"])
            except OSError:
                pass
        left = end - time.monotonic()
        if left <= 0:
            break
        time.sleep(min(1.0, left))
    return peak


OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0"}


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
            jobs = blackbox_jobs(env, kind)
            kinds = len({k for k, _ in jobs})
            warm = interval + timeout + 2
            driver = Driver(bport, jobs, rate_per_kind * kinds, warm + duration + 5,
                            workers=max(4, min(32, int(rate_per_kind * kinds / 10) + 4)))
            driver.start()
        # dualprobe spreads first runs over one interval; ready = every pair ran once.
        wait_http(dport, "/-/ready", interval + timeout + 15, dp)
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
                "rss_max": peaks["dualprobe"], "hwm": mem(dp.pid).get("VmHWM", 0),
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
                "rss_max": peaks["blackbox"], "hwm": mem(bb.pid).get("VmHWM", 0),
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


def metrics_run(env: Env, n: int, interval: float, timeout: float, scrapes: int, kind: str) -> dict:
    dp, port = start_dualprobe(env, kind, n, interval, timeout)
    try:
        wait_http(port, "/-/ready", interval + timeout + 20, dp)
        time.sleep(1.0)
        # Background probing CPU, to subtract from the scrape window.
        w = CpuWindow()
        w.start(dp.pid)
        time.sleep(min(5.0, interval))
        bg = w.stop()
        bg_rate = bg["cpu_ns"] / bg["wall_s"]
        out = {"kind": kind, "targets": n}
        for mode, headers in (("openmetrics", OPENMETRICS), ("text", {})):
            conn = http.client.HTTPConnection(LOOP4, port, timeout=30)
            lat = []
            size = lines = 0
            w.start(dp.pid)
            end = time.monotonic() + 120  # bounded in time as well as in count
            try:
                for _ in range(scrapes):
                    if time.monotonic() > end:
                        break
                    s = time.perf_counter()
                    conn.request("GET", "/metrics", headers=headers)
                    r = conn.getresponse()
                    body = r.read()
                    lat.append((time.perf_counter() - s) * 1e3)
                    if r.status != 200:
                        raise RuntimeError(f"/metrics answered {r.status}")
                    size = len(body)
                    lines = body.count(b"\n")
            finally:
                conn.close()
            cw = w.stop()
            cpu_scrapes = cw["cpu_ns"] - bg_rate * cw["wall_s"]
            lat.sort()
            out[mode] = {
                "scrapes": len(lat), "median_ms": statistics.median(lat),
                "p90_ms": lat[int(0.9 * (len(lat) - 1))], "max_ms": lat[-1], "min_ms": lat[0],
                "bytes": size, "lines": lines,
                "server_cpu_ms_per_scrape": cpu_scrapes / 1e6 / max(1, len(lat)),
            }
        out["rss"] = mem(dp.pid)["VmRSS"]
        return out
    finally:
        env.procs.stop(dp)


# ---------------------------------------------------------------------------------------------
# Reporting


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


def report_compare(res: dict, verdicts: list) -> None:
    print("\n== compare: dualprobe vs blackbox_exporter (median [min..max] over runs) ==")
    idle_dp = [r["VmRSS"] for r in res["idle"]["dualprobe"]]
    idle_bb = [r["VmRSS"] for r in res["idle"]["blackbox"]]
    f = "{:.2f}"
    print(f"idle RSS MiB     dualprobe {spread([x / MiB for x in idle_dp], f)}   "
          f"blackbox {spread([x / MiB for x in idle_bb], f)}   "
          f"ratio {med(idle_dp) / med(idle_bb):.2f}")
    print(f"  of which anon  dualprobe {spread([r['RssAnon'] / MiB for r in res['idle']['dualprobe']], f)}   "
          f"blackbox {spread([r['RssAnon'] / MiB for r in res['idle']['blackbox']], f)}   (heap, stacks)")
    print(f"  of which file  dualprobe {spread([r['RssFile'] / MiB for r in res['idle']['dualprobe']], f)}   "
          f"blackbox {spread([r['RssFile'] / MiB for r in res['idle']['blackbox']], f)}   (mapped binary and libraries)")
    verdicts.append(("idle RSS < 10 MiB", f"{med(idle_dp) / MiB:.2f} MiB", verdict(med(idle_dp) < TARGET_IDLE_RSS)))
    verdicts.append(("idle RSS <= 1/2 blackbox", f"{med(idle_dp) / med(idle_bb):.2f}",
                     verdict(med(idle_dp) / med(idle_bb) <= TARGET_IDLE_RSS_RATIO)))
    print(f"{'kind':6} {'dualprobe us/check':>28} {'blackbox us/probe':>28} {'ratio':>6} "
          f"{'dp RSS max MiB':>16} {'bb RSS max MiB':>16} {'dp checks':>9} {'bb probes':>9} {'fail dp/bb':>10}")
    for kind, runs in res["phases"].items():
        dp = [r["dualprobe"]["us_per_check"] for r in runs]
        bb = [r["blackbox"]["us_per_probe"] for r in runs]
        ratio = med(dp) / med(bb)
        paired = [r["dualprobe"]["us_per_check"] / r["blackbox"]["us_per_probe"] for r in runs]
        print(f"{kind:6} {spread(dp):>28} {spread(bb):>28} {ratio:6.3f} "
              f"{spread([r['dualprobe']['rss_max'] / MiB for r in runs], '{:.1f}'):>16} "
              f"{spread([r['blackbox']['rss_max'] / MiB for r in runs], '{:.1f}'):>16} "
              f"{med([r['dualprobe']['checks'] for r in runs]):9.0f} {med([r['blackbox']['probes'] for r in runs]):9.0f} "
              f"{sum(r['dualprobe']['failed'] for r in runs):.0f}/{sum(r['blackbox']['failed'] for r in runs)}")
        verdicts.append((f"cpu/probe {kind} <= 1/4 blackbox", f"{ratio:.3f}", verdict(ratio <= TARGET_CPU_RATIO)))
        stat = [r["dualprobe"]["stat_us_per_check"] for r in runs]
        print(f"{'':6} ratio per run (paired) {spread(paired, '{:.3f}')}; /proc/PID/stat cross-check "
              f"(10 ms ticks): dualprobe {med(stat):.0f}, blackbox {med([r['blackbox']['stat_us_per_probe'] for r in runs]):.0f}")
        pc = [r["dualprobe"].get("per_cycle") for r in runs if r["dualprobe"].get("per_cycle")]
        if pc:
            print(f"{'':6} dualprobe per (target, family) cycle: "
                  f"{med([p['dns_queries'] for p in pc]):.2f} DNS queries, "
                  f"{med([p['tcp_connections'] for p in pc]):.2f} TCP connections")


def report_scale(res: list, verdicts: list) -> None:
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
        verdicts.append(("scale CPU < 3%, incl. scrapes", f"{med([x['cpu_pct'] for x in sc]):.2f}%",
                         verdict(med([x["cpu_pct"] for x in sc]) < TARGET_SCALE_CPU_PCT)))
        verdicts.append(("scale RSS < 40 MiB, incl. scrapes (max)", f"{med([x['rss_max'] for x in sc]) / MiB:.1f} MiB",
                         verdict(med([x["rss_max"] for x in sc]) < TARGET_SCALE_RSS)))
    print(f"checks/s           {spread(rate, '{:.1f}')} (expected {med(exp):.1f}); "
          f"failed checks {sum(r['dualprobe']['failed'] for r in res):.0f}")
    verdicts.append(("scale CPU < 3% of a core", f"{med(cpu):.2f}%", verdict(med(cpu) < TARGET_SCALE_CPU_PCT)))
    verdicts.append(("scale RSS < 40 MiB", f"{med(rss) / MiB:.1f} MiB", verdict(med(rss) < TARGET_SCALE_RSS)))


def report_metrics(res: dict, verdicts: list) -> None:
    print("\n== metrics: sequential GET /metrics over loopback (median [min..max] over runs) ==")
    for kind, runs in res.items():
        for mode in ("openmetrics", "text"):
            m = [r[mode] for r in runs]
            print(f"{runs[0]['targets']} targets, checks {kind:5} {mode:11}: median "
                  f"{spread([x['median_ms'] for x in m], '{:.2f}')} ms, p90 {med([x['p90_ms'] for x in m]):.2f} ms, "
                  f"server CPU {spread([x['server_cpu_ms_per_scrape'] for x in m], '{:.2f}')} ms/scrape, "
                  f"{med([x['bytes'] for x in m]) / 1024:.0f} KiB, {med([x['lines'] for x in m]):.0f} lines")
            verdicts.append((f"/metrics ({kind}, {mode}) < 10 ms", f"{med([x['median_ms'] for x in m]):.2f} ms",
                             verdict(med([x["median_ms"] for x in m]) < TARGET_METRICS_MS)))


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--bin", default="target/release/dualprobe", help="the dualprobe binary (not built here)")
    ap.add_argument("--blackbox", default=shutil.which("prometheus-blackbox-exporter") or "prometheus-blackbox-exporter")
    ap.add_argument("--scenario", choices=["all", "compare", "scale", "metrics"], default="all")
    ap.add_argument("--targets", type=int, help="N (default: compare 100, scale/metrics 1000)")
    ap.add_argument("--interval", type=float, help="seconds (default: compare 5, scale/metrics 10)")
    ap.add_argument("--duration", type=float, help="measurement window, seconds (default 30)")
    ap.add_argument("--timeout", type=float, default=2.0, help="per-check timeout, seconds")
    ap.add_argument("--nameservers", type=int, choices=[1, 2], default=1,
                    help="dualprobe resolver: 1 = 127.0.0.1:P (like blackbox's one server), "
                         "2 = also [::1]:P")
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (default 3)")
    ap.add_argument("--kinds", default="dns,tcp,http,chain", help="compare phases")
    ap.add_argument("--scrape-every", type=float, default=15.0,
                    help="scale: Prometheus-style scrape interval of the second window (s)")
    ap.add_argument("--taskset", help="run dualprobe under `taskset -c CPUS` (tokio starts one "
                                      "worker per allowed CPU: e.g. 1 for a one-worker experiment)")
    ap.add_argument("--scrapes", type=int, default=100, help="GET /metrics per run (metrics)")
    ap.add_argument("--quick", action="store_true", help="tiny smoke run (~15 s), no thresholds")
    ap.add_argument("--json", help="write every raw result to this file")
    ap.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    ap.add_argument("--keep", action="store_true", help="keep the workdir (configs, logs)")
    args = ap.parse_args()
    if args.peer:
        peer_main()
        return 0
    args.bin = os.path.abspath(args.bin)
    for b in (args.bin, args.blackbox):
        if not (os.path.isfile(b) and os.access(b, os.X_OK)) and not shutil.which(b):
            ap.error(f"not an executable: {b}")
    if not shutil.which("dnsmasq"):
        ap.error("dnsmasq not found")

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGINT too: it may arrive ignored
        signal.signal(sig, on_term)

    if args.quick:
        scenarios, repeat = ["quick"], 1
    else:
        scenarios = ["compare", "scale", "metrics"] if args.scenario == "all" else [args.scenario]
        repeat = max(1, args.repeat)

    def opt(v, default):
        return default if v is None else v

    max_names = max(opt(args.targets, 100 if s == "compare" else 1000) for s in scenarios) if not args.quick else 4
    env = Env(args)
    results: dict = {"machine": {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()},
                     "binaries": {"dualprobe": args.bin, "blackbox": args.blackbox}}
    verdicts: list = []
    try:
        env.start_peers(max_names)
        t_all = time.monotonic()
        if args.quick:
            n, iv, dur = opt(args.targets, 4), opt(args.interval, 2.0), opt(args.duration, 4.0)
            to = min(args.timeout, iv / 2)
            i = idle_rss(env, to)
            idle = {k: [v] for k, v in i.items()}
            ph = phase(env, "chain", n, iv, dur, to)
            results["compare"] = {"idle": idle, "phases": {"chain": [ph]}}
            report_compare(results["compare"], [])
            dp, bb = ph["dualprobe"], ph["blackbox"]
            nums = [idle["dualprobe"][0]["VmRSS"], idle["blackbox"][0]["VmRSS"], dp["us_per_check"],
                    bb["us_per_probe"], dp["rss_max"]]
            ok = all(isinstance(x, (int, float)) and x > 0 and not math.isnan(x) for x in nums)
            ok = ok and dp["checks"] > 0 and bb["probes"] > 0
            print(f"\nquick: {'OK' if ok else 'FAILED'} ({time.monotonic() - t_all:.0f}s; no thresholds checked)")
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(results, f, indent=1, default=str)
            return 0 if ok else 1

        if "compare" in scenarios:
            n, iv, dur = opt(args.targets, 100), opt(args.interval, 5.0), opt(args.duration, 30.0)
            kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
            res = {"idle": {"dualprobe": [], "blackbox": []}, "phases": {k: [] for k in kinds}}
            for rep in range(repeat):
                for which, m in idle_rss(env, args.timeout).items():
                    res["idle"][which].append(m)
                for k in kinds:
                    log(f"compare run {rep + 1}/{repeat}: {k}, {n} targets x 2 families every {iv:g}s, {dur:g}s window")
                    r = phase(env, k, n, iv, dur, args.timeout)
                    log(f"  dualprobe {r['dualprobe']['us_per_check']:.1f} us/check ({r['dualprobe']['checks']:.0f}), "
                        f"blackbox {r['blackbox']['us_per_probe']:.1f} us/probe ({r['blackbox']['probes']})")
                    res["phases"][k].append(r)
            results["compare"] = res
            report_compare(res, verdicts)

        if "scale" in scenarios:
            n, iv, dur = opt(args.targets, 1000), opt(args.interval, 10.0), opt(args.duration, 30.0)
            runs = []
            for rep in range(repeat):
                log(f"scale run {rep + 1}/{repeat}: {n} targets x 2 families x (dns, tcp) every {iv:g}s")
                r = phase(env, "scale", n, iv, dur, args.timeout, with_blackbox=False,
                          scrape_every=args.scrape_every)
                sc = r["dualprobe"].get("scraped")
                scraped = (f"; scraped every {args.scrape_every:g}s: {sc['cpu_pct']:.2f}% CPU, "
                           f"{sc['rss_max'] / MiB:.1f} MiB") if sc else ""
                log(f"  {r['dualprobe']['cpu_pct']:.2f}% CPU, {r['dualprobe']['rss_max'] / MiB:.1f} MiB{scraped}")
                runs.append(r)
            results["scale"] = runs
            report_scale(runs, verdicts)

        if "metrics" in scenarios:
            n, iv = opt(args.targets, 1000), opt(args.interval, 10.0)
            res = {}
            for kind in ("scale", "chain"):
                res[kind] = []
                for rep in range(repeat):
                    log(f"metrics run {rep + 1}/{repeat}: {n} targets, checks of `{kind}`")
                    res[kind].append(metrics_run(env, n, iv, args.timeout, args.scrapes, kind))
            results["metrics"] = {("dns+tcp" if k == "scale" else "dns+tcp+http"): v for k, v in res.items()}
            report_metrics(results["metrics"], verdicts)

        results["machine"]["loadavg_end"] = os.getloadavg()
        results["elapsed_s"] = time.monotonic() - t_all
        print("\n== targets (issue 2) ==")
        for name, value, v in verdicts:
            print(f"{v:4}  {name:40} {value}")
        print(f"(2 cores, shared and noisy; load average at start {results['machine']['loadavg_start'][0]:.2f}, "
              f"end {results['machine']['loadavg_end'][0]:.2f}; {results['elapsed_s']:.0f}s)")
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1, default=str)
        return 1 if args.strict and any(v == "MISS" for _, _, v in verdicts) else 0
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); stopping everything")
        return 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # let cleanup finish
            signal.signal(sig, signal.SIG_IGN)
        env.close()


if __name__ == "__main__":
    sys.exit(main())
