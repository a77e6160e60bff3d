#!/usr/bin/env python3
"""Proves the Grafana dashboard and the Prometheus rules against a real Prometheus scraping
a live dualprobe that has passing and failing families. Loopback only (127.0.0.1, ::1).

  scripts/check-dashboards-live.sh target/debug/dualprobe
  python3 scripts/check_dashboards_live.py --bin target/debug/dualprobe [--keep]

Peers started here (all killed on exit):
  dnsmasq     127.0.0.1:D, --no-resolv (never forwards), local-only zone `test`:
                dual.test    A 127.0.0.1, AAAA ::1
                aonly.test   A 127.0.0.1, AAAA: NODATA
                v6only.test  A 127.0.0.1, AAAA ::1   (its service listens on ::1 only)
                tls.test     A 127.0.0.1, AAAA ::1
                *.amazonaws.com -> 127.0.0.1 and ::1  (the PrivateLink names the
                               CloudFormation template declares; nothing listens on 443)
  HTTP        127.0.0.1:H and [::1]:H;  v6-only HTTP [::1]:V (127.0.0.1:V refused)
  TLS         127.0.0.1:T and [::1]:T, leaf for tls.test from a test CA, expiring in 7 days
  dualprobe   127.0.0.1:M, interval 1s, discovery.cloudformation on cloudformation/ipv6-vpc.yml
  Prometheus  127.0.0.1:P, scrape/evaluation interval 1s, rule_files: dashboards/alerts.yml

Checks (one line each, then "N passed, M failed"; exit 1 on any failure): the DNS answers,
nothing on port 443, dualprobe's own view of every target, the scrape, every rule loaded
with health "ok", every alert pending for the target meant to trigger it (and none for the
passing one), the recorded series, and scripts/check-promql.py --strict: every dashboard,
recording-rule and alert expression evaluates without error and returns series (only
absent() may be empty).
"""

from __future__ import annotations

import argparse
import http.server
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(REPO, "cloudformation", "ipv6-vpc.yml")
RULES = os.path.join(REPO, "dashboards", "alerts.yml")
CHECK_PROMQL = os.path.join(REPO, "scripts", "check-promql.py")
REGION = "us-east-1"
CERT_DAYS = 7


def load_check_promql():
    sys.dont_write_bytecode = True  # no scripts/__pycache__ in the work tree
    spec = importlib.util.spec_from_file_location("check_promql", CHECK_PROMQL)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["check_promql"] = mod
    spec.loader.exec_module(mod)
    return mod


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


