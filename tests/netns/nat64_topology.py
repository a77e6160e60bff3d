"""The NAT64 suite's topology (docs/netns-suite.md, "NAT64 and DNS64"): three namespaces, tayga,
unbound with dns64, dnsmasq, the listeners, and the agent. The plumbing (processes, cleanup,
/metrics snapshots, the agent's start) is topology.py's; this file adds what NAT64 needs.
Python 3 standard library only."""
import concurrent.futures
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

from topology import HERE, Proc, Suite, SuiteError, log, remove_stale_namespaces, run, setns

# ---- addresses (documentation prefixes only) ---------------------------------------------------
TASK6, RTR6, DNS64_6 = "2001:db8:6a::10", "2001:db8:6a::1", "2001:db8:6a::53"   # task <-> router
UP_R4, UP_S4 = "192.0.2.33", "192.0.2.34"                                      # router <-> server
UP_R6, UP_S6 = "2001:db8:6b::1", "2001:db8:6b::2"
V4ONLY4 = "198.51.100.10"                    # the IPv4-only server (A only)
NATIVE4, NATIVE6 = "198.51.100.20", "2001:db8:100::10"
SERVERS4, SERVERS6 = "198.51.100.0/24", "2001:db8:100::/64"
PREFIX = "2001:db8:64::/96"                  # the network-specific NAT64 prefix
TAYGA4, TAYGA6 = "203.0.113.1", "2001:db8:6c::1"   # tayga's own addresses
TUN4, TUN6 = "203.0.113.2", "2001:db8:6c::2"       # the router's on the tun device
POOL4 = "203.0.113.128/25"                   # tayga's dynamic pool: the IPv4 sources it uses
# Appear only inside DNS answers, never as a packet's destination (the guards count and drop it):
IMDS4 = "169.254.169.254"                    # the metadata address, A of imds.nat64.test
IMDS6 = "2001:db8:64::a9fe:a9fe"             # ... as DNS64 synthesizes it
WKA = ("192.0.0.170", "192.0.0.171")         # RFC 7050: ipv4only.arpa's A records
WKA6 = "2001:db8:64::c000:aa/127"            # ... synthesized (c000:aa and c000:ab)
V4ONLY6 = "2001:db8:64::c633:640a"           # 198.51.100.10 synthesized
ALLOWED4 = "{ 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 224.0.0.0/4 }"
ALLOWED6 = "{ 2001:db8::/32, fe80::/10, ff00::/8 }"

DOMAIN = "nat64.test"
NAMES = {  # name -> addresses dnsmasq answers (upstream of the DNS64: A only unless listed)
    f"v4only.{DOMAIN}": [V4ONLY4],
    f"native.{DOMAIN}": [NATIVE4, NATIVE6],
    f"imds.{DOMAIN}": [IMDS4],
    "ipv4only.arpa": list(WKA),
}


def dns_query(server, name, qtype, timeout=1.0):
    """(rcode, [addresses]) of one query (A=1, AAAA=28) over UDP; None if silent."""
    pkt = struct.pack(">HHHHHH", 0x6464, 0x0100, 1, 0, 0, 0)
    pkt += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    pkt += struct.pack(">HH", qtype, 1)
    fam = socket.AF_INET6 if ":" in server else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        try:
            s.sendto(pkt, (server, 53))
            d = s.recv(1500)
        except OSError:
            return None
    flags, qd, an = struct.unpack(">HHH", d[2:8])
    i = 12
    for _ in range(qd):
        i = _skip_name(d, i) + 4
    out = []
    for _ in range(an):
        i = _skip_name(d, i)
        rtype, _, _, rdlen = struct.unpack(">HHIH", d[i:i + 10])
        i += 10
        if rtype in (1, 28):
            out.append(socket.inet_ntop(socket.AF_INET if rtype == 1 else socket.AF_INET6,
                                        d[i:i + rdlen]))
        i += rdlen
    return flags & 0xF, out


def _skip_name(d, i):
    while d[i]:
        if d[i] & 0xC0 == 0xC0:
            return i + 2
        i += 1 + d[i]
    return i + 1


