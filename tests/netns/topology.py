"""The suite's topology and plumbing: addresses, processes, /metrics snapshots, and the Suite that
builds the two namespaces, their links, guards and peers, and runs the agent (docs/netns-suite.md).
Python 3 standard library only."""
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



def pid_alive(pid):
    """A process that exists and is not a zombie (a killed run can stay one until reaped)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def remove_stale_namespaces(pattern):
    """Deletes the namespaces whose name `pattern` matches with the creating run's PID as group
    1, when that run is gone: its processes are killed first. Shared by every netns suite."""
    for line in run(["ip", "netns", "list"], check=False).splitlines():
        m = pattern.match(line)
        if not m or pid_alive(int(m.group(1))):
            continue
        name = line.split()[0]
        log(f"note: removing namespace {name} left by an earlier run (pid {m.group(1)} is gone)")
        for pid in run(["ip", "netns", "pids", name], check=False).split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        run(["ip", "netns", "del", name], check=False)

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
    services_seconds = 3600  # how long the listeners live (services.py --max-seconds)

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
        remove_stale_namespaces(re.compile(r"^dp(\d+)-(task|aws)\b"))

    def make_pki(self):
        if shutil.which("openssl") is None:
            log("NOTE: openssl not found: TLS is skipped in the namespaces (targets use plain HTTP, "
                "no tls check)")
            return
        w = self.work
        names = self.cert_names()
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

    def cert_names(self):
        """The server certificate's DNS names (tests/netns/soak.py adds its own)."""
        return ["web.dualstack.test", "api.vpce-svc.test", S3_NAME, f"*.{S3_NAME}", EC2_NAME]

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
        lines = self.host_lines(aaaa)
        path = f"{self.work}/hosts"
        with open(path + ".tmp", "w") as f:
            f.write("\n".join(lines) + "\n")
        os.chmod(path + ".tmp", 0o644)
        os.replace(path + ".tmp", path)

    def host_lines(self, aaaa=True):
        """The resolver's hosts file, one `ADDRESS NAME` a line (tests/netns/soak.py adds its own)."""
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
        return lines

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
               "--max-seconds", str(self.services_seconds)]
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
        for name in ("prometheus", "agent", "relay", "moto", "services", "dnsmasq"):
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
