#!/usr/bin/env python3
"""End-to-end fault tests of dualprobe in a dual-stack "VPC" made of network namespaces.

    sudo tests/netns/run.py --bin target/release/dualprobe      (docs/netns-suite.md)

Two namespaces, named with this process's PID so runs never collide:
  task  the dualprobe binary; default routes for both families
  aws   the services: dnsmasq (the VPC resolver), HTTP/HTTPS listeners on both families,
        moto (S3, EC2) when installed
and three veth links between them:
  vpc   the VPC subnet: the resolver, and IPv4's default route (the VPC router)
  egw   the egress-only internet gateway: IPv6's default route, to the public IPv6 services
  pl    the PrivateLink path: IPv4 only, to the interface endpoints' addresses
Addresses come only from 192.0.2.0/24, 198.51.100.0/24 and 2001:db8::/32, and an nftables guard
in each namespace counts (and drops) anything sent elsewhere. Nothing leaves the namespaces.

Each scenario applies one fault, asserts the per-family metrics the agent exports on /metrics
within two probe intervals, undoes the fault and asserts recovery. It prints one line of what it
saw; the last line is `N passed, M failed`. Exit status: 0 all passed, 1 a scenario failed (or the
topology could not be built: counted as one failure), 2 no binary at --bin. Without root, `ip netns`,
nft or dnsmasq it prints `SKIPPED: reason` and exits 0 (1 when the environment variable CI is set).
The topology is always torn down, also on failure, Ctrl-C or SIGTERM; logs are kept on failure.

Python 3 standard library only.
"""
import argparse
import concurrent.futures
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

# ---- addresses (documentation prefixes only) ---------------------------------------------------
VPC_T4, VPC_ROUTER4, VPC_DNS4 = "192.0.2.10", "192.0.2.1", "192.0.2.2"       # 192.0.2.0/28
VPC_T6, VPC_ROUTER6, VPC_DNS6 = "2001:db8:a::10", "2001:db8:a::1", "2001:db8:a::2"
PL_T4, PL_A4 = "192.0.2.18", "192.0.2.17"                                      # 192.0.2.16/28
EGW_T6, EGW_A6 = "2001:db8:e::10", "2001:db8:e::1"
DLY_T6 = "2001:db8:d::10"                    # the task's address on the delaying tun path
PUBLIC6 = "2001:db8:100::/64"                # public IPv6 services, behind the egress gateway
ENDPOINTS4 = "198.51.100.128/25"             # PrivateLink endpoint ENIs
WEB4, WEB6 = "198.51.100.10", "2001:db8:100::10"
LEGACY4 = "198.51.100.11"
S3_4, S3_6 = "198.51.100.20", "2001:db8:100::20"
NAT4 = "198.51.100.60"                       # public IPv4: reachable only once a "NAT" appears
EC2_VPCE4, SVC_VPCE4 = "198.51.100.130", "198.51.100.131"
ALLOWED4 = "{ 192.0.2.0/24, 198.51.100.0/24, 224.0.0.0/4 }"
ALLOWED6 = "{ 2001:db8::/32, fe80::/10, ff00::/8 }"

S3_NAME = "s3.dualstack.us-east-1.amazonaws.com"
EC2_NAME = "ec2.us-east-1.amazonaws.com"     # the EC2 endpoint's private DNS name
MOTO_PORT = 4443
METRICS_PORT = 9469

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


class SuiteError(Exception):
    """The suite itself could not do something (setup, a command)."""


def log(msg):
    print(msg, flush=True)


def run(cmd, check=True, timeout=30, input=None):
    """Runs a command (list), returns stdout; raises SuiteError with stderr on failure."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired as e:
        raise SuiteError(f"`{' '.join(cmd)}` timed out") from e
    if check and p.returncode != 0:
        raise SuiteError(f"`{' '.join(cmd)}` failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def setns(name):
    fd = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


def _child_setup():
    # Die with the suite even if it is killed hard (SIGKILL skips every cleanup).
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


class Proc:
    """A child process in its own process group, stopped by its id (group) only."""

    def __init__(self, name, cmd, log_path, stdin_pipe=True, env=None):
        self.name, self.cmd, self.log_path = name, cmd, log_path
        self.log_file = open(log_path, "ab")
        self.p = subprocess.Popen(
            cmd, stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_child_setup, env=env)

    def alive(self):
        return self.p.poll() is None

    def wait_for_line(self, text, timeout):
        """Waits until the log contains `text` (bounded)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with open(self.log_path, "rb") as f:
                if text.encode() in f.read():
                    return True
            if not self.alive():
                return False
            time.sleep(0.1)
        return False

    def signal(self, sig):
        if self.alive():
            os.kill(self.p.pid, sig)

    def stop(self, timeout=5.0):
        if self.alive():
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait(5)
        if self.p.stdin:
            try:
                self.p.stdin.close()
            except OSError:
                pass
        self.log_file.close()
        return self.p.returncode


# ---- metrics -------------------------------------------------------------------------------------
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


class Snapshot:
    """One scrape of /metrics: name -> list of (labels dict, value)."""

    def __init__(self, text, t):
        self.t = t
        self.series = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = _SAMPLE.match(line)
            if not m:
                continue
            labels = dict(_LABEL.findall(m.group(2) or ""))
            try:
                value = float(m.group(3))
            except ValueError:
                continue
            self.series.setdefault(m.group(1), []).append((labels, value))

    def sum(self, name, **want):
        """Sum of the series of `name` whose labels include `want` (0 if none)."""
        return sum(v for labels, v in self.series.get(name, [])
                   if all(labels.get(k) == str(x) for k, x in want.items()))

    def get(self, name, **want):
        """The value of the one series matching `want` exactly on those labels, or None."""
        found = [v for labels, v in self.series.get(name, [])
                 if all(labels.get(k) == str(x) for k, x in want.items())]
        return found[0] if len(found) == 1 else None

    def results(self, target, check, family):
        """{result: count} of dualprobe_probes_total for one check."""
        out = {}
        for labels, v in self.series.get("dualprobe_probes_total", []):
            if (labels.get("target"), labels.get("check"), labels.get("family")) == (
                    target, check, family):
                out[labels.get("result")] = v
        return out


def delta_results(a, b, target, check, family):
    ra, rb = a.results(target, check, family), b.results(target, check, family)
    return {k: rb.get(k, 0) - ra.get(k, 0) for k in set(ra) | set(rb) if rb.get(k, 0) - ra.get(k, 0) > 0}


# ---- the topology --------------------------------------------------------------------------------
class Target:
    def __init__(self, name, checks, families, expect=None, path=None):
        self.name, self.checks, self.families = name, checks, families
        self.expect = expect or {}
        self.path = path  # "egw+vpc", "pl", ... (documentation only)

    def expects(self, family):
        return self.expect.get(family, "reachable")

    def pairs(self):
        return [(self.name, f) for f in self.families]