# --------------------------------------------------------------------------- the run
class Run:
    def __init__(self, args) -> None:
        self.args = args
        self.r = Report()
        self.work = tempfile.mkdtemp(prefix="dualprobe-dash-")
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.servers: list[Server] = []

    # ---------------------------------------------------------------- processes
    def spawn(self, name: str, argv: list[str], env: dict | None = None) -> subprocess.Popen:
        log = open(os.path.join(self.work, f"{name}.log"), "wb")  # noqa: SIM115
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                             env=env, cwd=self.work)
        log.close()
        self.procs.append((name, p))
        return p

    def log_tail(self, name: str, n: int = 20) -> str:
        try:
            with open(os.path.join(self.work, f"{name}.log"), encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()[-n:]
        except OSError:
            return ""
        return "\n      ".join(lines)

    def cleanup(self) -> None:
        for _, p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for _, p in reversed(self.procs):
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
        for s in self.servers:
            s.shutdown()
            s.server_close()
        if self.args.keep:
            print(f"kept {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)

    # ---------------------------------------------------------------- steps
    def binary(self) -> str:
        """A private copy of BIN (the original may be relinked by a concurrent build)."""
        src = os.path.abspath(self.args.bin)
        dst = os.path.join(self.work, "dualprobe")

        def copy_ok():
            if not os.access(src, os.X_OK):
                return False
            shutil.copy2(src, dst)
            return subprocess.run([dst, "--version"], capture_output=True, timeout=20).returncode == 0

        ok = wait_until(copy_ok, timeout=120, interval=2)
        if not self.r.check(f"dualprobe binary runs ({self.args.bin})", bool(ok)):
            raise Fatal
        return dst

    def expected_discovery(self, bin_: str) -> list[tuple[str, str]]:
        out = subprocess.run([bin_, "targets", "--from-template", TEMPLATE, "--region", REGION],
                             capture_output=True, text=True, timeout=30)
        found = []
        for line in out.stdout.splitlines():
            cols = line.split()
            if len(cols) >= 3 and cols[0].startswith("vpce-"):
                found.append((cols[0], cols[2]))
        self.r.check("template discovery lists endpoints (dualprobe targets --from-template)",
                     out.returncode == 0 and bool(found)
                     and all(h.endswith(".amazonaws.com") for _, h in found),
                     f"{len(found)} targets: {', '.join(h for _, h in found)}"
                     if found else out.stderr.strip())
        return found

    def start_dns(self) -> int:
        port = free_port(kinds=((socket.AF_INET, "127.0.0.1"),),
                         types=(socket.SOCK_DGRAM, socket.SOCK_STREAM))
        dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        argv = [dnsmasq, "--no-daemon", "--keep-in-foreground", f"--port={port}",
                "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
                "--conf-file=/dev/null", "--pid-file", "--log-facility=-",
                # answer `test` from the records below only: a missing family is NODATA,
                # an unknown name NXDOMAIN (without it dnsmasq answers REFUSED)
                "--local=/test/",
                "--host-record=dual.test,127.0.0.1,::1",
                "--host-record=aonly.test,127.0.0.1",
                "--host-record=v6only.test,127.0.0.1,::1",
                "--host-record=tls.test,127.0.0.1,::1",
                "--address=/amazonaws.com/127.0.0.1",
                "--address=/amazonaws.com/::1"]
        p = self.spawn("dnsmasq", argv)
        srv = ("127.0.0.1", port)
        ok = wait_until(lambda: p.poll() is None and dns_query(srv, "dual.test", 1, 0.5)[0] == 0,
                        timeout=15)
        if not self.r.check(f"dnsmasq on 127.0.0.1:{port} (--no-resolv)", bool(ok),
                            "" if ok else self.log_tail("dnsmasq")):
            raise Fatal
        return port

    def check_dns(self, port: int, discovered: list[tuple[str, str]]) -> None:
        srv = ("127.0.0.1", port)
        want = {  # name: (A answers, AAAA answers); [] with rcode 0 is NODATA
            "dual.test": (["127.0.0.1"], ["::1"]),
            "aonly.test": (["127.0.0.1"], []),
            "v6only.test": (["127.0.0.1"], ["::1"]),
            "tls.test": (["127.0.0.1"], ["::1"]),
        }
        for _, host in discovered:
            want[host] = (["127.0.0.1"], ["::1"])
        bad = []
        for name, (a, aaaa) in want.items():
            for qtype, exp in ((1, a), (28, aaaa)):
                rcode, got = dns_query(srv, name, qtype)
                if rcode != 0 or sorted(got) != sorted(exp):
                    bad.append(f"{name} {'A' if qtype == 1 else 'AAAA'}: rcode {rcode} {got}, want 0 {exp}")
        rcode, _ = dns_query(srv, "missing.test", 1)
        if rcode != 3:
            bad.append(f"missing.test A: rcode {rcode}, want 3 (NXDOMAIN)")
        self.r.check("dnsmasq answers (aonly.test AAAA is NODATA, *.amazonaws.com local)",
                     not bad, "; ".join(bad) or f"{len(want)} names")

    def start_peers(self, certs: tuple[str, str, str]) -> dict:
        ports = {"http": free_port(), "v6only": free_port(), "tls": free_port()}
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs[1], certs[2])
        specs = [("127.0.0.1", ports["http"], "http4", None), ("::1", ports["http"], "http6", None),
                 ("::1", ports["v6only"], "v6only", None),
                 ("127.0.0.1", ports["tls"], "tls4", ctx), ("::1", ports["tls"], "tls6", ctx)]
        for host, port, tag, tls in specs:
            srv = Server(host, port, tag, tls)
            self.servers.append(srv)
            start_server(srv)
        states = {
            "http 127.0.0.1": tcp_state("127.0.0.1", ports["http"]),
            "http ::1": tcp_state("::1", ports["http"]),
            "v6only ::1": tcp_state("::1", ports["v6only"]),
            "tls 127.0.0.1": tcp_state("127.0.0.1", ports["tls"]),
            "tls ::1": tcp_state("::1", ports["tls"]),
        }
        refused4 = tcp_state("127.0.0.1", ports["v6only"])
        ok = all(v == "open" for v in states.values()) and refused4 == "refused"
        self.r.check("HTTP, v6-only and TLS peers on loopback", ok,
                     f"http :{ports['http']}, v6only [::1]:{ports['v6only']} (127.0.0.1: {refused4}), "
                     f"tls :{ports['tls']}" if ok else f"{states}, v6only 127.0.0.1: {refused4}")
        if not ok:
            raise Fatal
        return ports

    def check_443(self) -> None:
        states = {h: tcp_state(h, 443) for h in ("127.0.0.1", "::1")}
        self.r.check("nothing listens on 443 (PrivateLink names fail locally)",
                     all(s == "refused" for s in states.values()), str(states))

    def dualprobe_config(self, dns_port: int, ports: dict, ca: str) -> str:
        cfg = f"""\
interval: 1s
timeout: 500ms
resolver:
  nameservers: ["127.0.0.1:{dns_port}"]
discovery:
  cloudformation: {{ template: {json.dumps(TEMPLATE)}, region: {REGION} }}
targets:
  # passes on both families
  - name: dual
    host: dual.test
    port: {ports['http']}
    checks: [dns, tcp, http]
  # ipv4 passes, ipv6 has no AAAA (nodata): DualprobeIPv6PathDown
  - name: aonly
    host: aonly.test
    port: {ports['http']}
    checks: [dns, tcp, http]
  # the service listens on ::1 only, ipv4 is refused: DualprobeIPv4PathDown
  - name: v6only
    host: v6only.test
    port: {ports['v6only']}
    checks: [dns, tcp, http]
  # ipv4 is expected unreachable but is reachable: DualprobeExpectationViolated
  - name: opened
    host: dual.test
    port: {ports['http']}
    checks: [dns, tcp]
    expect: {{ ipv4: unreachable, ipv6: reachable }}
  # a test CA's certificate that expires in {CERT_DAYS} days: DualprobeCertificateExpiringSoon
  - name: tls
    host: tls.test
    port: {ports['tls']}
    checks: [dns, tcp, tls, http]
    http: {{ scheme: https, path: / }}
    tls: {{ ca_file: {json.dumps(ca)}, server_name: tls.test }}
"""
        path = os.path.join(self.work, "dualprobe.yml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(cfg)
        return path

    def start_dualprobe(self, bin_: str, cfg: str) -> str:
        out = subprocess.run([bin_, "check-config", cfg], capture_output=True, text=True, timeout=30)
        if not self.r.check("dualprobe check-config", out.returncode == 0,
                            (out.stdout + out.stderr).strip()):
            raise Fatal
        port = free_port(kinds=((socket.AF_INET, "127.0.0.1"),))
        # No AWS / ECS / dualprobe settings from the caller's environment: nothing may leave
        # loopback (no task metadata endpoint, no credentials).
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "ECS_", "DUALPROBE_", "RUST_LOG"))}
        env["DUALPROBE_LOG"] = "info"
        p = self.spawn("dualprobe", [bin_, "run", "--config", cfg, "--listen", f"127.0.0.1:{port}"],
                       env=env)
        base = f"http://127.0.0.1:{port}"
        ok = wait_until(lambda: p.poll() is None and http_get(base + "/-/ready", 2)[0] == 200,
                        timeout=30)
        if not self.r.check(f"dualprobe ready on 127.0.0.1:{port}", bool(ok),
                            "" if ok else self.log_tail("dualprobe")):
            raise Fatal
        return base

    def check_dualprobe_view(self, base: str, discovered: list[tuple[str, str]]) -> None:
        """dualprobe's own /metrics: every scenario is in the state it is meant to be in."""
        now = time.time()

        def view():
            status, body = http_get(base + "/metrics", 5)
            s = parse_metrics(body.decode())
            g = lambda name, **l: [v for _, v in select(s, name, **l)]  # noqa: E731
            problems = []

            def want(desc, values, pred):
                if not values or not all(pred(v) for v in values):
                    problems.append(f"{desc}: {values}")

            for fam in ("ipv4", "ipv6"):
                want(f"dual {fam} http ok", g("dualprobe_probe_success", target="dual", check="http", family=fam), lambda v: v == 1)
                want(f"tls {fam} tls ok", g("dualprobe_probe_success", target="tls", check="tls", family=fam), lambda v: v == 1)
                want(f"tls {fam} https ok", g("dualprobe_probe_success", target="tls", check="http", family=fam), lambda v: v == 1)
                want(f"tls {fam} cert expiry in ~{CERT_DAYS}d",
                     g("dualprobe_tls_cert_expiry_timestamp_seconds", target="tls", family=fam),
                     lambda v: (CERT_DAYS - 1) * 86400 < v - now < (CERT_DAYS + 1) * 86400)
            want("aonly ipv4 http ok", g("dualprobe_probe_success", target="aonly", check="http", family="ipv4"), lambda v: v == 1)
            want("aonly ipv6 dns fails", g("dualprobe_probe_success", target="aonly", check="dns", family="ipv6"), lambda v: v == 0)
            want("aonly ipv6 dns nodata counted", g("dualprobe_probes_total", target="aonly", check="dns", family="ipv6", result="nodata"), lambda v: v > 0)
            want("v6only ipv6 http ok", g("dualprobe_probe_success", target="v6only", check="http", family="ipv6"), lambda v: v == 1)
            want("v6only ipv4 tcp refused", g("dualprobe_probes_total", target="v6only", check="tcp", family="ipv4", result="refused"), lambda v: v > 0)
            want("opened ipv4 expectation not met", g("dualprobe_expectation_met", target="opened", family="ipv4"), lambda v: v == 0)
            want("opened ipv6 expectation met", g("dualprobe_expectation_met", target="opened", family="ipv6"), lambda v: v == 1)
            want("dual expectation met", g("dualprobe_expectation_met", target="dual"), lambda v: v == 1)
            want("cloudformation target count", g("dualprobe_targets", source="cloudformation"), lambda v: v == len(discovered))
            for name, host in discovered:
                info = select(s, "dualprobe_target_info", target=name)
                if not info or info[0][0].get("source") != "cloudformation" or info[0][0].get("host") != host:
                    problems.append(f"{name}: target_info {info}")
                want(f"{name} ipv4 tcp not passing", g("dualprobe_probe_success", target=name, check="tcp", family="ipv4"), lambda v: v == 0)
            return (not problems, problems, s)

        res = wait_until(lambda: (r := view())[0] and r, timeout=20, interval=0.5)
        if not res:
            res = view()
        ok, problems, samples = res
        self.r.check("dualprobe /metrics: dual ok, aonly ipv6 nodata, v6only ipv4 refused, "
                     "opened violates, tls expires in 7d, cloudformation targets fail",
                     ok, "; ".join(problems))
        # How the discovered endpoints fail (for the report): reasons of their non-ok runs.
        reasons = sorted({f"{l['check']}={l['result']}" for l, v in
                          ((l, v) for n, l, v in samples if n == "dualprobe_probes_total")
                          if l.get("target", "").startswith("vpce-") and l.get("result") != "ok" and v > 0})
        print(f"      discovered endpoints fail with: {', '.join(reasons) or 'nothing'}")

    def start_prometheus(self, dp_base: str) -> str:
        port = free_port(kinds=((socket.AF_INET, "127.0.0.1"),))
        cfg = os.path.join(self.work, "prometheus.yml")
        with open(cfg, "w", encoding="utf-8") as f:
            f.write(f"""\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - {json.dumps(RULES)}
scrape_configs:
  - job_name: dualprobe
    static_configs:
      - targets: ["{dp_base.split('//', 1)[1]}"]
""")
        prom = shutil.which("prometheus") or "/usr/bin/prometheus"
        data = os.path.join(self.work, "prometheus-data")
        p = self.spawn("prometheus", [prom, f"--config.file={cfg}", f"--storage.tsdb.path={data}",
                                      f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"])
        base = f"http://127.0.0.1:{port}"
        ok = wait_until(lambda: p.poll() is None and http_get(base + "/-/ready", 2)[0] == 200,
                        timeout=60, interval=0.5)
        if not self.r.check(f"prometheus ready on 127.0.0.1:{port}", bool(ok),
                            "" if ok else self.log_tail("prometheus")):
            raise Fatal
        return base

    def wait_for_data(self, base: str) -> None:
        def scraped():
            up = prom_query(base, 'up{job="dualprobe"} == 1')
            n = prom_query(base, 'count_over_time(up{job="dualprobe"}[5m])')
            fails = prom_query(base, 'rate(dualprobe_probes_total{result!="ok"}[5m]) > 0')
            return up and n and float(n[0]["value"][1]) >= self.args.min_scrapes and fails and n

        n = wait_until(scraped, timeout=90, interval=1)
        self.r.check("prometheus scrapes dualprobe (up == 1, enough samples for rate()[5m])",
                     bool(n), f"{n[0]['value'][1]} scrapes" if n else "not enough samples")
        if not n:
            tgt = prom_api(base, "/api/v1/targets")
            print(f"      targets: {json.dumps(tgt)[:600]}")
            raise Fatal

    def check_rules(self, base: str, cp) -> None:
        want = {e.source.split(": ", 1)[1] for e in cp.rule_exprs(RULES)}  # "alert X" / "record Y"

        def rules():
            groups = prom_api(base, "/api/v1/rules")["groups"]
            rs = [r for g in groups for r in g["rules"]]
            if len(rs) < len(want) or any(r.get("health") == "unknown" for r in rs):
                return None
            return rs

        # dualprobe.rules evaluates every 30s: wait for one evaluation of every rule
        rs = wait_until(rules, timeout=75, interval=1)
        if not rs:
            groups = prom_api(base, "/api/v1/rules")["groups"]
            rs = [r for g in groups for r in g["rules"]]
        got = {("alert " if r["type"] == "alerting" else "record ") + r["name"] for r in rs}
        self.r.check("prometheus loaded every rule of dashboards/alerts.yml", got == want,
                     f"{len(got)} rules" if got == want else f"missing {sorted(want - got)}, extra {sorted(got - want)}")
        bad = [f"{r['name']}: health {r.get('health')} {r.get('lastError', '')}".strip()
               for r in rs if r.get("health") != "ok"]
        self.r.check('every rule\'s health is "ok" (/api/v1/rules)', not bad and bool(rs), "; ".join(bad))

    def check_recorded(self, base: str) -> None:
        names = ["dualprobe:family_success:ratio", "dualprobe:target_family_success:min",
                 "dualprobe:probe_duration_seconds:p90_rate5m", "dualprobe:probe_failures:rate5m"]
        # a rule evaluated before rate() had two samples recorded nothing: one more round (30s)
        got = wait_until(lambda: all(prom_query(base, n) for n in names) and True, timeout=40, interval=1)
        empty = [n for n in names if not prom_query(base, n)]
        self.r.check("recording rules produce series", bool(got) and not empty,
                     f"{len(names)} recorded" if not empty else f"empty: {', '.join(empty)}")

    def check_alerts(self, base: str, discovered: list[tuple[str, str]]) -> None:
        want = {
            "DualprobeIPv6PathDown": {"aonly"},
            "DualprobeIPv4PathDown": {"v6only"},
            "DualprobePrivateLinkEndpointUnreachable": {n for n, _ in discovered},
            "DualprobeExpectationViolated": {"opened"},
            "DualprobeCertificateExpiringSoon": {"tls"},
        }

        def active():
            alerts = prom_api(base, "/api/v1/alerts")["alerts"]
            by = {}
            for a in alerts:
                if a.get("state") in ("pending", "firing"):
                    by.setdefault(a["labels"]["alertname"], set()).add(a["labels"].get("target"))
            return by if all(want[k] <= by.get(k, set()) for k in want) else None

        by = wait_until(active, timeout=20, interval=1)
        if by is None:
            alerts = prom_api(base, "/api/v1/alerts")["alerts"]
            by = {}
            for a in alerts:
                by.setdefault(a["labels"]["alertname"], set()).add(a["labels"].get("target"))
        for name, targets in want.items():
            have = by.get(name, set())
            self.r.check(f"alert {name} pending for {', '.join(sorted(targets)) if len(targets) < 4 else f'{len(targets)} targets'}",
                         targets <= have, f"active for: {sorted(t for t in have if t)}")
        noisy = sorted(k for k, v in by.items() if "dual" in v)
        self.r.check("no alert for the passing dual-stack target", not noisy, f"alerts: {noisy}")
        self.r.check("DualprobeAbsent is quiet", "DualprobeAbsent" not in by, "")

    def check_promql(self, base: str) -> None:
        out = subprocess.run([sys.executable, CHECK_PROMQL, "--prometheus", base,
                              "--require-series", "--strict"],
                             capture_output=True, text=True, timeout=120)
        for line in (out.stdout + out.stderr).rstrip().splitlines():
            print(f"      {line}")
        summary = (out.stdout.strip().splitlines() or ["no output"])[-1]
        self.r.check("scripts/check-promql.py --require-series --strict", out.returncode == 0, summary)

    def main(self) -> int:
        cp = load_check_promql()
        try:
            bin_ = self.binary()
            discovered = self.expected_discovery(bin_)
            self.check_443()
            dns_port = self.start_dns()
            self.check_dns(dns_port, discovered)
            certs = make_certs(self.work)
            self.r.check(f"test CA and a tls.test certificate valid {CERT_DAYS} days (openssl)", True)
            ports = self.start_peers(certs)
            cfg = self.dualprobe_config(dns_port, ports, certs[0])
            dp = self.start_dualprobe(bin_, cfg)
            self.check_dualprobe_view(dp, discovered)
            prom = self.start_prometheus(dp)
            self.wait_for_data(prom)
            self.check_alerts(prom, discovered)
            self.check_rules(prom, cp)
            self.check_recorded(prom)
            self.check_promql(prom)
            # the peers are still what they were (nothing died during the run)
            dead = [n for n, p in self.procs if p.poll() is not None]
            self.r.check("dnsmasq, dualprobe and prometheus still running", not dead, f"exited: {dead}")
        except Fatal:
            pass
        except (KeyboardInterrupt, SystemExit) as e:
            self.r.check("run interrupted", False, f"{type(e).__name__} {e}; cleaning up")
        except Exception as e:  # noqa: BLE001 - reported as a failed check, then cleaned up
            self.r.check("unexpected error", False, f"{type(e).__name__}: {e}")
        finally:
            self.cleanup()
        print(f"{self.r.passed} passed, {self.r.failed} failed")
        return 1 if self.r.failed else 0


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the dualprobe binary")
    ap.add_argument("--min-scrapes", type=int, default=15,
                    help="scrapes of dualprobe to wait for before evaluating (default 15, ~15 s)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    args = ap.parse_args(argv)
    for tool in ("dnsmasq", "prometheus", "openssl"):
        if not (shutil.which(tool) or os.path.exists(f"/usr/sbin/{tool}")):
            print(f"FAIL  {tool} not found (scripts/install-test-deps.sh)\n0 passed, 1 failed")
            return 1

    def on_term(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    return Run(args).main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
