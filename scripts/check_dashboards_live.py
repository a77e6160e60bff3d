#!/usr/bin/env python3
"""Proves the Grafana dashboard and the Prometheus rules against a real Prometheus scraping
a live dualprobe that has passing and failing families. Loopback only (127.0.0.1, ::1).

  scripts/check-dashboards-live.sh target/debug/dualprobe
  python3 scripts/check_dashboards_live.py --bin target/debug/dualprobe [--keep] [--no-netns]

It re-executes itself in a private network namespace (`unshare --net`, with --map-root-user when
not root): only `lo`, no route, so nothing can leave the host. There 64:ff9b::7f00:1 (what DNS64
synthesizes for 127.0.0.1) is an address of lo, standing in for a NAT64 translator, and the rest
of 64:ff9b::/96 has no route. Without a namespace (--no-netns, or unshare refused) the NAT64
scenarios (*) are left out with a NOTE, and their expressions may be empty; with CI set that fails.

Peers started here (all killed on exit):
  dnsmasq     127.0.0.1:D, --no-resolv (never forwards), local-only zones:
                dual.test     A 127.0.0.1, AAAA ::1
                aonly.test    A 127.0.0.1, AAAA: NODATA
                v6only.test   A 127.0.0.1, AAAA ::1   (its service listens on ::1 only)
                tls.test      A 127.0.0.1, AAAA ::1
                nat64.test    A 127.0.0.1, AAAA 64:ff9b::7f00:1 (DNS64 for an IPv4-only name)
                natdown.test  A 127.0.0.2, AAAA 64:ff9b::7f00:2 (no route: nat64_unreachable)
                ipv4only.arpa A 192.0.0.170, AAAA 2001:db8:64::c000:aa (RFC 7050: a NAT64 prefix)
                *.amazonaws.com A 127.0.0.1, AAAA: NODATA (the PrivateLink names the template
                               declares, IPv4-only endpoints; nothing listens on 443)
  HTTP        127.0.0.1:H, [::1]:H and (*) [64:ff9b::7f00:1]:H; v6-only HTTP [::1]:V (127.0.0.1:V
              refused)
  TLS         127.0.0.1:T and [::1]:T, leaf for tls.test from a test CA, expiring in 7 days
  metadata    127.0.0.1:E, ECS task metadata v4 of two fake tasks (a in us-east-1a, b in us-east-1b)
  dualprobe a 127.0.0.1:M, interval 1s, discovery.cloudformation on cloudformation/ipv6-vpc.yml;
              NAT64 prefixes 2001:db8:6464::/96 (config), 2001:db8:64::/96 (discovered), the
              well-known one; dual asserts `via: {ipv6: native}`, gained-aaaa asserts nat64 on
              dual.test, ipv4only is `ipv6: nodata` on aonly.test, (*) nat64 asserts nat64 on
              nat64.test, (*) lost-aaaa asserts native on nat64.test
  dualprobe b 127.0.0.1:N, only failing families (aonly over ipv6, v6only over ipv4, (*) natdown
              via nat64 failing with nat64_unreachable), discovery
              cloudformation on a template without endpoints (empty) and vpc_endpoints against a
              closed port on 127.0.0.1 (failing; static fake credentials, instance metadata off)
  Prometheus  127.0.0.1:P, scrape/evaluation interval 1s, rule_files: dashboards/alerts.yml; job
              dualprobe scrapes a, b and a closed port (a task whose prober is dead); job
              dualprobe-shared scrapes only build_info of a and b under one instance label (two
              tasks ADOT could not tell apart)

Checks (one line each, then "N passed, M failed"; exit 1 on any failure): the DNS answers,
nothing on port 443, dualprobe's own view of every target, the scrape, every rule loaded
with health "ok", every alert pending for the task/target meant to trigger it (and none for the
passing one), the recorded series, and scripts/check-promql.py --strict: every dashboard,
recording-rule and alert expression evaluates without error and returns series (only
absent() may be empty). A binary that predates the discovery metrics (NEWER_METRICS, no HELP
line on /metrics) gets NOTE lines instead of failures for what needs them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no scripts/__pycache__ in the work tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from live_peers import (CERT_DAYS, NAT64_NOROUTE, NAT64_STANDIN, Fatal, Report,  # noqa: E402
                        Server, TaskMetadata, dns_query, free_port, http_get, make_certs,
                        parse_metrics, prom_api, prom_query, reexec_in_netns, select, setup_netns,
                        start_server, task_document, tcp_state, wait_until)
from live_configs import config_a, config_b  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(REPO, "cloudformation", "ipv6-vpc.yml")
RULES = os.path.join(REPO, "dashboards", "alerts.yml")
CHECK_PROMQL = os.path.join(REPO, "scripts", "check-promql.py")
REGION = "us-east-1"
# Metrics a binary built before them lacks; their expressions may then be empty (NOTE lines).
NEWER_METRICS = ("dualprobe_discovery_success", "dualprobe_discovery_endpoints",
                 "dualprobe_discovery_last_success_timestamp_seconds")


def load_check_promql():
    spec = importlib.util.spec_from_file_location("check_promql", CHECK_PROMQL)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["check_promql"] = mod
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------- the run
class Run:
    def __init__(self, args, no_netns: str) -> None:
        self.args = args
        self.no_netns = no_netns  # why there is no private network namespace ("" when there is)
        self.nat64 = not no_netns  # the NAT64 scenarios need one
        self.r = Report()
        self.work = tempfile.mkdtemp(prefix="dualprobe-dash-")
        self.procs: list[tuple[str, subprocess.Popen]] = []
        self.servers: list[Server] = []
        self.meta = TaskMetadata({"a": task_document("a0000000000000000000000000000001", "us-east-1a"),
                                  "b": task_document("b0000000000000000000000000000002", "us-east-1b")})
        self.missing: list[str] = []  # NEWER_METRICS the binary does not have

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
        for s in [*self.servers, self.meta]:
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
                f"--host-record=nat64.test,127.0.0.1,{NAT64_STANDIN}",
                f"--host-record=natdown.test,127.0.0.2,{NAT64_NOROUTE}",
                "--local=/ipv4only.arpa/", "--host-record=ipv4only.arpa,192.0.0.170,2001:db8:64::c000:aa",
                # IPv4-only endpoints: their names have no AAAA (`ipv6: nodata` by design)
                "--local=/amazonaws.com/", "--address=/amazonaws.com/127.0.0.1"]
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
            "nat64.test": (["127.0.0.1"], [NAT64_STANDIN]),
            "natdown.test": (["127.0.0.2"], [NAT64_NOROUTE]),
            "ipv4only.arpa": (["192.0.0.170"], ["2001:db8:64::c000:aa"]),
        }
        for _, host in discovered:
            want[host] = (["127.0.0.1"], [])
        bad = []
        for name, (a, aaaa) in want.items():
            for qtype, exp in ((1, a), (28, aaaa)):
                rcode, got = dns_query(srv, name, qtype)
                if rcode != 0 or sorted(got) != sorted(exp):
                    bad.append(f"{name} {'A' if qtype == 1 else 'AAAA'}: rcode {rcode} {got}, want 0 {exp}")
        rcode, _ = dns_query(srv, "missing.test", 1)
        if rcode != 3:
            bad.append(f"missing.test A: rcode {rcode}, want 3 (NXDOMAIN)")
        self.r.check("dnsmasq answers (aonly.test and *.amazonaws.com AAAA NODATA, nat64.test DNS64)",
                     not bad, "; ".join(bad) or f"{len(want)} names")

    def start_peers(self, certs: tuple[str, str, str]) -> dict:
        ports = {"http": free_port(), "v6only": free_port(), "v4only": free_port(), "tls": free_port()}
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(certs[1], certs[2])
        specs = [("127.0.0.1", ports["http"], "http4", None), ("::1", ports["http"], "http6", None),
                 ("::1", ports["v6only"], "v6only", None), ("127.0.0.1", ports["v4only"], "v4only", None),
                 ("127.0.0.1", ports["tls"], "tls4", ctx), ("::1", ports["tls"], "tls6", ctx)]
        if self.nat64:  # the stand-in translator address on lo (only inside the namespace)
            specs.append((NAT64_STANDIN, ports["http"], "http-nat64", None))
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
        noroute = "Network is unreachable"
        if self.nat64:  # the stand-in answers; the rest of 64:ff9b::/96 fails at once
            states[f"http {NAT64_STANDIN}"] = tcp_state(NAT64_STANDIN, ports["http"])
            noroute = tcp_state(NAT64_NOROUTE, ports["http"])
        refused4 = tcp_state("127.0.0.1", ports["v6only"])
        ok = all(v == "open" for v in states.values()) and refused4 == "refused" and "unreachable" in noroute
        self.r.check("HTTP, v6-only and TLS peers on loopback", ok,
                     f"http :{ports['http']}, v6only [::1]:{ports['v6only']} (127.0.0.1: {refused4}), "
                     f"tls :{ports['tls']}" + (f", NAT64 stand-in [{NAT64_STANDIN}]:{ports['http']}, "
                                              f"{NAT64_NOROUTE}: {noroute}" if self.nat64 else "")
                     if ok else f"{states}, v6only 127.0.0.1: {refused4}, {NAT64_NOROUTE}: {noroute}")
        if not ok:
            raise Fatal
        return ports

    def check_443(self) -> None:
        states = {h: tcp_state(h, 443) for h in ("127.0.0.1", "::1")}
        self.r.check("nothing listens on 443 (PrivateLink names fail locally)",
                     all(s == "refused" for s in states.values()), str(states))

    def dualprobe_config(self, dns_port: int, ports: dict, ca: str) -> str:
        path = os.path.join(self.work, "dualprobe.yml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(config_a(dns_port, ports, ca, TEMPLATE, REGION, CERT_DAYS, self.nat64))
        return path

    def dualprobe_config_b(self, dns_port: int, ports: dict) -> str:
        """Task b (live_configs.config_b); nothing leaves loopback."""
        empty = os.path.join(self.work, "no-endpoints.yml")
        with open(empty, "w", encoding="utf-8") as f:
            f.write("Resources: {}\n")
        closed = free_port(kinds=((socket.AF_INET, "127.0.0.1"),))
        path = os.path.join(self.work, "dualprobe-b.yml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(config_b(dns_port, ports, empty, closed, REGION, self.nat64))
        return path

    def start_dualprobe(self, bin_: str, cfg: str, task: str) -> str:
        name = f"dualprobe-{task}"
        out = subprocess.run([bin_, "check-config", cfg], capture_output=True, text=True, timeout=30)
        if not self.r.check(f"dualprobe check-config ({os.path.basename(cfg)})", out.returncode == 0,
                            (out.stdout + out.stderr).strip()):
            raise Fatal
        port = free_port(kinds=((socket.AF_INET, "127.0.0.1"),))
        # No AWS / ECS / dualprobe settings from the caller's environment: nothing may leave
        # loopback. Task metadata comes from the loopback server; fake static credentials and
        # no instance metadata, for the (failing) vpc_endpoints discovery.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("AWS_", "ECS_", "DUALPROBE_", "RUST_LOG"))}
        env.update(DUALPROBE_LOG="info", ECS_CONTAINER_METADATA_URI_V4=self.meta.uri(task),
                   AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
                   AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=os.path.join(self.work, "none"),
                   AWS_SHARED_CREDENTIALS_FILE=os.path.join(self.work, "none"))
        p = self.spawn(name, [bin_, "run", "--config", cfg, "--listen", f"127.0.0.1:{port}"], env=env)
        base = f"http://127.0.0.1:{port}"
        ok = wait_until(lambda: p.poll() is None and http_get(base + "/-/ready", 2)[0] == 200,
                        timeout=30)
        if not self.r.check(f"{name} ready on 127.0.0.1:{port} (task metadata of task {task})", bool(ok),
                            "" if ok else self.log_tail(name)):
            raise Fatal
        return base

    def check_newer_metrics(self, base: str) -> None:
        text = http_get(base + "/metrics", 5)[1].decode()
        self.missing = [m for m in NEWER_METRICS if f"# TYPE {m} " not in text]
        for m in self.missing:
            print(f"NOTE  the binary predates {m}: expressions using it may be empty")

    def check_task_b(self, base: str) -> None:
        """dualprobe b's own /metrics: both families fail, discovery empty and failing."""
        def view():
            s = parse_metrics(http_get(base + "/metrics", 5)[1].decode())
            g = lambda name, **l: [v for _, v in select(s, name, **l)]  # noqa: E731
            bad = []
            for desc, vals, want in (
                    ("aonly ipv6 dns fails", g("dualprobe_probe_success", target="aonly", check="dns", family="ipv6"), 0),
                    ("v6only ipv4 tcp fails", g("dualprobe_probe_success", target="v6only", check="tcp", family="ipv4"), 0),
                    ("build_info", g("dualprobe_build_info", availability_zone="us-east-1b"), 1),
                    *((("natdown ipv6 path nat64", g("dualprobe_ipv6_path", target="natdown", via="nat64"), 1),
                       ("natdown tcp fails", g("dualprobe_probe_success", target="natdown", check="tcp"), 0))
                      if self.nat64 else ())):
                if not vals or any(v != want for v in vals):
                    bad.append(f"{desc}: {vals}")
            if self.nat64 and not [v for v in g("dualprobe_probes_total", target="natdown", check="tcp",
                                                  result="nat64_unreachable") if v > 0]:
                bad.append("natdown: no nat64_unreachable counted")
            if "dualprobe_discovery_success" not in self.missing:
                for desc, vals, want in (
                        ("cloudformation discovery ok", g("dualprobe_discovery_success", source="cloudformation"), 1),
                        ("cloudformation endpoints 0", g("dualprobe_discovery_endpoints", source="cloudformation"), 0),
                        ("vpc_endpoints discovery fails", g("dualprobe_discovery_success", source="vpc_endpoints"), 0)):
                    if not vals or any(v != want for v in vals):
                        bad.append(f"{desc}: {vals}")
            return not bad, bad

        ok, bad = wait_until(lambda: (r := view())[0] and r, timeout=20, interval=0.5) or view()
        self.r.check("dualprobe b /metrics: every family fails, discovery empty (cloudformation) and "
                     "failing (vpc_endpoints), AZ from task metadata"
                     + (", natdown nat64_unreachable" if self.nat64 else ""), ok, "; ".join(bad))

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
            # NAT64: paths, assertions, prefixes; the nodata pairs met by design
            want("dual ipv6 path native", g("dualprobe_ipv6_path", target="dual", via="native"), lambda v: v == 1)
            want("dual asserts native", g("dualprobe_target_expected_via", target="dual", via="native"), lambda v: v == 1)
            want("gained-aaaa ipv6 path native", g("dualprobe_ipv6_path", target="gained-aaaa", via="native"), lambda v: v == 1)
            want("gained-aaaa violates via", g("dualprobe_expectation_met", target="gained-aaaa", family="ipv6"), lambda v: v == 0)
            want("ipv4only ipv6 nodata met", g("dualprobe_expectation_met", target="ipv4only", family="ipv6"), lambda v: v == 1)
            want("ipv4only expects nodata", g("dualprobe_target_expected", target="ipv4only", family="ipv6", expect="nodata"), lambda v: v == 1)
            for src, prefix in (("well_known", "64:ff9b::/96"), ("config", "2001:db8:6464::/96"),
                                ("discovered", "2001:db8:64::/96")):
                want(f"nat64 prefix {prefix} ({src})", g("dualprobe_nat64_prefix", source=src, prefix=prefix), lambda v: v == 1)
            if self.nat64:
                want("nat64 ipv6 path nat64", g("dualprobe_ipv6_path", target="nat64", via="nat64"), lambda v: v == 1)
                want("nat64 ipv6 http ok", g("dualprobe_probe_success", target="nat64", check="http", family="ipv6"), lambda v: v == 1)
                want("nat64 expectation met", g("dualprobe_expectation_met", target="nat64"), lambda v: v == 1)
                want("lost-aaaa ipv6 path nat64", g("dualprobe_ipv6_path", target="lost-aaaa", via="nat64"), lambda v: v == 1)
                want("lost-aaaa violates via", g("dualprobe_expectation_met", target="lost-aaaa", family="ipv6"), lambda v: v == 0)
            nodata = [n for n, _ in discovered
                      if select(s, "dualprobe_target_expected", target=n, family="ipv6", expect="nodata")]
            if not nodata:
                problems.append("no discovered endpoint expects ipv6 nodata (IPv4-only endpoints)")
            for name in nodata:
                want(f"{name} ipv6 nodata met", g("dualprobe_expectation_met", target=name, family="ipv6"), lambda v: v == 1)
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
                     "opened violates, tls expires in 7d, cloudformation targets fail, IPv6 paths "
                     f"and NAT64 prefixes{'' if self.nat64 else ' (no NAT64 path: no namespace)'}, "
                     "nodata pairs met",
                     ok, "; ".join(problems))
        # How the discovered endpoints fail (for the report): reasons of their non-ok runs.
        reasons = sorted({f"{l['check']}={l['result']}" for l, v in
                          ((l, v) for n, l, v in samples if n == "dualprobe_probes_total")
                          if l.get("target", "").startswith("vpce-") and l.get("result") != "ok" and v > 0})
        print(f"      discovered endpoints fail with: {', '.join(reasons) or 'nothing'}")

    def start_prometheus(self, dps: list[str]) -> str:
        port = free_port(kinds=((socket.AF_INET, "127.0.0.1"),))
        self.dead = f"127.0.0.1:{free_port(kinds=((socket.AF_INET, '127.0.0.1'),))}"  # nothing listens
        hosts = [b.split("//", 1)[1] for b in dps]
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
      - targets: {json.dumps(hosts + [self.dead])}
  # ADOT without its instance = task ARN rewrite: two tasks under one instance label
  - job_name: dualprobe-shared
    static_configs:
      - targets: {json.dumps(hosts)}
    relabel_configs:
      - {{ target_label: instance, replacement: "localhost:9469" }}
    metric_relabel_configs:
      - {{ source_labels: [__name__], regex: dualprobe_build_info, action: keep }}
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

    def check_alerts(self, base: str, discovered: list[tuple[str, str]], a: str, b: str) -> None:
        a, b = a.split("//", 1)[1], b.split("//", 1)[1]
        # alert -> the label sets that must each match a pending (or firing) alert
        want = {
            "DualprobeIPv6PathDown": [{"instance": a, "target": "aonly"}, {"instance": b, "target": "aonly"}],
            "DualprobeIPv4PathDown": [{"instance": a, "target": "v6only"}, {"instance": b, "target": "v6only"}],
            "DualprobePrivateLinkEndpointUnreachable": [{"instance": a, "target": n} for n, _ in discovered],
            "DualprobeUnexpectedlyReachable": [{"instance": a, "target": "opened", "family": "ipv4"}],
            "DualprobeCertificateExpiringSoon": [{"instance": a, "target": "tls"}],
            "DualprobeFamilyDown": [{"instance": b, "family": "ipv4"}, {"instance": b, "family": "ipv6"}],
            "DualprobeDiscoveryFailing": [{"instance": b, "source": "vpc_endpoints"}],
            "DualprobeDiscoveryEmpty": [{"instance": b, "source": "cloudformation"}],
            "DualprobeTaskProberDown": [{"instance": self.dead, "job": "dualprobe"}],
            "DualprobeTasksIndistinguishable": [{"instance": "localhost:9469", "job": "dualprobe-shared"}],
            "DualprobeIPv6PathNotAsAsserted": [{"instance": a, "target": "gained-aaaa", "via": "native",
                                                "asserted_via": "nat64"}],
        }
        if self.nat64:
            want["DualprobeIPv6PathNotAsAsserted"].append(
                {"instance": a, "target": "lost-aaaa", "via": "nat64", "asserted_via": "native"})
            want["DualprobeNat64PathDown"] = [{"instance": b, "target": "natdown"}]
            want["DualprobeIPv6PathDown"].append({"instance": b, "target": "natdown"})
        else:
            print(f"NOTE  DualprobeNat64PathDown not checked: no network namespace ({self.no_netns})")
        if "dualprobe_discovery_success" in self.missing:
            for k in ("DualprobeDiscoveryFailing", "DualprobeDiscoveryEmpty"):
                print(f"NOTE  {k} not checked: the binary predates dualprobe_discovery_success")
                del want[k]
        else:  # the new binary also names its task on build_info; the alerts carry it
            want["DualprobeFamilyDown"] = [dict(w, task="b0000000000000000000000000000002")
                                           for w in want["DualprobeFamilyDown"]]

        def matches(alerts, w):
            return any(all(x["labels"].get(k) == v for k, v in w.items()) for x in alerts)

        def active():
            alerts = [x for x in prom_api(base, "/api/v1/alerts")["alerts"] if x.get("state") in ("pending", "firing")]
            by = {}
            for x in alerts:
                by.setdefault(x["labels"]["alertname"], []).append(x)
            return by if all(matches(by.get(k, []), w) for k, ws in want.items() for w in ws) else None

        by = wait_until(active, timeout=30, interval=1)
        if by is None:
            by = {}
            for x in prom_api(base, "/api/v1/alerts")["alerts"]:
                by.setdefault(x["labels"]["alertname"], []).append(x)
        for name, ws in want.items():
            have = by.get(name, [])
            miss = [w for w in ws if not matches(have, w)]
            what = "; ".join(",".join(f"{k}={v}" for k, v in w.items() if k != "instance") or w["instance"] for w in ws)
            self.r.check(f"alert {name} pending for {what if len(ws) < 4 else f'{len(ws)} targets'}", not miss,
                         f"missing {miss}; active: {[x['labels'] for x in have][:6]}" if miss else "")
        noisy = sorted(k for k, v in by.items() if any(x["labels"].get("target") == "dual" for x in v))
        self.r.check("no alert for the passing dual-stack target", not noisy, f"alerts: {noisy}" if noisy else "")
        # the nodata pairs (ipv4only, the IPv4-only endpoints over IPv6) and the as-asserted NAT64 path
        quiet = {"ipv4only", "nat64"}
        noisy = sorted(f"{k} {x['labels'].get('target')}" for k, v in by.items() for x in v
                       if x["labels"].get("target") in quiet
                       or (x["labels"].get("target", "").startswith("vpce-") and x["labels"].get("family") != "ipv4"))
        self.r.check("no alert for the nodata pairs (ipv4only, endpoints over IPv6) or the nat64 target",
                     not noisy, f"alerts: {noisy}" if noisy else "")
        self.r.check("DualprobeAbsent is quiet", "DualprobeAbsent" not in by, "")
        quiet_a = sorted(k for k in ("DualprobeFamilyDown", "DualprobeDiscoveryFailing", "DualprobeDiscoveryEmpty",
                                     "DualprobeTaskProberDown")
                         if any(x["labels"].get("instance") == a for x in by.get(k, [])))
        self.r.check("task a (both families partly working, discovery fine) raises no per-task alert", not quiet_a,
                     f"alerts: {quiet_a}" if quiet_a else "")

    def check_promql(self, base: str) -> None:
        nat64 = [] if self.nat64 else [f"--allow-empty=nat64_unreachable=no NAT64 scenario without a network "
                                       f"namespace ({self.no_netns})"]
        out = subprocess.run([sys.executable, CHECK_PROMQL, "--prometheus", base,
                              "--require-series", "--strict", *nat64,
                              *(f"--missing-metric={m}" for m in self.missing)],
                             capture_output=True, text=True, timeout=120)
        for line in (out.stdout + out.stderr).rstrip().splitlines():
            print(f"      {line}")
        summary = (out.stdout.strip().splitlines() or ["no output"])[-1]
        self.r.check("scripts/check-promql.py --require-series --strict", out.returncode == 0, summary)

    def namespace(self) -> None:
        if self.no_netns:
            ci = bool(os.environ.get("CI"))
            self.r.check(f"private network namespace: none ({self.no_netns})", not ci,
                         "CI must run the NAT64 scenarios (root, or unprivileged user namespaces)" if ci else "")
            print(f"NOTE  no private network namespace ({self.no_netns}): the NAT64 scenarios are left out")
            return
        ok, line = setup_netns()
        if not self.r.check("private network namespace: only lo, no route off it (unshare --net)", ok, line):
            raise Fatal

    def main(self) -> int:
        cp = load_check_promql()
        try:
            self.namespace()
            bin_ = self.binary()
            discovered = self.expected_discovery(bin_)
            self.check_443()
            dns_port = self.start_dns()
            self.check_dns(dns_port, discovered)
            certs = make_certs(self.work)
            self.r.check(f"test CA and a tls.test certificate valid {CERT_DAYS} days (openssl)", True)
            ports = self.start_peers(certs)
            cfg = self.dualprobe_config(dns_port, ports, certs[0])
            dp = self.start_dualprobe(bin_, cfg, "a")
            self.check_newer_metrics(dp)
            self.check_dualprobe_view(dp, discovered)
            dp_b = self.start_dualprobe(bin_, self.dualprobe_config_b(dns_port, ports), "b")
            self.check_task_b(dp_b)
            prom = self.start_prometheus([dp, dp_b])
            self.wait_for_data(prom)
            self.check_alerts(prom, discovered, dp, dp_b)
            self.check_rules(prom, cp)
            self.check_recorded(prom)
            self.check_promql(prom)
            # the peers are still what they were (nothing died during the run)
            dead = [n for n, p in self.procs if p.poll() is not None]
            self.r.check("dnsmasq, both dualprobes and prometheus still running", not dead, f"exited: {dead}")
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
    ap.add_argument("--no-netns", action="store_true",
                    help="run in the caller's network namespace, without the NAT64 scenarios")
    args = ap.parse_args(argv)
    for tool in ("dnsmasq", "prometheus", "openssl"):
        if not (shutil.which(tool) or os.path.exists(f"/usr/sbin/{tool}")):
            print(f"FAIL  {tool} not found (scripts/install-test-deps.sh)\n0 passed, 1 failed")
            return 1

    def on_term(signum, _frame):
        raise SystemExit(128 + signum)

    # replaced by the same run inside a private network namespace, unless that cannot be made
    no_netns = "--no-netns" if args.no_netns else reexec_in_netns(__file__, argv)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    return Run(args, no_netns).main()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
