#!/usr/bin/env python3
"""NAT64 + DNS64 end to end: the agent on an IPv6-only task behind a real NAT64 (tayga) and DNS64
(unbound), in network namespaces (docs/netns-suite.md, "NAT64 and DNS64").

    sudo tests/netns/nat64.py --bin target/debug/dualprobe
    sudo tests/netns/nat64.py --topology-only       # the topology with plain sockets, no agent

Three namespaces, named with this process's PID: task (IPv6 only, the agent) -- router (tayga
with the network-specific prefix 2001:db8:64::/96, unbound with dns64, forwarding) -- server (an
IPv4-only listener 198.51.100.10, a native IPv6 one 2001:db8:100::10, dnsmasq answering A-only
and A+AAAA names and ipv4only.arpa, upstream of the DNS64). Addresses only from 192.0.2.0/24,
198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32; nftables in every namespace counts and drops
anything else, and whatever goes to the metadata address in either form.

Each scenario prints one line `[n] name: PASS|FAIL (seconds): what it saw`; the last line is
`N passed, M failed`. Exit status 0 all passed, 1 a failure, 2 no binary at --bin. Without root,
`ip netns`, nft, dnsmasq, tayga, unbound or /dev/net/tun: `SKIPPED: reason` and exit 0 (1 when CI
is set). Everything is torn down however the run ends; the work directory is kept on failure.
Python 3 standard library only.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nat64_topology import (DNS64_6, DOMAIN, IMDS6, NATIVE6, POOL4, PREFIX, V4ONLY6, WKA,  # noqa: E402
                            Nat64Suite, tcp_get)
from scenarios import Check  # noqa: E402
from topology import REPO, SuiteError, delta_results, log  # noqa: E402

CHECKS = ("dns", "tcp", "http")
FAM = "ipv6"

SCENARIOS = [
    (0, "topology", "topology"),
    (1, "native-ipv6", "native"),
    (2, "ipv4-only-through-nat64", "through_nat64"),
    (3, "nat64-route-removed", "route_removed"),
    (4, "dns64-off", "dns64_off"),
    (5, "via-native-asserted-on-nat64", "via_mismatch"),
    (6, "rfc7050-discovery", "discovery"),
    (7, "metadata-via-nat64-forbidden", "forbidden"),
    (8, "tayga-stopped", "tayga_stopped"),
    (9, "discovered-prefix-refresh", "refresh"),
    (10, "egress-guard", "guard"),
]
AGENTLESS = {0, 10}


def skip(reason):
    log(f"SKIPPED: {reason}")
    sys.exit(1 if os.environ.get("CI") else 0)


def preflight(args):
    if os.geteuid() != 0:
        skip("the NAT64 suite needs root (network namespaces, veth, tun, nftables): run it with sudo")
    if shutil.which("ip") is None:
        skip("`ip` (iproute2) is not installed")
    p = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if p.returncode != 0:
        skip(f"`ip netns` does not work here: {p.stderr.strip()}")
    missing = [t for t in ("nft", "dnsmasq", "tayga", "unbound") if shutil.which(t) is None]
    if missing:
        skip(f"{', '.join(missing)} not installed (scripts/install-test-deps.sh: apt-get install "
             "nftables dnsmasq-base tayga unbound)")
    if not os.path.exists("/dev/net/tun"):
        skip("/dev/net/tun is missing: tayga needs a TUN device")
    if args.topology_only:
        return
    if not (os.path.isfile(args.bin) and os.access(args.bin, os.X_OK)):
        profile = "--release " if "release" in args.bin else ""
        log(f"error: no dualprobe binary at {args.bin}; build it with `cargo build {profile}--bin dualprobe` "
            f"(or pass --bin target/debug/dualprobe)")
        sys.exit(2)


class Nat64Scenarios:
    def __init__(self, suite):
        self.s = suite
        self.c = Check(suite)

    @property
    def iv(self):
        return self.s.interval

    # -- reading a snapshot --
    def via(self, snap, target):
        """The path the last IPv6 cycle used: `native`, `nat64`, or what the series look like."""
        vals = {v: snap.get("dualprobe_ipv6_path", target=target, via=v) for v in ("native", "nat64")}
        on = [v for v, x in vals.items() if x == 1]
        return on[0] if len(on) == 1 and sum(x or 0 for x in vals.values()) == 1 else f"path{vals}"

    def met(self, snap, target):
        return snap.get("dualprobe_expectation_met", target=target, family=FAM)

    def failing(self, snap, target):
        return [c for c in CHECKS
                if snap.get("dualprobe_probe_success", target=target, check=c, family=FAM) != 1]

    def state(self, snap, target, via, met=1):
        """(ok, description): every check passes, the path is `via`, expectation_met is `met`."""
        bad = self.failing(snap, target)
        seen_via, seen_met = self.via(snap, target), self.met(snap, target)
        ok = not bad and seen_via == via and seen_met == met
        return ok, (f"{target}: failing={','.join(bad) or '-'} via={seen_via} "
                    f"expectation_met={seen_met}")

    def healthy(self, snap):
        parts = [self.state(snap, "native", "native"), self.state(snap, "v4only", "nat64")]
        return all(ok for ok, _ in parts), "; ".join(d for _, d in parts)

    def wait_healthy(self, deadline=None):
        return self.c.wait(self.healthy, deadline or (3 * self.iv + self.s.timeout + 0.5))

    def only_ok(self, a, b, target):
        """Problems: any result other than ok between snapshots a and b, or no cycle at all."""
        out = []
        for c in CHECKS:
            bad = {k: v for k, v in delta_results(a, b, target, c, FAM).items() if k != "ok"}
            if bad:
                out.append(f"{target} {c}: {bad}")
        if not delta_results(a, b, target, "dns", FAM):
            out.append(f"{target}: no cycle ran")
        return out

    def hold(self, seconds, since, targets):
        """Waits `seconds`, then the problems of `targets` since snapshot `since`."""
        time.sleep(seconds)
        snap = self.s.scrape()
        return snap, [p for t in targets for p in self.only_ok(since, snap, t)]

    # -- 0: plain tools only --
    def topology(self):
        s, seen = self.s, []
        want = {f"v4only.{DOMAIN}": [V4ONLY6], f"native.{DOMAIN}": [NATIVE6], f"imds.{DOMAIN}": [IMDS6],
                "ipv4only.arpa": sorted(f"2001:db8:64::c000:{int(a.split('.')[3]):x}" for a in WKA)}
        for name, addrs in want.items():
            got = s.aaaa(name)
            if got is None or got[0] != 0 or sorted(got[1]) != addrs:
                return False, f"AAAA {name} from the DNS64: {got}, wanted {addrs}"
        seen.append("DNS64 synthesizes v4only/imds/ipv4only.arpa, native keeps its own AAAA")
        nx = s.aaaa(f"missing.{DOMAIN}")
        if nx is None or nx[0] != 3:
            return False, f"AAAA missing.{DOMAIN}: {nx}, wanted NXDOMAIN"
        syn0 = s.from_pool()
        for addr, what in ((V4ONLY6, "through tayga to 198.51.100.10"), (NATIVE6, "native")):
            try:
                line = s.in_ns(s.ns_t, tcp_get, addr)
            except OSError as e:
                return False, f"GET http://[{addr}]/healthz ({what}) from task: {e}"
            if not line.startswith("HTTP/1.1 200"):
                return False, f"GET http://[{addr}]/healthz ({what}): {line!r}"
        seen.append("GET /healthz 200 on the synthesized and the native address")
        syn1 = s.from_pool()
        if syn1 - syn0 != 1:
            return False, f"the IPv4-only server saw {syn1 - syn0} SYNs from tayga's pool {POOL4}, wanted 1"
        pool = re.findall(r"assigned new pool address (\S+) \(2001:db8:6a::10\)",
                          open(f"{s.work}/tayga.log", errors="replace").read())
        if not pool:
            return False, f"tayga.log does not show a pool address for the task: see {s.work}/tayga.log"
        seen.append(f"the server got the SYN from {POOL4} (tayga mapped 2001:db8:6a::10 to {pool[0]})")
        # The metadata guard counts: a connect from task to the synthesized metadata address is
        # dropped in task's own output hook (it never reaches the router) and counted once.
        before = s.counter("imds")
        try:
            s.in_ns(s.ns_t, tcp_get, IMDS6, 80, 0.5)
            return False, f"a connect to {IMDS6} got through the task's guard"
        except OSError:
            pass
        s.imds_self_test = s.counter("imds") - before
        if s.imds_self_test < 1:
            return False, f"the guard's imds counter did not count a connect to {IMDS6}"
        seen.append(f"the imds guard counts and drops ({s.imds_self_test} packet, self-test)")
        # The task has no IPv4 at all: the IPv4-only server is reachable only through NAT64.
        try:
            s.in_ns(s.ns_t, tcp_get, "198.51.100.10")
            return False, "the task reached 198.51.100.10 over IPv4: it should have no IPv4 path"
        except OSError:
            seen.append("no IPv4 path from task")
        if s.dns64:
            s.start_unbound(dns64=False)
            got = s.aaaa(f"v4only.{DOMAIN}")
            s.start_unbound(dns64=True)
            if got != (0, []):
                return False, f"without dns64, AAAA v4only.{DOMAIN} answered {got}, wanted NODATA"
            seen.append("without dns64: NODATA")
        return True, "; ".join(seen)

    # -- 1, 2: the two paths --
    def one_path(self, target, via, extra=None):
        ok, waited, snap, detail = self.c.wait(lambda sn: self.state(sn, target, via),
                                               self.s.args.warmup)
        if not ok:
            return False, f"not in state within {waited:.0f}s: {detail}"
        snap1, problems = self.hold(2 * self.iv, snap, [target])
        if problems:
            return False, f"{detail}; then: {'; '.join(problems)}"
        more = extra(snap1) if extra else (True, "")
        return more[0], f"{detail} (after {waited:.1f}s), only ok for 2 more intervals{more[1]}"

    def native(self):
        return self.one_path("native", "native")

    def prefix_series(self, snap):
        return {(lab.get("prefix"), lab.get("source")): v
                for lab, v in snap.series.get("dualprobe_nat64_prefix", [])}

    def through_nat64(self):
        def prefix(snap):
            want_src = "discovered" if self.s.discovery_config else "config"
            got = self.prefix_series(snap)
            ok = got.get((PREFIX, want_src)) == 1
            return ok, f"; dualprobe_nat64_prefix {got}" + ("" if ok else f" (wanted source={want_src})")
        return self.one_path("v4only", "nat64", prefix)

    # -- 3, 4, 8: faults on the NAT64 path --
    def fault(self, apply, revert, expect, label):
        """healthy -> apply -> v4only (and v4only-as-native) show expect(s0, snap, target) while
        native runs with only ok results -> revert -> healthy again."""
        ok, _, _, detail = self.wait_healthy()
        if not ok:
            return False, f"not healthy before the fault: {detail}"
        s0 = self.s.scrape()
        t0 = time.monotonic()
        apply()
        try:
            deadline = 2 * self.iv + self.s.timeout + 0.5

            def cond(sn):
                parts = [expect(s0, sn, t) for t in ("v4only", "v4only-as-native")]
                return all(ok for ok, _ in parts), "; ".join(d for _, d in parts)
            ok, waited, snap, seen = self.c.wait(cond, deadline)
            rest = max(0.0, 2 * self.iv - (time.monotonic() - t0))
            snap1, problems = self.hold(rest, s0, ["native"])
        finally:
            revert()
        if not ok:
            return False, f"{label}: not seen within {deadline:.1f}s: {seen}"
        if problems:
            return False, f"{label}: {seen}; but native: {'; '.join(problems)}"
        ok, back, _, detail = self.wait_healthy()
        if not ok:
            return False, f"{label}: {seen} ({waited:.1f}s); no recovery: {detail}"
        return True, f"{label}: {seen} after {waited:.1f}s; native only ok; recovered in {back:.1f}s"

    def tcp_reason(self, reason):
        def expect(s0, sn, target):
            d = delta_results(s0, sn, target, "tcp", FAM)
            after = {c: delta_results(s0, sn, target, c, FAM) for c in ("http",)}
            ok = d.get(reason, 0) > 0 and sn.get("dualprobe_probe_success", target=target,
                                                  check="tcp", family=FAM) == 0
            return ok, f"{target} tcp {d or '{}'}, http {after['http'] or '{}'}"
        return expect

    def route_removed(self):
        s = self.s
        return self.fault(lambda: s.ip(s.ns_t, "-6", "route", "del", PREFIX),
                          lambda: s.ip(s.ns_t, "-6", "route", "add", PREFIX, "via", "2001:db8:6a::1",
                                       "dev", "n64-t", check=False),
                          self.tcp_reason("nat64_unreachable"),
                          f"task route to {PREFIX} deleted")

    def tayga_stopped(self):
        s = self.s
        return self.fault(s.stop_tayga, s.start_tayga, self.tcp_reason("nat64_unreachable"),
                          "tayga stopped")

    def dns64_off(self):
        s = self.s

        def expect(s0, sn, target):
            d = delta_results(s0, sn, target, "dns", FAM)
            ok = d.get("nodata", 0) > 0 and sn.get("dualprobe_probe_success", target=target,
                                                    check="dns", family=FAM) == 0
            return ok, f"{target} dns {d or '{}'}"
        return self.fault(lambda: s.start_unbound(dns64=False), lambda: s.start_unbound(dns64=True),
                          expect, "unbound restarted without dns64")

    # -- 5: the expectation on the path --
    def via_mismatch(self):
        ok, waited, snap, detail = self.c.wait(
            lambda sn: self.state(sn, "v4only-as-native", "nat64", met=0), 2 * self.iv + 0.5)
        if not ok:
            return False, f"wanted every check passing, via=nat64, expectation_met=0: {detail}"
        snap1, problems = self.hold(2 * self.iv, snap, ["v4only-as-native"])
        ok1, d1 = self.state(snap1, "v4only-as-native", "nat64", met=0)
        ok2, d2 = self.state(snap1, "v4only", "nat64", met=1)
        if problems or not ok1 or not ok2:
            return False, "; ".join(problems + [d1, d2])
        return True, f"{d1} (expect via native); {d2} (expect via nat64)"

    # -- 6: RFC 7050 --
    def discovery(self):
        """Agent restarted without nat64_prefixes: the prefix must come from RFC 7050 (the
        AAAA of ipv4only.arpa, which unbound's log shows it asked), nothing from the config; the
        well-known prefix may be listed beside it as such."""
        def queries():
            with open(f"{self.s.work}/unbound.log", errors="replace") as f:
                return f.read().count("2001:db8:6a::10 ipv4only.arpa. AAAA IN")
        q0 = queries()
        self.s.restart_agent(discovery=True)

        def cond(sn):
            got = self.prefix_series(sn)
            ok, detail = self.healthy(sn)
            others = {k: v for k, v in got.items() if k != (PREFIX, "discovered")}
            pfx = got.get((PREFIX, "discovered")) == 1 and all(
                src == "well_known" for (_, src) in others)
            return ok and pfx, f"dualprobe_nat64_prefix {got}; {detail}"
        ok, waited, snap, detail = self.c.wait(cond, self.s.args.warmup)
        asked = queries() - q0
        if not ok:
            return False, f"nat64_prefixes unset: {detail}; {asked} ipv4only.arpa AAAA queries"
        if asked < 1:
            return False, f"{detail}, but unbound's log shows no ipv4only.arpa AAAA query from the task"
        return True, (f"nat64_prefixes unset: {detail} after {waited:.1f}s; "
                      f"{asked} ipv4only.arpa AAAA queries from the task")

    # -- 7: the guard on a synthesized metadata address --
    def forbidden(self):
        c0 = self.s.counter("imds")
        s0 = self.s.scrape()
        time.sleep(2 * self.iv + self.s.timeout)
        sn = self.s.scrape()
        d = {c: delta_results(s0, sn, "imds", c, FAM) for c in CHECKS}
        refused = sum(x.get("forbidden", 0) for x in d.values())
        reached = d["tcp"].get("ok", 0) + d["http"].get("ok", 0)
        c1 = self.s.counter("imds")
        # Each agent of the run (configured prefix, then discovered one) logged the refusal.
        logs = [self.s.agent_log] + [f"{self.s.work}/agent-{m}-prefix.log" for m in ("configured", "discovered")]
        refusals = {}
        for path in logs:
            if os.path.exists(path):
                with open(path, errors="replace") as f:
                    refusals[os.path.basename(path)] = sum(
                        1 for ln in f if '"target":"imds"' in ln and "forbidden" in ln)
        line = (f"{self.s.prefix_mode()}: imds ({IMDS6}): {d}; nft counter for {IMDS6} and "
                f"169.254.169.254: {c1 - c0} packets in the window, {c1 - self.s.imds_self_test} "
                f"in the run; refusals logged: {refusals}")
        return (refused > 0 and reached == 0 and c1 == self.s.imds_self_test
                and all(refusals.values())), line

    # -- 9: the discovered prefix follows the DNS64 --
    def refresh(self):
        """With the prefix discovered (nat64_refresh 2s): DNS64 gone -> the discovered prefix is
        forgotten within a refresh (+ a query timeout and a poll); DNS64 back -> rediscovered, and
        v4only is classified nat64 again."""
        s = self.s
        if not s.discovery_config:
            s.restart_agent(discovery=True)
        ok, _, _, detail = self.c.wait(
            lambda sn: (self.prefix_series(sn).get((PREFIX, "discovered")) == 1, str(self.prefix_series(sn))),
            self.s.args.warmup)
        if not ok:
            return False, f"no discovered prefix to begin with: {detail}"
        refresh = 2.0
        bound = refresh + s.timeout + 1.0
        imds0 = s.counter_by_ns("imds")

        def gone(sn):
            got = self.prefix_series(sn)
            return not got.get((PREFIX, "discovered")), str(got)
        s.start_unbound(dns64=False)
        try:
            ok, t_gone, _, seen_gone = self.c.wait(gone, 2 * bound)
        finally:
            s.start_unbound(dns64=True)
        if not ok:
            return False, f"dns64 off: the discovered prefix is still listed after {t_gone:.1f}s: {seen_gone}"

        def back(sn):
            got = self.prefix_series(sn)
            st, d = self.state(sn, "v4only", "nat64")
            return got.get((PREFIX, "discovered")) == 1 and st, f"{got}; {d}"
        ok, t_back, _, seen_back = self.c.wait(back, 2 * bound + self.iv)
        if not ok:
            return False, f"dns64 back: not rediscovered within {t_back:.1f}s: {seen_back}"
        time.sleep(self.iv + s.timeout)  # a cycle of imds under the rediscovered prefix
        line = (f"dns64 off: discovered prefix gone after {t_gone:.1f}s ({seen_gone}); dns64 "
                f"back: {seen_back} after {t_back:.1f}s")
        imds = {ns: n - imds0.get(ns, 0) for ns, n in s.counter_by_ns("imds").items()
                if n - imds0.get(ns, 0)}
        if imds:
            # The DNS64 answered again before the agent had rediscovered the prefix: imds's AAAA
            # (the metadata address, synthesized) was not recognized as NAT64 and was connected to.
            log_hits = [r.get("detail", "") for r in s.agent_log_lines()
                        if "imds" in r.get("_targets", []) and "a9fe:a9fe" in str(r.get("detail"))
                        and "forbidden" not in str(r.get("reason"))]
            return False, (f"{line}; but {sum(imds.values())} packet(s) to {IMDS6} (dropped by the "
                           f"suite's guard: {imds}); agent: {log_hits[-1:] or 'no log line'}")
        return True, line + f"; no packet to {IMDS6}"

    # -- 10 --
    def guard(self):
        stray, imds = self.s.counter("stray"), self.s.counter("imds") - self.s.imds_self_test
        return stray == 0 and imds == 0, (f"{stray} packets outside the documentation prefixes, "
                                          f"{imds} to the metadata address, in {len(self.s.namespaces)} namespaces")


def main():
    ap = argparse.ArgumentParser(description="dualprobe behind a real NAT64 + DNS64, in network "
                                             "namespaces (docs/netns-suite.md)")
    ap.add_argument("--bin", default=os.path.join(REPO, "target/release/dualprobe"),
                    help="the dualprobe binary (default: target/release/dualprobe)")
    ap.add_argument("--topology-only", action="store_true",
                    help="build and check the topology with plain sockets; no agent, no --bin")
    ap.add_argument("--interval", type=int, default=2, help="probe interval, seconds (default 2)")
    ap.add_argument("--timeout", type=int, default=1, help="probe timeout, seconds (default 1)")
    ap.add_argument("--warmup", type=float, default=30.0, help="seconds to wait for a first state")
    ap.add_argument("--only", help="comma-separated scenario numbers (0 and 10 always run)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory also on success")
    args = ap.parse_args()
    if not os.path.isabs(args.bin):
        args.bin = os.path.abspath(args.bin)
    preflight(args)
    wanted = None if not args.only else {int(x) for x in args.only.split(",") if x.strip()}
    if args.topology_only:
        wanted = set()

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)

    suite = Nat64Suite(args)
    passed = failed = 0
    keep = args.keep
    started = time.monotonic()
    try:
        log(f"NAT64 suite: namespaces {suite.ns_t} / {suite.ns_r} / {suite.ns_s}"
            + ("" if args.topology_only else f", binary {args.bin}, interval {args.interval}s, "
               f"timeout {args.timeout}s"))
        suite.setup()
        log(f"topology up in {time.monotonic() - started:.1f}s: tayga {PREFIX}, unbound dns64 on "
            f"[{DNS64_6}]:53")
        sc = Nat64Scenarios(suite)
        for num, name, method in SCENARIOS:
            if wanted is not None and num not in wanted and num not in AGENTLESS:
                continue
            if num not in AGENTLESS and "agent" not in suite.procs:
                suite.write_config(discovery=False)
                suite.start_agent()
            t0 = time.monotonic()
            try:
                ok, line = getattr(sc, method)()
            except SuiteError as e:
                ok, line = False, f"suite error: {e}"
            agent = suite.procs.get("agent")
            if agent and not agent.alive():
                ok, line = False, line + f"; AGENT EXITED with {agent.p.returncode}"
            log(f"[{num}] {name}: {'PASS' if ok else 'FAIL'} ({time.monotonic() - t0:.0f}s): {line}")
            passed, failed = (passed + 1, failed) if ok else (passed, failed + 1)
            keep = keep or not ok
            if agent and not agent.alive():
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
