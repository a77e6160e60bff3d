"""Shared by the bench modules: logging, child processes, loopback ports, small HTTP helpers."""

from __future__ import annotations

import ctypes
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time

MiB = 1024 * 1024
LOOP4, LOOP6 = "127.0.0.1", "::1"
OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0"}


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


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
            argv, stdin=kw.pop("stdin", subprocess.DEVNULL), stdout=kw.pop("stdout", out), stderr=out,
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


def ready_bound(pairs: int, interval: float, timeout: float) -> float:
    """How long to wait for /-/ready: one interval (first runs spread over it) plus the timeout,
    and 20 ms per pair more, in case first runs are rate-bounded (issue 15) at 50 a second."""
    return interval + timeout + 15 + pairs / 50


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


def parse_probes_total(body: bytes) -> dict:
    """Sum of dualprobe_probes_total by (check, result), from a /metrics body (either format)."""
    out: dict = {}
    for labels, value in PROBES_RE.findall(body.decode()):
        lab = dict(LABEL_RE.findall(labels))
        key = (lab.get("check", "?"), lab.get("result", "?"))
        out[key] = out.get(key, 0.0) + float(value)
    return out


def parse_probes_by(body: bytes, keys: tuple = ("check", "family", "result")) -> dict:
    """Sum of dualprobe_probes_total by the given labels, from a /metrics body."""
    out: dict = {}
    for labels, value in PROBES_RE.findall(body.decode()):
        lab = dict(LABEL_RE.findall(labels))
        key = tuple(lab.get(k, "?") for k in keys)
        out[key] = out.get(key, 0.0) + float(value)
    return out


def probes_total(port: int) -> dict:
    status, body = http_get(port, "/metrics", timeout=30)
    if status != 200:
        raise RuntimeError(f"/metrics answered {status}")
    return parse_probes_total(body)


def counter_delta(a: dict, b: dict) -> dict:
    return {k: b.get(k, 0.0) - a.get(k, 0.0) for k in set(a) | set(b) if b.get(k, 0.0) != a.get(k, 0.0)}
