"""Loopback peers and helpers for scripts/check_dashboards_live.py: reporting, free ports,
HTTP/TLS listeners, a throwaway CA, a plain DNS client, the Prometheus text format and HTTP API,
an ECS task metadata v4 endpoint (served on 127.0.0.1, never the metadata address), and the
private network namespace the check re-executes itself in. Standard library only."""

from __future__ import annotations

import http.server
import os
import json
import random
import re
import shutil
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

CERT_DAYS = 7


# --------------------------------------------------------------------------- reporting
class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            print(f"PASS  {name}" + (f"  ({detail})" if detail else ""), flush=True)
        else:
            self.failed += 1
            print(f"FAIL  {name}" + (f"\n      {detail}" if detail else ""), flush=True)
        return ok


class Fatal(Exception):
    """A step the rest depends on failed (already reported)."""


# --------------------------------------------------------------------------- ports
def free_port(kinds=((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")),
              types=(socket.SOCK_STREAM,)) -> int:
    """A port that is free right now on every (family, address) x socket type given."""
    for _ in range(200):
        first = socket.socket(kinds[0][0], types[0])
        first.bind((kinds[0][1], 0))
        port = first.getsockname()[1]
        held = [first]
        try:
            for fam, addr in kinds:
                for typ in types:
                    if (fam, addr, typ) == (kinds[0][0], kinds[0][1], types[0]):
                        continue
                    s = socket.socket(fam, typ)
                    held.append(s)
                    s.bind((addr, port))
            return port
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free port")


def tcp_state(host: str, port: int, timeout: float = 1.0) -> str:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect((host, port))
            return "open"
        except ConnectionRefusedError:
            return "refused"
        except OSError as e:
            return f"error: {e}"


def wait_until(pred, timeout: float, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = pred()
        except Exception as e:  # noqa: BLE001 - retried until the deadline
            last = None
            err = e
        else:
            err = None
        if last:
            return last
        if time.monotonic() >= deadline:
            if err is not None:
                raise TimeoutError(str(err))
            return last
        time.sleep(interval)


# --------------------------------------------------------------------------- servers
class QuietHandler(http.server.BaseHTTPRequestHandler):
    server_version = "dualprobe-test"

    def do_GET(self) -> None:  # noqa: N802
        body = f"ok {self.server.tag}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET  # noqa: N815

    def log_message(self, *args) -> None:
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, port: int, tag: str, tls: ssl.SSLContext | None = None):
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.tag = tag
        self.tls = tls
        super().__init__((host, port), QuietHandler)

    def finish_request(self, request, client_address) -> None:
        if self.tls is not None:  # handshake in the handler thread, not in accept()
            request.settimeout(5)
            request = self.tls.wrap_socket(request, server_side=True)
        super().finish_request(request, client_address)

    def handle_error(self, request, client_address) -> None:
        pass  # probes close connections early (tcp/tls checks): not an error here


def start_server(srv: Server) -> threading.Thread:
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    t.start()
    return t


# --------------------------------------------------------------------------- certs
def make_certs(d: str) -> tuple[str, str, str]:
    """CA + leaf for tls.test (and the loopback IPs) valid CERT_DAYS days; (ca, cert, key)."""
    openssl = shutil.which("openssl")
    if not openssl:
        raise RuntimeError("openssl not found (Debian package openssl)")
    ca_key, ca, key, csr, cert, ext = (os.path.join(d, n) for n in (
        "ca.key", "ca.pem", "leaf.key", "leaf.csr", "leaf.pem", "leaf.ext"))
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run = lambda *a: subprocess.run([openssl, *a], check=True, capture_output=True, timeout=30)  # noqa: E731
    run("req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "30",
        "-subj", "/CN=dualprobe dashboards test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    run("req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=tls.test")
    with open(ext, "w", encoding="utf-8") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=DNS:tls.test,IP:127.0.0.1,IP:::1\n")
    run("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-out", cert,
        "-days", str(CERT_DAYS), "-set_serial", str(random.getrandbits(63)), "-extfile", ext)
    return ca, cert, key


# --------------------------------------------------------------------------- dns client
def dns_query(server: tuple[str, int], name: str, qtype: int, timeout: float = 2.0):
    """(rcode, [answers of qtype as text]) from a plain UDP query."""
    qid = random.getrandbits(16)
    q = struct.pack(">HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    q += b"".join(bytes([len(p)]) + p.encode() for p in name.rstrip(".").split(".")) + b"\0"
    q += struct.pack(">HH", qtype, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(q, server)
        data, _ = s.recvfrom(4096)
    rid, flags, qd, an, _, _ = struct.unpack(">HHHHHH", data[:12])
    if rid != qid:
        raise RuntimeError("DNS id mismatch")

    def skip_name(i: int) -> int:
        while True:
            n = data[i]
            if n == 0:
                return i + 1
            if n & 0xC0 == 0xC0:
                return i + 2
            i += n + 1

    i = 12
    for _ in range(qd):
        i = skip_name(i) + 4
    answers = []
    for _ in range(an):
        i = skip_name(i)
        rtype, _, _, rdlen = struct.unpack(">HHIH", data[i:i + 10])
        i += 10
        rdata = data[i:i + rdlen]
        i += rdlen
        if rtype == qtype == 1:
            answers.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == qtype == 28:
            answers.append(socket.inet_ntop(socket.AF_INET6, rdata))
    return flags & 0xF, answers


# --------------------------------------------------------------------------- metrics text
SAMPLE_RE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
LABEL_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict, float]]:
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            continue
        out.append((m.group(1), dict(LABEL_RE.findall(m.group(2) or "")), value))
    return out


def select(samples, name: str, **labels) -> list[tuple[dict, float]]:
    return [(l, v) for n, l, v in samples
            if n == name and all(l.get(k) == w for k, w in labels.items())]


# --------------------------------------------------------------------------- http
def http_get(url: str, timeout: float = 5.0, headers: dict | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def prom_query(base: str, expr: str) -> list:
    status, body = http_get(base + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    data = json.loads(body)
    if status != 200 or data.get("status") != "success":
        raise RuntimeError(f"{expr}: HTTP {status} {data.get('error')}")
    return data["data"]["result"]


def prom_api(base: str, path: str):
    status, body = http_get(base + path)
    data = json.loads(body)
    if status != 200 or data.get("status") != "success":
        raise RuntimeError(f"{path}: HTTP {status} {data.get('error')}")
    return data["data"]


# --------------------------------------------------------------------------- ECS task metadata
class TaskMetadata(http.server.ThreadingHTTPServer):
    """ECS task metadata v4 for several fake tasks on 127.0.0.1: GET /v4/<name>/task answers the
    task document of <name> (what dualprobe reads at start for dualprobe_build_info)."""

    daemon_threads = True

    def __init__(self, tasks: dict[str, dict]):
        self.tasks = tasks
        super().__init__(("127.0.0.1", 0), _MetadataHandler)
        threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()

    def uri(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v4/{name}"


def task_document(task_id: str, az: str, family: str = "dualprobe-live", cluster: str = "live") -> dict:
    return {"Cluster": f"arn:aws:ecs:us-east-1:123456789012:cluster/{cluster}",
            "TaskARN": f"arn:aws:ecs:us-east-1:123456789012:task/{cluster}/{task_id}",
            "Family": family, "Revision": "1", "AvailabilityZone": az, "LaunchType": "FARGATE",
            "ServiceName": "live-web", "Containers": []}


class _MetadataHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        parts = self.path.strip("/").split("/")
        doc = self.server.tasks.get(parts[1]) if len(parts) == 3 and parts[2] == "task" else None
        body = json.dumps(doc).encode() if doc else b"{}"
        self.send_response(200 if doc else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


# --------------------------------------------------------------------------- network namespace
# The check runs in a private network namespace of its own when it can: only `lo`, no route, so
# nothing it starts can send a packet off the host whatever address a test name resolves to. In
# there an address of the well-known NAT64 prefix can stand in for a translator (NAT64_STANDIN on
# lo) and the rest of 64:ff9b::/96 has no route (a connect fails at once: nat64_unreachable).
NETNS_ENV = "DUALPROBE_DASH_NETNS"
NAT64_STANDIN = "64:ff9b::7f00:1"   # what DNS64 synthesizes for 127.0.0.1
NAT64_NOROUTE = "64:ff9b::7f00:2"   # ... for 127.0.0.2: no route in the namespace


def reexec_in_netns(script: str, argv: list[str]) -> str:
    """Replaces this process with `script argv` run under `unshare --net` (plus --map-root-user
    when not root), or returns why it cannot. Returns "" at once when already inside."""
    if os.environ.get(NETNS_ENV) == "1":
        return ""
    unshare, ip = shutil.which("unshare"), shutil.which("ip") or "/usr/sbin/ip"
    if not unshare or not os.path.exists(ip):
        return "unshare (util-linux) or ip (iproute2) not found"
    flags = ["--net"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    trial = subprocess.run([unshare, *flags, ip, "link", "set", "lo", "up"], capture_output=True,
                           text=True, timeout=20)
    if trial.returncode != 0:
        return f"unshare {' '.join(flags)}: {(trial.stderr or trial.stdout).strip() or trial.returncode}"
    env = dict(os.environ, **{NETNS_ENV: "1"})
    os.execve(unshare, [unshare, *flags, sys.executable, os.path.abspath(script), *argv], env)
    return "exec failed"  # not reached


def setup_netns() -> tuple[bool, str]:
    """Inside the namespace: lo up with NAT64_STANDIN; (ok, what it saw). Not ok when this is
    not a private namespace (an interface other than lo, or a route off lo)."""
    ip = shutil.which("ip") or "/usr/sbin/ip"

    def run(*a: str) -> subprocess.CompletedProcess:
        return subprocess.run([ip, *a], capture_output=True, text=True, timeout=20)

    for cmd in (("link", "set", "lo", "up"), ("-6", "addr", "add", f"{NAT64_STANDIN}/128", "dev", "lo")):
        r = run(*cmd)
        if r.returncode != 0 and "exists" not in r.stderr:
            return False, f"ip {' '.join(cmd)}: {r.stderr.strip()}"
    links = [ln.split(":")[1].strip() for ln in run("-o", "link").stdout.splitlines() if ":" in ln]
    routes = [ln for fam in ("-4", "-6") for ln in run(fam, "route", "show", "table", "all").stdout.splitlines()
              if ln.strip() and " dev lo " not in f" {ln} "]
    ok = links == ["lo"] and not routes
    return ok, (f"interfaces {links}, lo has {NAT64_STANDIN}" if ok
                else f"not private: interfaces {links}, routes off lo {routes[:3]}")