class Suite:
    def __init__(self, args):
        self.args = args
        self.pid = os.getpid()
        self.ns_t = f"dp{self.pid}-task"
        self.ns_a = f"dp{self.pid}-aws"
        self.work = None
        self.procs = {}
        self.namespaces = []
        self.exec_t = None
        self.exec_a = None
        self.tls = False
        self.moto = False
        self.targets = []
        self.interval = args.interval
        self.timeout = args.timeout
        self.agent_log = None

    # -- helpers running inside a namespace (a thread that entered it) --
    def in_ns(self, ns, fn, *a, timeout=10):
        ex = self.exec_t if ns == self.ns_t else self.exec_a
        return ex.submit(fn, *a).result(timeout=timeout)

    def ip(self, ns, *args, check=True):
        return run(["ip", "-n", ns, *args], check=check)

    def nft(self, ns, script):
        return run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=script)

    # -- setup --
    def setup(self):
        self.work = tempfile.mkdtemp(prefix="dualprobe-netns-")
        os.chmod(self.work, 0o755)  # dnsmasq drops to nobody and rereads its hosts file
        self.cleanup_stale()
        self.make_pki()
        self.build_topology()
        self.exec_t = concurrent.futures.ThreadPoolExecutor(1, initializer=setns, initargs=(self.ns_t,))
        self.exec_a = concurrent.futures.ThreadPoolExecutor(1, initializer=setns, initargs=(self.ns_a,))
        self.write_hosts(aaaa=True)
        self.start_dnsmasq()
        self.start_services()
        self.start_moto()
        self.define_targets()
        self.write_config()
        self.start_agent()

    def cleanup_stale(self):
        """Deletes namespaces of earlier runs of this suite whose process is gone."""
        out = run(["ip", "netns", "list"], check=False)
        for line in out.splitlines():
            m = re.match(r"^dp(\d+)-(task|aws)\b", line)
            if not m or os.path.exists(f"/proc/{m.group(1)}"):
                continue
            name = line.split()[0]
            log(f"note: removing namespace {name} left by an earlier run (pid {m.group(1)} is gone)")
            for pid in run(["ip", "netns", "pids", name], check=False).split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            run(["ip", "netns", "del", name], check=False)

    def make_pki(self):
        if shutil.which("openssl") is None:
            log("NOTE: openssl not found: TLS is skipped in the namespaces (targets use plain HTTP, "
                "no tls check)")
            return
        w = self.work
        names = ["web.dualstack.test", "api.vpce-svc.test", S3_NAME, f"*.{S3_NAME}", EC2_NAME]
        with open(f"{w}/ext.cnf", "w") as f:
            f.write("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n"
                    "extendedKeyUsage=serverAuth\nsubjectAltName="
                    + ",".join(f"DNS:{n}" for n in names) + "\n")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        run(["openssl", "req", "-x509", *ec, "-keyout", f"{w}/ca.key", "-out", f"{w}/ca.pem",
             "-days", "2", "-subj", "/CN=dualprobe netns suite CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"])
        run(["openssl", "req", *ec, "-keyout", f"{w}/srv.key", "-out", f"{w}/srv.csr",
             "-subj", "/CN=web.dualstack.test"])
        run(["openssl", "x509", "-req", "-in", f"{w}/srv.csr", "-CA", f"{w}/ca.pem",
             "-CAkey", f"{w}/ca.key", "-CAcreateserial", "-out", f"{w}/srv.pem", "-days", "2",
             "-extfile", f"{w}/ext.cnf"])
        self.tls = True

    def build_topology(self):
        t, a = self.ns_t, self.ns_a
        for ns in (t, a):
            run(["ip", "netns", "add", ns])
            self.namespaces.append(ns)
            self.ip(ns, "link", "set", "lo", "up")
        for name in ("vpc", "egw", "pl"):
            run(["ip", "link", "add", f"{name}-t", "netns", t, "type", "veth",
                 "peer", "name", f"{name}-a", "netns", a])
        for ns, side in ((t, "t"), (a, "a")):
            for name in ("vpc", "egw", "pl"):
                # Link-local IPv6 only where a link carries IPv6; pl is an IPv4-only path.
                if name == "pl":
                    run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                         f"net.ipv6.conf.{name}-{side}.disable_ipv6=1"])
                self.ip(ns, "link", "set", f"{name}-{side}", "up")
        # task side
        self.ip(t, "addr", "add", f"{VPC_T4}/28", "dev", "vpc-t")
        self.ip(t, "addr", "add", f"{VPC_T6}/64", "dev", "vpc-t", "nodad")
        self.ip(t, "addr", "add", f"{EGW_T6}/64", "dev", "egw-t", "nodad")
        self.ip(t, "addr", "add", f"{PL_T4}/28", "dev", "pl-t")
        self.ip(t, "route", "add", "default", "via", VPC_ROUTER4, "dev", "vpc-t")
        self.ip(t, "-6", "route", "add", "default", "via", EGW_A6, "dev", "egw-t")
        self.ip(t, "route", "add", ENDPOINTS4, "via", PL_A4, "dev", "pl-t")
        # aws side
        for addr in (VPC_ROUTER4, VPC_DNS4):
            self.ip(a, "addr", "add", f"{addr}/28", "dev", "vpc-a")
        for addr in (VPC_ROUTER6, VPC_DNS6):
            self.ip(a, "addr", "add", f"{addr}/64", "dev", "vpc-a", "nodad")
        self.ip(a, "addr", "add", f"{EGW_A6}/64", "dev", "egw-a", "nodad")
        self.ip(a, "addr", "add", f"{PL_A4}/28", "dev", "pl-a")
        for addr in (WEB4, LEGACY4, S3_4, EC2_VPCE4, SVC_VPCE4):
            self.ip(a, "addr", "add", f"{addr}/32", "dev", "lo")
        for addr in (WEB6, S3_6):
            self.ip(a, "addr", "add", f"{addr}/128", "dev", "lo", "nodad")
        # Guards: count and drop anything addressed outside the documentation prefixes.
        for ns in (t, a):
            self.nft(ns, f"""
table inet dp_guard {{
  counter stray {{ }}
  chain out {{
    type filter hook output priority 0; policy accept;
    oifname "lo" accept
    ip daddr {ALLOWED4} accept
    ip6 daddr {ALLOWED6} accept
    meta nfproto {{ ipv4, ipv6 }} counter name stray drop
  }}
}}
""")
        # The endpoint ENIs answer only what arrives over the PrivateLink path (as in a VPC, where
        # nothing else routes to them): a task whose pl link is gone gets silence, not a detour.
        self.nft(a, f"""
table inet dp_vpc {{
  chain pre {{
    type filter hook prerouting priority -150; policy accept;
    iifname != {{ "pl-a", "lo" }} ip daddr {ENDPOINTS4} drop
  }}
}}
""")

    def write_hosts(self, aaaa=True):
        lines = [
            f"{WEB4} web.dualstack.test",
            f"{LEGACY4} legacy.v4only.test",
            f"{NAT4} ipv4.public.test",
            f"{S3_4} {S3_NAME}",
            f"{EC2_VPCE4} {EC2_NAME}",
            f"{SVC_VPCE4} api.vpce-svc.test",
        ]
        if aaaa:
            lines += [f"{WEB6} web.dualstack.test", f"{S3_6} {S3_NAME}"]
        path = f"{self.work}/hosts"
        with open(path + ".tmp", "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(path + ".tmp", 0o644)
        os.replace(path + ".tmp", path)

    def start_dnsmasq(self):
        w = self.work
        with open(f"{w}/dnsmasq.conf", "w") as f:
            f.write(f"port=53\naddn-hosts={w}/hosts\nlocal=/test/\nlocal=/amazonaws.com/\n"
                    f"local-ttl=0\nlog-facility={w}/dnsmasq.syslog\npid-file={w}/dnsmasq.pid\n")
        os.chmod(f"{w}/dnsmasq.conf", 0o644)
        cmd = ["ip", "netns", "exec", self.ns_a, "dnsmasq", "--no-daemon",
               f"--conf-file={w}/dnsmasq.conf", "--no-resolv", "--no-hosts", "--bind-interfaces",
               f"--listen-address={VPC_DNS4}", f"--listen-address={VPC_DNS6}"]
        self.procs["dnsmasq"] = Proc("dnsmasq", cmd, f"{w}/dnsmasq.log", stdin_pipe=False)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            if self.dns_query("web.dualstack.test", 1) == (0, 1):
                return
            if not self.procs["dnsmasq"].alive():
                break
            time.sleep(0.2)
        raise SuiteError(f"dnsmasq did not answer; see {w}/dnsmasq.log")

    def dns_query(self, name, qtype):
        """(rcode, answers) of one query to the resolver, from the task namespace; None if silent."""
        def q():
            pkt = struct.pack(">HHHHHH", 0x4450, 0x0100, 1, 0, 0, 0)
            pkt += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
            pkt += struct.pack(">HH", qtype, 1)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(1)
                try:
                    s.sendto(pkt, (VPC_DNS4, 53))
                    d = s.recv(512)
                except OSError:
                    return None
            flags, _, an = struct.unpack(">HHH", d[2:8])
            return flags & 0xF, an
        return self.in_ns(self.ns_t, q)

    def start_services(self):
        cmd = ["ip", "netns", "exec", self.ns_a, sys.executable, f"{HERE}/services.py",
               "--max-seconds", "3600"]
        if self.tls:
            cmd += ["--cert", f"{self.work}/srv.pem", "--key", f"{self.work}/srv.key"]
        p = self.procs["services"] = Proc("services", cmd, f"{self.work}/services.log")
        if not p.wait_for_line("ready", 15):
            raise SuiteError(f"the service listeners did not start; see {self.work}/services.log")

    def moto_command(self):
        try:
            import moto.server  # noqa: F401
            return [sys.executable, "-m", "moto.server"]
        except ImportError:
            path = shutil.which("moto_server")
            return [path] if path else None

    def start_moto(self):
        if self.args.no_moto:
            log("NOTE: --no-moto: the s3/ec2 targets are left out")
            return
        if not self.tls:
            log("NOTE: no TLS: the s3/ec2 targets (moto over HTTPS) are left out")
            return
        base = self.moto_command()
        if base is None:
            log("NOTE: moto (pip package moto[server]) is not installed: the s3/ec2 targets are left out")
            return
        cmd = ["ip", "netns", "exec", self.ns_a, *base, "-H", "::", "-p", str(MOTO_PORT),
               "-c", f"{self.work}/srv.pem", "-k", f"{self.work}/srv.key"]
        env = dict(os.environ, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   AWS_DEFAULT_REGION="us-east-1")
        p = self.procs["moto"] = Proc("moto", cmd, f"{self.work}/moto.log", stdin_pipe=False, env=env)
        ctx = ssl.create_default_context(cafile=f"{self.work}/ca.pem")

        def warm(host, path):
            # Through the service address and name, so the TLS name is checked too. Unsigned
            # requests are fine: moto loads its S3/EC2 backends on the first call (seconds),
            # which would otherwise be the agent's first probes.
            addr = {S3_NAME: S3_4, EC2_NAME: EC2_VPCE4}[host]
            with socket.create_connection((addr, MOTO_PORT), timeout=10) as raw:
                with ctx.wrap_socket(raw, server_hostname=host) as s:
                    s.settimeout(20)
                    s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                    return s.recv(64)
        end = time.monotonic() + 60
        last = None
        while time.monotonic() < end and p.alive():
            try:
                # From aws itself: the endpoint ENI drops what does not come over pl.
                self.in_ns(self.ns_a, warm, S3_NAME, "/", timeout=30)
                self.in_ns(self.ns_a, warm, EC2_NAME, "/?Action=DescribeRegions&Version=2016-11-15", timeout=30)
                self.moto = True
                return
            except (OSError, concurrent.futures.TimeoutError) as e:
                last = e
                time.sleep(0.5)
        raise SuiteError(f"moto did not answer ({last}); see {self.work}/moto.log")

    def define_targets(self):
        t = []
        web_checks = ["dns", "tcp", "tls", "http"] if self.tls else ["dns", "tcp", "http"]
        t.append(Target("web", web_checks, ["ipv4", "ipv6"], path="v4: vpc router, v6: egress-only gw"))
        t.append(Target("v4only", ["dns", "tcp", "http"], ["ipv4", "ipv6"],
                        {"ipv4": "reachable", "ipv6": "unreachable"}, path="A-only name"))
        vpce_checks = ["dns", "private_dns", "tcp", "tls", "http"] if self.tls else ["dns", "private_dns", "tcp", "http"]
        t.append(Target("vpce-svc", vpce_checks, ["ipv4"], path="PrivateLink"))
        if self.moto:
            t.append(Target("ec2-endpoint", ["dns", "private_dns", "tcp", "tls", "ec2"], ["ipv4"],
                            path="PrivateLink (moto)"))
            t.append(Target("s3-dualstack", ["dns", "tcp", "tls", "s3"], ["ipv4", "ipv6"],
                            path="v4: vpc router, v6: egress-only gw (moto)"))
        t.append(Target("no-nat-v4", ["dns", "tcp", "http"], ["ipv4"], {"ipv4": "unreachable"},
                        path="public IPv4, no NAT"))
        self.targets = t

    def write_config(self):
        w = self.work
        ca = f'\n    tls: {{ ca_file: "{w}/ca.pem" }}' if self.tls else ""
        scheme = "https" if self.tls else "http"
        port = 443 if self.tls else 80
        cidrs = f'\n    private_dns: {{ cidrs: ["{ENDPOINTS4}"] }}'
        by = {x.name: x for x in self.targets}

        def checks(name):
            return "[" + ", ".join(by[name].checks) + "]"
        doc = f"""# written by tests/netns/run.py
interval: {self.interval}s
timeout: {self.timeout}s
families: [ipv4, ipv6]
resolver:
  nameservers: ["{VPC_DNS4}:53"]
targets:
  - name: web
    host: web.dualstack.test
    port: {port}
    checks: {checks('web')}
    http: {{ path: /healthz, scheme: {scheme} }}{ca}
  - name: v4only
    host: legacy.v4only.test
    port: 80
    checks: {checks('v4only')}
    http: {{ path: /healthz, scheme: http }}
    expect: {{ ipv4: reachable, ipv6: unreachable }}
  - name: vpce-svc
    host: api.vpce-svc.test
    port: {port}
    families: [ipv4]
    checks: {checks('vpce-svc')}
    http: {{ path: /healthz, scheme: {scheme} }}{cidrs}{ca}
  - name: no-nat-v4
    host: ipv4.public.test
    port: 80
    families: [ipv4]
    checks: {checks('no-nat-v4')}
    http: {{ path: /healthz, scheme: http }}
    expect: {{ ipv4: unreachable }}
"""
        if self.moto:
            doc += f"""  - name: ec2-endpoint
    aws: {{ service: ec2, region: us-east-1, dual_stack: false }}
    port: {MOTO_PORT}
    families: [ipv4]
    checks: {checks('ec2-endpoint')}{cidrs}{ca}
  - name: s3-dualstack
    aws: {{ service: s3, region: us-east-1 }}
    port: {MOTO_PORT}
    checks: {checks('s3-dualstack')}{ca}
"""
        with open(f"{w}/dualprobe.yaml", "w") as f:
            f.write(doc)
        out = subprocess.run([self.args.bin, "check-config", f"{w}/dualprobe.yaml"],
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise SuiteError(f"dualprobe check-config rejected the suite's config:\n{out.stderr}{out.stdout}")

    def start_agent(self):
        w = self.work
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": w,
            "DUALPROBE_LOG": "info",
            # Static credentials for moto; no instance-metadata lookups, no profile files.
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": f"{w}/no-aws-config",
            "AWS_SHARED_CREDENTIALS_FILE": f"{w}/no-aws-credentials",
        }
        cmd = ["ip", "netns", "exec", self.ns_t, os.path.abspath(self.args.bin), "run",
               "--config", f"{w}/dualprobe.yaml", "--listen", f"127.0.0.1:{METRICS_PORT}",
               "--log-format", "json"]
        self.agent_log = f"{w}/agent.log"
        self.procs["agent"] = Proc("agent", cmd, self.agent_log, stdin_pipe=False, env=env)
        end = time.monotonic() + 20
        while time.monotonic() < end:
            try:
                self.scrape()
                return
            except (OSError, concurrent.futures.TimeoutError):
                if not self.procs["agent"].alive():
                    break
                time.sleep(0.2)
        raise SuiteError(f"the agent did not serve /metrics; see {self.agent_log}")

    # -- agent access --
    def http_get(self, path, timeout=3):
        def get():
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            with opener.open(f"http://127.0.0.1:{METRICS_PORT}{path}", timeout=timeout) as r:
                return r.status, r.read().decode()
        return self.in_ns(self.ns_t, get, timeout=timeout + 2)

    def scrape(self):
        _, text = self.http_get("/metrics")
        return Snapshot(text, time.monotonic())

    def agent_alive(self):
        if not self.procs["agent"].alive():
            return False
        try:
            return self.http_get("/-/healthy")[0] == 200
        except (OSError, concurrent.futures.TimeoutError):
            return False

    def agent_log_lines(self):
        """The agent's JSON log records. A record can hold the key `target` twice (the event's
        field, then tracing's module path): every value is kept, in order, under `_targets`."""
        def pairs(items):
            d = dict(items)
            d["_targets"] = [v for k, v in items if k == "target"]
            return d
        out = []
        with open(self.agent_log, "rb") as f:
            for raw in f:
                try:
                    out.append(json.loads(raw, object_pairs_hook=pairs))
                except ValueError:
                    continue
        return out

    def stray_packets(self):
        total = 0
        for ns in self.namespaces:
            out = run(["ip", "netns", "exec", ns, "nft", "list", "counter", "inet", "dp_guard", "stray"],
                      check=False)
            m = re.search(r"packets (\d+)", out)
            total += int(m.group(1)) if m else 0
        return total

    # -- teardown --
    def teardown(self, keep):
        for name in ("agent", "relay", "moto", "services", "dnsmasq"):
            p = self.procs.pop(name, None)
            if p:
                try:
                    p.stop()
                except Exception as e:  # noqa: BLE001 - teardown goes on
                    log(f"teardown: stopping {name}: {e}")
        for ex in (self.exec_t, self.exec_a):
            if ex:
                ex.shutdown(wait=False, cancel_futures=True)
        for ns in reversed(self.namespaces):
            # Anything still inside (a process this suite started) goes first.
            for pid in run(["ip", "netns", "pids", ns], check=False).split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            run(["ip", "netns", "del", ns], check=False)
        self.namespaces = []
        if self.work and not keep:
            shutil.rmtree(self.work, ignore_errors=True)
        elif self.work:
            log(f"logs and config kept in {self.work}")


# ---- assertions ----------------------------------------------------------------------------------
class Check:
    """What scenarios share: healthy pairs, waiting, per-family deltas."""

    def __init__(self, suite):
        self.s = suite

    @property
    def iv(self):
        return self.s.interval

    def target(self, name):
        return next(t for t in self.s.targets if t.name == name)

    def pairs(self):
        return [(t, f) for t in self.s.targets for f in t.families]

    def pair_state(self, snap, t, f):
        """(healthy, description) of one pair in a snapshot."""
        met = snap.get("dualprobe_expectation_met", target=t.name, family=f)
        if t.expects(f) == "reachable":
            bad = [c for c in t.checks
                   if snap.get("dualprobe_probe_success", target=t.name, check=c, family=f) != 1]
            if bad:
                return False, f"{t.name}/{f}: not passing: {','.join(bad)}"
        if met != 1:
            return False, f"{t.name}/{f}: expectation_met={met}"
        return True, ""

    def healthy(self, snap, exclude=()):
        bad = [d for t, f in self.pairs() if (t.name, f) not in exclude
               for ok, d in [self.pair_state(snap, t, f)] if not ok]
        return not bad, "; ".join(bad)

    def wait(self, cond, deadline, poll=0.25):
        """Polls /metrics until cond(snap) -> (ok, detail) holds or `deadline` seconds pass.
        Returns (ok, seconds waited, snapshot, detail)."""
        start = time.monotonic()
        snap, detail = None, "no scrape"
        while True:
            try:
                snap = self.s.scrape()
                ok, detail = cond(snap)
                if ok:
                    return True, time.monotonic() - start, snap, detail
            except (OSError, concurrent.futures.TimeoutError) as e:
                detail = f"scrape failed: {e}"
            if time.monotonic() - start >= deadline:
                return False, time.monotonic() - start, snap, detail
            time.sleep(poll)

    def wait_healthy(self, deadline=None):
        return self.wait(lambda s: self.healthy(s), deadline or (2 * self.iv + self.s.timeout + 0.5))

    def unaffected(self, a, b, pairs):
        """Pairs that must not have failed between snapshots a and b, and must have run."""
        problems = []
        for t, f in pairs:
            if t.expects(f) != "reachable":
                if b.get("dualprobe_expectation_met", target=t.name, family=f) != 1:
                    problems.append(f"{t.name}/{f}: expectation no longer met")
                continue
            for c in t.checks:
                d = delta_results(a, b, t.name, c, f)
                bad = {k: v for k, v in d.items() if k not in ("ok", "aws_denied")}
                if bad:
                    problems.append(f"{t.name}/{f} {c}: {bad}")
            if not delta_results(a, b, t.name, t.checks[0], f):
                problems.append(f"{t.name}/{f}: no cycle ran")
        return problems


def fmt_pairs(pairs):
    return ",".join(f"{t.name}/{f}" for t, f in pairs)


class Scenarios:
    def __init__(self, suite):
        self.s = suite
        self.c = Check(suite)

    @property
    def iv(self):
        return self.s.interval

    def sel(self, names=None, family=None):
        return [(t, f) for t, f in self.c.pairs()
                if (names is None or t.name in names) and (family is None or f == family)]

    def others(self, affected):
        keys = {(t.name, f) for t, f in affected}
        return [(t, f) for t, f in self.c.pairs() if (t.name, f) not in keys]

    def fault_scenario(self, apply, revert, affected, expect_fn, deadline, hold=None, extra=None,
                       after_hit=0.0):
        """Common shape: healthy -> apply -> every affected pair shows expect_fn within `deadline`,
        the rest unaffected for the whole hold -> revert -> healthy again within two intervals.
        expect_fn(snap0, snap, t, f) -> (ok, seen). Returns (ok, line)."""
        ok, _, _, detail = self.c.wait_healthy(deadline=3 * self.iv + self.s.timeout)
        if not ok:
            return False, f"not healthy before the fault: {detail}"
        snap0 = self.s.scrape()
        t0 = time.monotonic()
        apply()
        try:
            def cond(snap):
                seen, missing = {}, []
                for t, f in affected:
                    good, what = expect_fn(snap0, snap, t, f)
                    if good:
                        seen.setdefault(what, []).append(f"{t.name}/{f}")
                    else:
                        missing.append(f"{t.name}/{f} {what}")
                if missing:
                    return False, "; ".join(missing)
                return True, "; ".join(f"{what} on {','.join(p)}" for what, p in seen.items())
            ok, waited, snap_hit, detail = self.c.wait(cond, deadline)
            if not ok:
                return False, f"within {deadline:.1f}s expected on {fmt_pairs(affected)}, missing: {detail}"
            seen = detail
            # Hold the fault for two intervals in all so every other pair runs at least once.
            # (And for `after_hit` seconds past the first sighting, when `extra` needs more runs.)
            rest = max((hold if hold is not None else 2 * self.iv) - (time.monotonic() - t0),
                       after_hit - (time.monotonic() - t0 - waited))
            if rest > 0:
                time.sleep(rest)
            snap1 = self.s.scrape()
            probs = self.c.unaffected(snap0, snap1, self.others(affected))
            if probs:
                return False, f"saw {seen} after {waited:.1f}s, but others were affected: {'; '.join(probs)}"
            extra_line = ""
            if extra:
                good, extra_line = extra(snap0, snap_hit, snap1)
                if not good:
                    return False, f"saw {seen} after {waited:.1f}s, but {extra_line}"
        finally:
            revert()
        ok, rec, _, detail = self.c.wait_healthy()
        if not ok:
            return False, f"saw {seen} after {waited:.1f}s; no recovery within {rec:.1f}s: {detail}"
        tail = f"; {extra_line}" if extra_line else ""
        return True, (f"{seen} after {waited:.1f}s; others unaffected{tail}; recovered in {rec:.1f}s")

    # 1
    def healthy(self):
        ok, waited, _, detail = self.c.wait_healthy(deadline=self.s.args.warmup)
        if not ok:
            return False, f"not healthy after {waited:.0f}s: {detail}"
        a = self.s.scrape()
        time.sleep(2 * self.iv)
        b = self.s.scrape()
        probs = self.c.unaffected(a, b, self.c.pairs())
        ok2, detail2 = self.c.healthy(b)
        if probs or not ok2:
            return False, "failures while healthy: " + "; ".join(probs + [detail2])
        reach = [p for p in self.c.pairs() if p[0].expects(p[1]) == "reachable"]
        unreach = [f"{t.name}/{f}" for t, f in self.c.pairs() if t.expects(f) == "unreachable"]
        return True, (f"{len(reach)} pairs pass every check ({fmt_pairs(reach)}); expectation_met=1 on all "
                      f"{len(self.c.pairs())} pairs incl. expected-unreachable {','.join(unreach)}")

    def reason_expect(self, check, reasons, skipped_after=True):
        def fn(s0, s, t, f):
            d = delta_results(s0, s, t.name, check, f)
            hit = [r for r in reasons if d.get(r)]
            if not hit or s.get("dualprobe_probe_success", target=t.name, check=check, family=f) != 0:
                return False, f"{check}={d or 'no new result'}"
            if skipped_after:
                later = t.checks[t.checks.index(check) + 1:]
                for c in later:
                    if not delta_results(s0, s, t.name, c, f).get("skipped"):
                        return False, f"{check}={hit[0]} but {c} not skipped"
            return True, f"{check}={hit[0]}"
        return fn

    def v6_public(self):
        return [(t, f) for t, f in self.sel(family="ipv6") if t.expects(f) == "reachable"]

    # 2
    def v6_route_removed(self):
        t = self.s.ns_t
        return self.fault_scenario(
            apply=lambda: self.s.ip(t, "-6", "route", "del", "default"),
            revert=lambda: self.s.ip(t, "-6", "route", "replace", "default", "via", EGW_A6, "dev", "egw-t"),
            affected=self.v6_public(),
            expect_fn=self.reason_expect("tcp", ["unreachable"]),
            deadline=self.iv + 0.5)

    # 3
    def v6_blackholed(self):
        a = self.s.ns_a
        timeout = self.s.timeout
        affected = self.v6_public()

        def apply():
            self.s.nft(a, f"""
table inet dp_fault {{
  chain pre {{
    type filter hook prerouting priority -200; policy accept;
    iifname "egw-a" ip6 daddr {PUBLIC6} drop
  }}
}}
""")

        def revert():
            run(["ip", "netns", "exec", a, "nft", "delete", "table", "inet", "dp_fault"], check=False)

        def deadline_honoured(s0, s_hit, s1):
            return self.deadline_honoured(s_hit, s1, affected, "tcp")

        return self.fault_scenario(apply, revert, affected, self.reason_expect("tcp", ["timeout"]),
                                   deadline=2 * self.iv + 0.5, extra=deadline_honoured,
                                   after_hit=self.iv + timeout + 0.5)

    def deadline_honoured(self, s_hit, s1, pairs, check):
        """Durations of `check` runs wholly inside a fault that makes them time out (between the
        first timeout seen and the end of the hold): every one must be a timeout, and since none
        can end before the deadline, sum - (n-1) x timeout bounds the longest; it must stay within
        timeout + margin."""
        timeout, margin = self.s.timeout, self.s.args.deadline_margin
        n_all = total_all = 0.0
        worst = 0.0
        for t, f in pairs:
            lab = dict(target=t.name, check=check, family=f)
            n = s1.get("dualprobe_probe_duration_seconds_count", **lab) - s_hit.get(
                "dualprobe_probe_duration_seconds_count", **lab)
            total = s1.get("dualprobe_probe_duration_seconds_sum", **lab) - s_hit.get(
                "dualprobe_probe_duration_seconds_sum", **lab)
            d = delta_results(s_hit, s1, t.name, check, f)
            if n < 1:
                return False, f"no {check} run of {t.name}/{f} inside the fault window"
            if d.get("timeout", 0) != n:
                return False, f"{t.name}/{f} {check} results in the window: {d}"
            longest = total - (n - 1) * timeout
            worst = max(worst, longest)
            n_all += n
            total_all += total
            if longest > timeout + margin:
                return False, (f"{t.name}/{f} {check} took up to {longest:.3f}s with a {timeout}s deadline "
                               f"(allowed {timeout + margin:.2f}s)")
        return True, (f"deadline honoured: {n_all:.0f} {check} runs, mean {total_all / n_all * 1000:.0f}ms, "
                      f"longest <= {worst * 1000:.0f}ms (timeout {timeout * 1000:.0f}ms)")

    # 4
    def privatelink_dropped(self):
        t = self.s.ns_t
        affected = [(x, f) for x, f in self.c.pairs() if "private_dns" in x.checks]

        def revert():
            self.s.ip(t, "link", "set", "pl-t", "up")
            self.s.ip(t, "route", "replace", ENDPOINTS4, "via", PL_A4, "dev", "pl-t")

        def expect(s0, s, x, f):
            d = delta_results(s0, s, x.name, "tcp", f)
            dns_ok = (delta_results(s0, s, x.name, "private_dns", f).get("ok")
                      and s.get("dualprobe_probe_success", target=x.name, check="private_dns", family=f) == 1)
            bad = [r for r in d if r not in ("ok",)]
            if not bad or s.get("dualprobe_probe_success", target=x.name, check="tcp", family=f) != 0:
                return False, f"tcp={d or 'no new result'}"
            if not dns_ok:
                return False, f"tcp={bad[0]} but private_dns did not pass"
            return True, f"dns+private_dns ok, tcp={bad[0]}"
        return self.fault_scenario(
            apply=lambda: self.s.ip(t, "link", "set", "pl-t", "down"),
            revert=revert, affected=affected, expect_fn=expect, deadline=2 * self.iv + 0.5)

    # 5
    def aaaa_withdrawn(self):
        def hup(aaaa):
            self.s.write_hosts(aaaa=aaaa)
            self.s.procs["dnsmasq"].signal(signal.SIGHUP)

        affected = self.v6_public()
        base = self.reason_expect("dns", ["nodata"])

        def expect(s0, s, t, f):
            ok, what = base(s0, s, t, f)
            if ok and s.get("dualprobe_dns_answers", target=t.name, family=f) != 0:
                return False, "dns_answers not 0"
            return ok, what + (", later checks skipped" if ok else "")
        return self.fault_scenario(lambda: hup(False), lambda: hup(True), affected, expect,
                                   deadline=2 * self.iv + 0.5)

    # 6
    def dns_down(self):
        s = self.s
        affected = [(t, f) for t, f in self.c.pairs() if "dns" in t.checks]
        def apply():
            s.procs["dnsmasq"].stop()
            del s.procs["dnsmasq"]

        def revert():
            if "dnsmasq" not in s.procs:
                s.start_dnsmasq()

        def expect(s0, snap, t, f):
            d = delta_results(s0, snap, t.name, "dns", f)
            if not d.get("timeout") or snap.get("dualprobe_probe_success", target=t.name, check="dns", family=f) != 0:
                return False, f"dns={d or 'no new result'}"
            return True, "dns=timeout"

        def still_running(s0, s_hit, s1):
            up = s.agent_alive()
            if not up:
                return False, "agent is not healthy"
            good, line = self.deadline_honoured(s_hit, s1, affected, "dns")
            return good, f"agent kept running (/-/healthy 200); {line}"

        return self.fault_scenario(apply, revert, affected, expect, deadline=2 * self.iv + 0.5,
                                   extra=still_running, after_hit=self.iv + s.timeout + 0.5)

    # 7
    def delay(self):
        s = self.s
        delay_ms = s.args.delay_ms
        v6 = [p for p in self.v6_public() if "tcp" in p[0].checks]
        v4 = [(t, f) for t, f in self.sel(family="ipv4") if t.expects(f) == "reachable" and "tcp" in t.checks]
        ok, _, _, detail = self.c.wait_healthy(deadline=3 * self.iv + s.timeout)
        if not ok:
            return False, f"not healthy before the fault: {detail}"

        def mean_tcp(a, b, pairs):
            n = tot = 0.0
            for t, f in pairs:
                lab = dict(target=t.name, check="tcp", family=f)
                n += b.get("dualprobe_probe_duration_seconds_count", **lab) - a.get("dualprobe_probe_duration_seconds_count", **lab)
                tot += b.get("dualprobe_probe_duration_seconds_sum", **lab) - a.get("dualprobe_probe_duration_seconds_sum", **lab)
            return (tot / n if n else None), int(n)

        window = s.args.delay_window * self.iv
        a = s.scrape()
        time.sleep(window)
        b = s.scrape()
        base6, n6 = mean_tcp(a, b, v6)
        base4, n4 = mean_tcp(a, b, v4)
        if not n6 or not n4:
            return False, "no tcp samples in the baseline window"
        t, aws = s.ns_t, s.ns_a
        relay = s.procs["relay"] = Proc("relay", [
            sys.executable, f"{HERE}/delay_relay.py", "--ns-a", t, "--dev-a", "dly-t", "--ns-b", aws,
            "--dev-b", "dly-a", "--delay-ms", str(delay_ms / 2), "--max-seconds", "300"],
            f"{s.work}/relay.log")
        try:
            if not relay.wait_for_line("ready", 10):
                return False, f"the delay relay did not start; see {s.work}/relay.log"
            s.ip(t, "link", "set", "dly-t", "up")
            s.ip(aws, "link", "set", "dly-a", "up")
            s.ip(t, "addr", "add", f"{DLY_T6}/128", "dev", "dly-t", "nodad")
            # The family's public traffic takes the tun path both ways: out via dly-t (source
            # DLY_T6), back via dly-a (the route to DLY_T6).
            s.ip(t, "-6", "route", "add", PUBLIC6, "dev", "dly-t", "src", DLY_T6)
            s.ip(aws, "-6", "route", "add", f"{DLY_T6}/128", "dev", "dly-a")
            # Let cycles that started before the delay finish, then measure.
            time.sleep(self.iv + s.timeout)
            c = s.scrape()
            time.sleep(window)
            d = s.scrape()
            slow6, m6 = mean_tcp(c, d, v6)
            slow4, m4 = mean_tcp(c, d, v4)
            if not m6 or not m4:
                return False, "no tcp samples in the delayed window"
            rise6, rise4 = slow6 - base6, slow4 - base4
            failed = [f"{x.name}/{f}" for x, f in v6 + v4
                      if d.get("dualprobe_probe_success", target=x.name, check="tcp", family=f) != 1]
            seen = (f"ipv6 tcp mean {base6 * 1000:.1f}ms -> {slow6 * 1000:.1f}ms (+{rise6 * 1000:.1f}ms, n={m6}), "
                    f"ipv4 {base4 * 1000:.1f}ms -> {slow4 * 1000:.1f}ms ({rise4 * 1000:+.1f}ms, n={m4})")
        finally:
            # Routes first (packets in flight still get through), then the relay; its tun
            # devices, and whatever still points at them, go with it.
            s.ip(t, "-6", "route", "del", PUBLIC6, "dev", "dly-t", check=False)
            s.ip(aws, "-6", "route", "del", f"{DLY_T6}/128", "dev", "dly-a", check=False)
            relay.stop()
            s.procs.pop("relay", None)
        tol = 0.1 * delay_ms / 1000
        if abs(rise6 - delay_ms / 1000) > tol:
            return False, f"{seen}: ipv6 rise not {delay_ms}ms +-10%"
        if abs(rise4) > tol:
            return False, f"{seen}: ipv4 changed"
        if failed:
            return False, f"{seen}: tcp failing on {','.join(failed)}"
        ok, rec, _, detail = self.c.wait_healthy()
        if not ok:
            return False, f"{seen}; no recovery: {detail}"
        time.sleep(self.iv + s.timeout)  # cycles that started on the delayed path end first
        e = s.scrape()
        time.sleep(window / 2)
        f_ = s.scrape()
        after6, _ = mean_tcp(e, f_, v6)
        if after6 is None or after6 - base6 > tol:
            return False, f"{seen}; after the relay stopped ipv6 tcp mean is {after6 if after6 is None else f'{after6 * 1000:.1f}ms'}"
        return True, f"{seen}; back to {after6 * 1000:.1f}ms after removal"

    # 8
    def expectation_flip(self):
        aws = self.s.ns_a
        nat = [(t, f) for t, f in self.c.pairs() if t.expects(f) == "unreachable" and t.families == ["ipv4"]]
        if not nat:
            return False, "no expect-unreachable ipv4 target configured"

        def expect(s0, s, t, f):
            met = s.get("dualprobe_expectation_met", target=t.name, family=f)
            tcp = s.get("dualprobe_probe_success", target=t.name, check="tcp", family=f)
            if met == 0 and tcp == 1:
                return True, "tcp now passes, expectation_met=0"
            return False, f"expectation_met={met} tcp success={tcp}"
        return self.fault_scenario(
            apply=lambda: self.s.ip(aws, "addr", "add", f"{NAT4}/32", "dev", "lo"),
            revert=lambda: self.s.ip(aws, "addr", "del", f"{NAT4}/32", "dev", "lo", check=False),
            affected=nat, expect_fn=expect, deadline=2 * self.iv + 0.5)

    # 9
    def flapping(self):
        s = self.s
        duration, step = s.args.flap_seconds, s.args.flap_step
        t, aws = s.ns_t, s.ns_a
        ok, _, _, detail = self.c.wait_healthy(deadline=3 * self.iv + s.timeout)
        if not ok:
            return False, f"not healthy before flapping: {detail}"
        v6_pairs = self.v6_public()
        pl_pairs = [(x, f) for x, f in self.c.pairs() if "private_dns" in x.checks]
        before = s.scrape()
        rss0 = before.get("process_resident_memory_bytes")
        fds0 = before.get("process_open_fds")
        if rss0 is None or fds0 is None:
            return False, "process_resident_memory_bytes / process_open_fds missing"
        state = {"v6": None, "pl": False}
        periods = {"v6": 0, "pl": 0}

        def v6_on(kind):
            if kind == "route":
                s.ip(t, "-6", "route", "del", "default")
            else:
                s.nft(aws, f"""
table inet dp_fault {{
  chain pre {{
    type filter hook prerouting priority -200; policy accept;
    iifname "egw-a" ip6 daddr {PUBLIC6} drop
  }}
}}
""")
            state["v6"] = kind
            periods["v6"] += 1

        def v6_off():
            if state["v6"] == "route":
                s.ip(t, "-6", "route", "replace", "default", "via", EGW_A6, "dev", "egw-t")
            elif state["v6"] == "nft":
                run(["ip", "netns", "exec", aws, "nft", "delete", "table", "inet", "dp_fault"], check=False)
            state["v6"] = None

        def pl_on():
            s.ip(t, "link", "set", "pl-t", "down")
            state["pl"] = True
            periods["pl"] += 1

        def pl_off():
            s.ip(t, "link", "set", "pl-t", "up")
            s.ip(t, "route", "replace", ENDPOINTS4, "via", PL_A4, "dev", "pl-t")
            state["pl"] = False

        rss_max, fds_max, samples = rss0, fds0, 0
        start_wall = time.time()
        start = time.monotonic()
        steps = max(4, int(duration // step))
        steps += steps % 4 and (4 - steps % 4)  # whole on/off cycles of both faults
        crashed = None
        try:
            for k in range(steps):
                # Even steps toggle IPv6 (route removal and blackhole, in turn), odd steps the
                # PrivateLink link: a transition every `step` seconds, each fault on for 2 steps.
                if k % 2 == 0:
                    if state["v6"] is None:
                        v6_on("route" if periods["v6"] % 2 == 0 else "nft")
                    else:
                        v6_off()
                else:
                    pl_off() if state["pl"] else pl_on()
                end = start + (k + 1) * step
                while time.monotonic() < end:
                    time.sleep(min(1.0, max(0.0, end - time.monotonic())))
                if not s.procs["agent"].alive():
                    crashed = f"agent exited ({s.procs['agent'].p.returncode}) at step {k}"
                    break
                try:
                    snap = s.scrape()
                    rss_max = max(rss_max, snap.get("process_resident_memory_bytes") or 0)
                    fds_max = max(fds_max, snap.get("process_open_fds") or 0)
                    samples += 1
                except (OSError, concurrent.futures.TimeoutError) as e:
                    crashed = f"/metrics did not answer at step {k}: {e}"
                    break
        finally:
            if state["v6"]:
                v6_off()
            if state["pl"]:
                pl_off()
        if crashed:
            return False, crashed
        ok, rec, after, detail = self.c.wait_healthy()
        if not ok:
            return False, f"no recovery after flapping: {detail}"
        time.sleep(self.iv)  # a quiet interval so pooled connections settle
        after = s.scrape()
        end_wall = time.time()
        rss1, fds1 = after.get("process_resident_memory_bytes"), after.get("process_open_fds")
        problems = []
        # The metrics against the kernel's own view of the agent process.
        pid = s.procs["agent"].p.pid
        try:
            with open(f"/proc/{pid}/status") as f:
                vmrss = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024
            nfd = len(os.listdir(f"/proc/{pid}/fd"))
            if abs(vmrss - rss1) > 0.2 * vmrss:
                problems.append(f"process_resident_memory_bytes {rss1:.0f} but /proc says {vmrss}")
            if abs(nfd - fds1) > 3:
                problems.append(f"process_open_fds {fds1:.0f} but /proc/{pid}/fd has {nfd}")
        except (OSError, AttributeError) as e:
            problems.append(f"cannot read /proc/{pid}: {e}")
        rss_limit = rss0 * 1.5 + 16 * 2**20
        if rss_max > rss_limit:
            problems.append(f"RSS grew to {rss_max / 2**20:.1f}MiB (limit {rss_limit / 2**20:.1f}MiB)")
        if fds1 > fds0 + s.args.fd_slack:
            problems.append(f"open fds {fds0:.0f} -> {fds1:.0f}")
        # Transitions: each affected pair logs exactly one "now failing" per fault period and one
        # "recovered" after it; nobody else logs a transition.
        expected = {(x.name, f): periods["v6"] for x, f in v6_pairs}
        expected.update({(x.name, f): periods["pl"] for x, f in pl_pairs})
        seen = {}
        for rec_ in s.agent_log_lines():
            ts = parse_ts(rec_.get("timestamp"))
            if ts is None or ts < start_wall or ts > end_wall:
                continue
            msg = rec_.get("message", "")
            kind = ("fail" if msg == "now failing" else "recover" if msg.startswith("recovered")
                    else "reason" if msg.startswith("still failing") else None)
            if kind is None:
                continue
            key = (log_target(rec_), rec_.get("family"))
            seen.setdefault(key, []).append(kind)
        for key, n in expected.items():
            kinds = seen.get(key, [])
            # A failing pair may log its reason changing (e.g. unreachable -> timeout when a toggle
            # lands mid-cycle): once per change, and only between "now failing" and "recovered".
            collapsed, failing = [], False
            for k in kinds:
                if k == "reason" and failing:
                    continue
                failing = k == "fail" if k in ("fail", "recover") else failing
                collapsed.append(k)
            want = ["fail", "recover"] * n
            if collapsed != want:
                problems.append(f"{key[0]}/{key[1]} logged {summarize(kinds)}, expected {n} x fail+recover")
        for key, kinds in seen.items():
            if key not in expected:
                problems.append(f"{key[0]}/{key[1]} (not faulted) logged {summarize(kinds)}")
        line = (f"{steps} toggles in {time.monotonic() - start:.0f}s (v6 periods {periods['v6']}, pl periods "
                f"{periods['pl']}); alive; RSS {rss0 / 2**20:.1f} -> max {rss_max / 2**20:.1f} -> "
                f"{rss1 / 2**20:.1f}MiB; fds {fds0:.0f} -> max {fds_max:.0f} -> {fds1:.0f}; "
                f"transitions logged once each on {len(expected)} pairs")
        if problems:
            return False, line + ": " + "; ".join(problems)
        return True, line

    # extra: the guard
    def guard(self):
        n = self.s.stray_packets()
        if n:
            return False, (f"{n} packet(s) were sent to addresses outside the documentation prefixes "
                           f"and dropped (nft counter dp_guard/stray)")
        return True, "no packet to any address outside 192.0.2.0/24, 198.51.100.0/24, 2001:db8::/32"


def log_target(rec):
    """The dualprobe target a transition record names: the event's `target` field, which
    tracing's JSON output follows with its own `target` (the module path) under the same key."""
    values = [v for v in rec.get("_targets", []) if not str(v).startswith("dualprobe::")]
    return values[0] if values else rec.get("target")


def summarize(kinds):
    if not kinds:
        return "nothing"
    out, prev, n = [], None, 0
    for k in kinds + [None]:
        if k == prev:
            n += 1
            continue
        if prev is not None:
            out.append(f"{prev}x{n}" if n > 1 else prev)
        prev, n = k, 1
    return ",".join(out)


def parse_ts(ts):
    if not isinstance(ts, str):
        return None
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)?", ts)
    if not m:
        return None
    import datetime
    base = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S")
    tz = m.group(3) or "Z"
    off = 0 if tz == "Z" else (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60) * (1 if tz[0] == "+" else -1)
    return base.replace(tzinfo=datetime.timezone.utc).timestamp() - off + float(m.group(2) or 0)


SCENARIOS = [
    (1, "healthy", "healthy"),
    (2, "ipv6-egress-route-removed", "v6_route_removed"),
    (3, "ipv6-blackholed", "v6_blackholed"),
    (4, "privatelink-ipv4-dropped", "privatelink_dropped"),
    (5, "aaaa-withdrawn", "aaaa_withdrawn"),
    (6, "dns-server-down", "dns_down"),
    (7, "ipv6-delay", "delay"),
    (8, "expectation-flip", "expectation_flip"),
    (9, "flapping", "flapping"),
    (10, "egress-guard", "guard"),
]


def skip(reason):
    log(f"SKIPPED: {reason}")
    sys.exit(1 if os.environ.get("CI") else 0)


def preflight(args):
    if os.geteuid() != 0:
        skip("the netns suite needs root (network namespaces, veth, nftables): run it with sudo")
    if shutil.which("ip") is None:
        skip("`ip` (iproute2) is not installed")
    p = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if p.returncode != 0:
        skip(f"`ip netns` does not work here: {p.stderr.strip()}")
    missing = [t for t in ("nft", "dnsmasq") if shutil.which(t) is None]
    if missing:
        skip(f"{' and '.join(missing)} not installed (apt-get install nftables dnsmasq)")
    if not os.path.exists("/dev/net/tun"):
        log("NOTE: /dev/net/tun is missing: scenario 7 (delay) will fail")
    if not (os.path.isfile(args.bin) and os.access(args.bin, os.X_OK)):
        profile = "--release " if "release" in args.bin else ""
        log(f"error: no dualprobe binary at {args.bin}; build it with `cargo build {profile}--bin dualprobe` "
            f"(or pass --bin target/debug/dualprobe)")
        sys.exit(2)


def main():
    ap = argparse.ArgumentParser(description="dualprobe end-to-end fault tests in network namespaces "
                                             "(docs/netns-suite.md)")
    ap.add_argument("--bin", default=os.path.join(REPO, "target/release/dualprobe"),
                    help="the dualprobe binary (default: target/release/dualprobe)")
    ap.add_argument("--quick", action="store_true", help="short flapping (30 s) and measuring windows")
    ap.add_argument("--flap-seconds", type=float, help="how long scenario 9 toggles faults (default 120, --quick 30)")
    ap.add_argument("--flap-step", type=float, default=4.0, help="seconds between fault toggles in scenario 9")
    ap.add_argument("--interval", type=int, default=2, help="probe interval, seconds (default 2)")
    ap.add_argument("--timeout", type=int, default=1, help="probe timeout, seconds (default 1)")
    ap.add_argument("--delay-ms", type=float, default=200.0, help="round-trip delay added in scenario 7")
    ap.add_argument("--delay-window", type=float, default=None,
                    help="intervals measured before/with the delay (default 4, --quick 3)")
    ap.add_argument("--deadline-margin", type=float, default=0.25,
                    help="how far past its timeout a blackholed check may end (seconds)")
    ap.add_argument("--fd-slack", type=int, default=4, help="open fds allowed above the start after flapping")
    ap.add_argument("--warmup", type=float, default=60.0, help="seconds to wait for the first healthy state")
    ap.add_argument("--only", help="comma-separated scenario numbers to run (1 always runs first)")
    ap.add_argument("--no-moto", action="store_true", help="leave out the moto (S3/EC2) targets")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (logs, config) also on success")
    args = ap.parse_args()
    if args.flap_seconds is None:
        args.flap_seconds = 30.0 if args.quick else 120.0
    if args.delay_window is None:
        args.delay_window = 3 if args.quick else 4
    if not os.path.isabs(args.bin):
        args.bin = os.path.abspath(args.bin)
    preflight(args)

    wanted = None
    if args.only:
        wanted = {int(x) for x in args.only.split(",") if x.strip()} | {1}

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    # SIGINT too: a shell may start the suite with SIGINT ignored (a background job), and the
    # topology must go away however the run ends.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    suite = Suite(args)
    passed = failed = 0
    keep = args.keep
    started = time.monotonic()
    try:
        log(f"netns suite: binary {args.bin}, interval {args.interval}s, timeout {args.timeout}s, "
            f"namespaces {suite.ns_t} / {suite.ns_a}")
        suite.setup()
        log(f"topology up in {time.monotonic() - started:.1f}s: tls={'yes' if suite.tls else 'NO'}, "
            f"moto={'yes' if suite.moto else 'NO'}, targets: "
            + ", ".join(f"{t.name}[{'/'.join(t.families)}]" for t in suite.targets))
        sc = Scenarios(suite)
        for num, name, method in SCENARIOS:
            if wanted is not None and num not in wanted and num != 10:
                continue
            t0 = time.monotonic()
            try:
                ok, line = getattr(sc, method)()
            except SuiteError as e:
                ok, line = False, f"suite error: {e}"
            if not suite.procs["agent"].alive():
                ok, line = False, line + f"; AGENT EXITED with {suite.procs['agent'].p.returncode}"
            log(f"[{num}] {name}: {'PASS' if ok else 'FAIL'} ({time.monotonic() - t0:.0f}s): {line}")
            if ok:
                passed += 1
            else:
                failed += 1
                keep = True
            if not suite.procs["agent"].alive():
                break
    except SuiteError as e:
        log(f"error: the suite could not run: {e}")
        failed += 1
        keep = True
    except KeyboardInterrupt as e:
        log(f"interrupted ({e or 'Ctrl-C'}): tearing down")
        failed += 1
        keep = True
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        suite.teardown(keep)
    log(f"suite took {time.monotonic() - started:.0f}s")
    log(f"{passed} passed, {failed} failed")
    sys.exit(0 if failed == 0 else 1)


if __name__ == "__main__":
    main()