def tcp_get(addr, port=80, timeout=2.0):
    """First line of the answer to GET /healthz at addr, from the calling thread's namespace."""
    with socket.create_connection((addr, port), timeout=timeout) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return s.recv(256).split(b"\r\n", 1)[0].decode()


class Nat64Suite(Suite):
    """Namespaces `dp<PID>-n64t` (task: IPv6 only, the agent), `dp<PID>-n64r` (router: tayga,
    unbound with dns64, forwarding) and `dp<PID>-n64s` (server: IPv4-only and native IPv6
    listeners, dnsmasq upstream of the DNS64). Links: n64 (task-router, IPv6 only) and up
    (router-server, both families)."""

    STALE = re.compile(r"^dp(\d+)-n64[trs]\b")

    def __init__(self, args):
        super().__init__(args)
        self.ns_t = f"dp{self.pid}-n64t"
        self.ns_r = f"dp{self.pid}-n64r"
        self.ns_s = f"dp{self.pid}-n64s"
        self.ns_a = self.ns_r           # Suite.in_ns: anything not the task runs in the router
        self.dns64 = None               # unbound's mode: True with dns64, False without
        self.discovery_config = False   # the agent's config: prefixes unset (RFC 7050 discovery)
        self.imds_self_test = 0         # packets scenario 0 sent into the imds guard on purpose

    # -- setup --
    def setup(self):
        self.work = tempfile.mkdtemp(prefix="dualprobe-nat64-")
        os.chmod(self.work, 0o755)  # dnsmasq drops to nobody and rereads its hosts file
        self.cleanup_stale()
        self.build_topology()
        self.exec_t = concurrent.futures.ThreadPoolExecutor(1, initializer=setns, initargs=(self.ns_t,))
        self.exec_a = concurrent.futures.ThreadPoolExecutor(1, initializer=setns, initargs=(self.ns_r,))
        self.start_dnsmasq()
        self.start_services()
        self.start_tayga()
        self.start_unbound(dns64=True)

    def cleanup_stale(self):
        """Deletes namespaces of earlier runs of this suite whose process is gone."""
        remove_stale_namespaces(self.STALE)

    def sysctl(self, ns, *kv):
        run(["ip", "netns", "exec", ns, "sysctl", "-qw", *kv])

    def build_topology(self):
        t, r, s = self.ns_t, self.ns_r, self.ns_s
        for ns in (t, r, s):
            run(["ip", "netns", "add", ns])
            self.namespaces.append(ns)
            self.ip(ns, "link", "set", "lo", "up")
        run(["ip", "link", "add", "n64-t", "netns", t, "type", "veth", "peer", "name", "n64-r", "netns", r])
        run(["ip", "link", "add", "up-r", "netns", r, "type", "veth", "peer", "name", "up-s", "netns", s])
        for ns, dev in ((t, "n64-t"), (r, "n64-r"), (r, "up-r"), (s, "up-s")):
            self.ip(ns, "link", "set", dev, "up")
        # task: IPv6 only. No default route: one route per path, so a path can be taken away.
        self.sysctl(t, "net.ipv4.conf.all.forwarding=0")
        self.ip(t, "addr", "add", f"{TASK6}/64", "dev", "n64-t", "nodad")
        self.ip(t, "-6", "route", "add", SERVERS6, "via", RTR6, "dev", "n64-t")
        self.ip(t, "-6", "route", "add", PREFIX, "via", RTR6, "dev", "n64-t")
        # router
        for addr in (RTR6, DNS64_6):
            self.ip(r, "addr", "add", f"{addr}/64", "dev", "n64-r", "nodad")
        self.ip(r, "addr", "add", f"{UP_R4}/28", "dev", "up-r")
        self.ip(r, "addr", "add", f"{UP_R6}/64", "dev", "up-r", "nodad")
        self.ip(r, "route", "add", SERVERS4, "via", UP_S4, "dev", "up-r")
        self.ip(r, "-6", "route", "add", SERVERS6, "via", UP_S6, "dev", "up-r")
        self.sysctl(r, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
        # server
        self.ip(s, "addr", "add", f"{UP_S4}/28", "dev", "up-s")
        self.ip(s, "addr", "add", f"{UP_S6}/64", "dev", "up-s", "nodad")
        self.ip(s, "route", "add", "default", "via", UP_R4, "dev", "up-s")
        self.ip(s, "-6", "route", "add", "default", "via", UP_R6, "dev", "up-s")
        for addr in (V4ONLY4, NATIVE4):
            self.ip(s, "addr", "add", f"{addr}/32", "dev", "lo")
        self.ip(s, "addr", "add", f"{NATIVE6}/128", "dev", "lo", "nodad")
        self.guards()
        # What reaches the IPv4-only server from tayga's pool: the translated connections.
        self.nft(s, f"""
table inet dp_nat64 {{
  counter from_pool {{ }}
  chain in {{
    type filter hook input priority 0; policy accept;
    ip saddr {POOL4} ip daddr {V4ONLY4} tcp flags syn counter name from_pool
  }}
}}
""")

    def from_pool(self):
        """SYNs the IPv4-only server got from tayga's pool."""
        out = run(["ip", "netns", "exec", self.ns_s, "nft", "list", "counter", "inet", "dp_nat64",
                   "from_pool"], check=False)
        m = re.search(r"packets (\d+)", out)
        return int(m.group(1)) if m else 0

    def guards(self):
        """Counts and drops, in every namespace, what is addressed outside the documentation
        prefixes (`stray`), and what goes to the metadata address in either form (`imds`):
        before anything else, so even a packet the agent should never send is stopped in task."""
        t, r = self.ns_t, self.ns_r
        for ns in self.namespaces:
            fwd = ""
            if ns == r:  # what tayga emits is forwarded, not sent
                fwd = f"""
  chain through {{
    type filter hook forward priority 0; policy accept;
    ip daddr {IMDS4} counter name imds drop
    ip6 daddr {IMDS6} counter name imds drop
    ip daddr {ALLOWED4} accept
    ip6 daddr {ALLOWED6} accept
    meta nfproto {{ ipv4, ipv6 }} counter name stray drop
  }}"""
            extra = ""
            if ns == t:
                extra = f"ip6 daddr {IMDS6} counter name imds drop\n    ip6 daddr {WKA6} counter name stray drop\n    "
            self.nft(ns, f"""
table inet dp_guard {{
  counter stray {{ }}
  counter imds {{ }}
  chain out {{
    type filter hook output priority 0; policy accept;
    {extra}oifname "lo" accept
    ip daddr {ALLOWED4} accept
    ip6 daddr {ALLOWED6} accept
    meta nfproto {{ ipv4, ipv6 }} counter name stray drop
  }}{fwd}
}}
""")

    def counter_by_ns(self, name):
        """{namespace: packets} counted by dp_guard's counter `name`."""
        out = {}
        for ns in self.namespaces:
            text = run(["ip", "netns", "exec", ns, "nft", "list", "counter", "inet", "dp_guard", name],
                       check=False)
            m = re.search(r"packets (\d+)", text)
            out[ns] = int(m.group(1)) if m else 0
        return out

    def counter(self, name):
        """Packets counted by dp_guard's counter `name`, summed over the namespaces."""
        return sum(self.counter_by_ns(name).values())

    # -- peers --
    def start_dnsmasq(self):
        w = self.work
        with open(f"{w}/hosts", "w") as f:
            f.write("".join(f"{a} {n}\n" for n, addrs in NAMES.items() for a in addrs))
        os.chmod(f"{w}/hosts", 0o644)
        with open(f"{w}/dnsmasq.conf", "w") as f:
            f.write(f"port=53\naddn-hosts={w}/hosts\nlocal=/test/\nlocal=/arpa/\nlocal-ttl=0\n"
                    f"log-queries\nlog-facility={w}/dnsmasq.syslog\npid-file={w}/dnsmasq.pid\n")
        os.chmod(f"{w}/dnsmasq.conf", 0o644)
        cmd = ["ip", "netns", "exec", self.ns_s, "dnsmasq", "--no-daemon",
               f"--conf-file={w}/dnsmasq.conf", "--no-resolv", "--no-hosts", "--bind-interfaces",
               f"--listen-address={UP_S4}", f"--listen-address={UP_S6}"]
        self.procs["dnsmasq"] = Proc("dnsmasq", cmd, f"{w}/dnsmasq.log", stdin_pipe=False)
        if not self.poll(lambda: self.in_ns(self.ns_r, dns_query, UP_S4, f"v4only.{DOMAIN}", 1, 0.3)
                         == (0, [V4ONLY4]), 10, self.procs["dnsmasq"]):
            raise SuiteError(f"dnsmasq did not answer; see {w}/dnsmasq.log")

    def start_services(self):
        cmd = ["ip", "netns", "exec", self.ns_s, sys.executable, f"{HERE}/services.py",
               "--max-seconds", str(self.services_seconds)]
        p = self.procs["services"] = Proc("services", cmd, f"{self.work}/services.log")
        if not p.wait_for_line("ready", 15):
            raise SuiteError(f"the service listeners did not start; see {self.work}/services.log")

    def start_tayga(self):
        w, r = self.work, self.ns_r
        os.makedirs(f"{w}/tayga", exist_ok=True)
        with open(f"{w}/tayga.conf", "w") as f:
            f.write(f"tun-device nat64\nipv4-addr {TAYGA4}\nipv6-addr {TAYGA6}\nprefix {PREFIX}\n"
                    f"dynamic-pool {POOL4}\ndata-dir {w}/tayga\n")
        if "nat64" not in run(["ip", "-n", r, "link", "show"], check=False):
            run(["ip", "netns", "exec", r, "tayga", "--mktun", "--config", f"{w}/tayga.conf"])
            self.ip(r, "link", "set", "nat64", "up")
            self.ip(r, "addr", "add", f"{TUN4}/32", "dev", "nat64")
            self.ip(r, "addr", "add", f"{TUN6}/128", "dev", "nat64", "nodad")
            self.ip(r, "route", "add", POOL4, "dev", "nat64")
            self.ip(r, "-6", "route", "add", PREFIX, "dev", "nat64")
        # Line-buffered: tayga logs with stdio, and the suite reads the pool address it assigns.
        cmd = ["ip", "netns", "exec", r, "stdbuf", "-oL", "tayga", "-d", "--config", f"{w}/tayga.conf"]
        self.procs["tayga"] = Proc("tayga", cmd, f"{w}/tayga.log", stdin_pipe=False)

        def through():
            try:
                return tcp_get(V4ONLY6, timeout=0.3).startswith("HTTP/1.1 200")
            except OSError:
                return False
        if not self.poll(lambda: self.in_ns(self.ns_t, through, timeout=5), 10, self.procs["tayga"]):
            raise SuiteError(f"no TCP through tayga to {V4ONLY6}; see {w}/tayga.log")

    def stop_tayga(self):
        p = self.procs.pop("tayga", None)
        if p:
            p.stop()

    def start_unbound(self, dns64=True):
        """unbound in the router, in the foreground: dns64 (or not) on a forward zone `.` to the
        server's dnsmasq, which is authoritative for everything it answers and forwards nothing.
        Root hints name the same server, so unbound never has another address to ask."""
        w = self.work
        old = self.procs.pop("unbound", None)
        if old:
            old.stop()
        with open(f"{w}/root.hints", "w") as f:
            f.write(f".\t3600\tIN\tNS\thint.{DOMAIN}.\nhint.{DOMAIN}.\t3600\tIN\tA\t{UP_S4}\n")
        modules = f'module-config: "dns64 iterator"\n  dns64-prefix: {PREFIX}\n' if dns64 else \
            'module-config: "iterator"\n'
        with open(f"{w}/unbound.conf", "w") as f:
            f.write(f"""server:
  interface: {DNS64_6}
  port: 53
  do-daemonize: no
  chroot: ""
  username: ""
  directory: "{w}"
  pidfile: "{w}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 1
  log-queries: yes
  do-ip4: yes
  do-ip6: yes
  access-control: 2001:db8::/32 allow
  access-control: 192.0.2.0/24 allow
  {modules}  local-zone: "test." nodefault
  root-hints: "{w}/root.hints"
  cache-max-ttl: 0
  cache-max-negative-ttl: 0
  prefetch: no
forward-zone:
  name: "."
  forward-addr: {UP_S4}
""")
        if shutil.which("unbound-checkconf"):
            out = subprocess.run(["unbound-checkconf", f"{w}/unbound.conf"], capture_output=True,
                                 text=True, timeout=30)
            if out.returncode != 0:
                raise SuiteError(f"unbound-checkconf: {out.stderr.strip()}{out.stdout.strip()}")
        cmd = ["ip", "netns", "exec", self.ns_r, "unbound", "-d", "-c", f"{w}/unbound.conf"]
        p = self.procs["unbound"] = Proc("unbound", cmd, f"{w}/unbound.log", stdin_pipe=False)
        want = (0, [V4ONLY6]) if dns64 else (0, [])
        if not self.poll(lambda: self.aaaa(f"v4only.{DOMAIN}", 0.3) == want, 10, p):
            raise SuiteError(f"unbound (dns64={dns64}) did not answer {want}; see {w}/unbound.log")
        self.dns64 = dns64

    def aaaa(self, name, timeout=1.0):
        """(rcode, addresses) of an AAAA query to the DNS64, from the task namespace."""
        return self.in_ns(self.ns_t, dns_query, DNS64_6, name, 28, timeout)

    def poll(self, cond, seconds, proc=None):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                if cond():
                    return True
            except (OSError, concurrent.futures.TimeoutError):
                pass
            if proc is not None and not proc.alive():
                return False
            time.sleep(0.2)
        return False

    # -- the agent --
    def write_config(self, discovery=False):
        """The agent's config. discovery=True leaves nat64_prefixes out: RFC 7050 must find it."""
        prefixes = "" if discovery else f'\n  nat64_prefixes: ["{PREFIX}"]'
        doc = f"""# written by tests/netns/nat64.py
interval: {self.interval}s
timeout: {self.timeout}s
families: [ipv6]
resolver:
  nameservers: ["[{DNS64_6}]:53"]{prefixes}
  nat64_discovery: true
  nat64_refresh: 2s
targets:
  - name: native
    host: native.{DOMAIN}
    port: 80
    checks: [dns, tcp, http]
    http: {{ path: /healthz, scheme: http }}
    expect: {{ ipv6: reachable, via: {{ ipv6: native }} }}
  - name: v4only
    host: v4only.{DOMAIN}
    port: 80
    checks: [dns, tcp, http]
    http: {{ path: /healthz, scheme: http }}
    expect: {{ ipv6: reachable, via: {{ ipv6: nat64 }} }}
  - name: v4only-as-native
    host: v4only.{DOMAIN}
    port: 80
    checks: [dns, tcp, http]
    http: {{ path: /healthz, scheme: http }}
    expect: {{ ipv6: reachable, via: {{ ipv6: native }} }}
  - name: imds
    host: imds.{DOMAIN}
    port: 80
    checks: [dns, tcp, http]
    http: {{ path: /healthz, scheme: http }}
    expect: {{ ipv6: any }}
"""
        with open(f"{self.work}/dualprobe.yaml", "w") as f:
            f.write(doc)
        out = subprocess.run([self.args.bin, "check-config", f"{self.work}/dualprobe.yaml"],
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise SuiteError(f"dualprobe check-config rejected the NAT64 config:\n{out.stderr}{out.stdout}")
        self.discovery_config = discovery

    def prefix_mode(self):
        return "discovered-prefix" if self.discovery_config else "configured-prefix"

    def restart_agent(self, discovery):
        old = self.procs.pop("agent", None)
        if old:
            old.stop()
            # agent.log goes on with the new agent; the old one's is kept beside it.
            os.replace(self.agent_log, f"{self.work}/agent-{self.prefix_mode()}.log")
        self.write_config(discovery)
        self.start_agent()

    # -- teardown --
    def teardown(self, keep):
        for name in ("agent", "unbound", "tayga"):
            p = self.procs.pop(name, None)
            if p:
                try:
                    p.stop()
                except Exception as e:  # noqa: BLE001 - teardown goes on
                    log(f"teardown: stopping {name}: {e}")
        super().teardown(keep)

