"""Scenario `newkinds` (issue 14's benchmarks): CPU per probe and bytes sent per cycle of `icmp`,
`happy_eyeballs`, `pmtu` and `trace`, with blackbox_exporter's `icmp` prober side by side.

Topology (netns.py; root only), the one of tests/it/pmtu_netns.rs: task `t` -> router `r1` ->
(a 1280-byte link) -> router `r2` -> server `s`:
  t  192.0.2.2/24    2001:db8:1::2/64  --  r1 192.0.2.1 / 2001:db8:1::1 (MTU 1500)
  r1 198.51.100.1/24 2001:db8:2::1/64  --  r2 198.51.100.2 / 2001:db8:2::2 (MTU 1280)
  r2 203.0.113.1/24  2001:db8:3::1/64  --  s  203.0.113.2 / 2001:db8:3::2 (MTU 1500)
`t` routes only the documentation prefixes (to r1); `net.ipv4.ping_group_range` is "0 2147483647"
in `t` only (the sysctl is per namespace; the host's is left alone). The routers and `s` have
ICMP rate limits off, so a trace at this rate is not cut short by them. In `s`: the netns suite's
services.py (HTTPS on 443 with a self-signed certificate naming 200 hosts, so the server's flight
spans several full-size segments, as pmtu's TCP comparison wants) and dnsmasq answering
he.bench.test (A 203.0.113.2, AAAA 2001:db8:3::2).

One phase per kind, fresh dualprobe in `t` (listening on t's loopback, scraped only outside the
window): N targets per family every I s (IP literals on port 443; happy_eyeballs: he.bench.test
on 443, both families, the resolver being dnsmasq in `s`), then blackbox's icmp prober driven
with /probe at the dualprobe icmp phase's rate. Over each window:
  * CPU per probe = the process's CPU clock delta / its probes (dualprobe_probes_total, or the
    /probe answers). happy_eyeballs: per race; the race runs in the IPv6 cycle and the target's
    IPv4 cycle passes at once, so "per race" is the CPU of both cycles of a target.
  * bytes sent per cycle = IP bytes (headers included) leaving t's link, counted per family by an
    nftables output rule on that link (loopback scrapes excluded), / cycles of that family (or
    / races, both families' packets together). Steady state: the path MTU (1280) is cached
    after the first cycle, as in a long-running agent; DNS is included for happy_eyeballs
    (its own A and AAAA queries, sent over IPv4 to the resolver).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

from agents import Driver, start_blackbox
from common import LOOP4, free_port4, http_get, log, parse_probes_by, ready_bound, wait_http
from localnet import Env
from netns import HERE, Netns
from procfs import CpuWindow

T4, T6 = "192.0.2.2", "2001:db8:1::2"
S4, S6 = "203.0.113.2", "2001:db8:3::2"
SERVICES = os.path.join(os.path.dirname(HERE), "tests", "netns", "services.py")
KINDS = ("icmp", "happy_eyeballs", "pmtu", "trace")
NFT_RE = re.compile(r"counter packets (\d+) bytes (\d+) comment \"(ipv4|ipv6)\"")


class Chain:
    """t -> r1 -> r2 -> s, the peers in s, a per-family byte counter on t's link."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.ns = Netns(["t", "r1", "r2", "s"])
        try:
            self._build()
        except Exception:
            self.ns.close()
            raise

    def _build(self) -> None:
        ns, env = self.ns, self.env
        ns.veth("t", "l0", "r1", "r0", [f"{T4}/24", f"{T6}/64"], ["192.0.2.1/24", "2001:db8:1::1/64"])
        ns.veth("r1", "l1", "r2", "r1", ["198.51.100.1/24", "2001:db8:2::1/64"],
                ["198.51.100.2/24", "2001:db8:2::2/64"], mtu=1280)
        ns.veth("r2", "l2", "s", "r2", ["203.0.113.1/24", "2001:db8:3::1/64"], [f"{S4}/24", f"{S6}/64"])
        for r in ("r1", "r2"):
            ns.sysctl(r, "net.ipv4.ip_forward", "1")
            ns.sysctl(r, "net.ipv6.conf.all.forwarding", "1")
        for r in ("r1", "r2", "s"):
            for key, v in (("net.ipv4.icmp_ratelimit", "0"), ("net.ipv6.icmp.ratelimit", "0"),
                           ("net.ipv4.icmp_msgs_per_sec", "100000"), ("net.ipv4.icmp_msgs_burst", "10000")):
                try:
                    ns.sysctl(r, key, v)
                except Exception:  # older kernels keep some of these global: leave them
                    pass
        ns.sysctl("t", "net.ipv4.ping_group_range", "0 2147483647")
        for net in ("198.51.100.0/24", "203.0.113.0/24"):
            ns.ip("t", "route", "add", net, "via", "192.0.2.1")
        ns.ip("t", "-6", "route", "add", "2001:db8::/32", "via", "2001:db8:1::1")
        ns.ip("s", "route", "add", "192.0.2.0/24", "via", "203.0.113.1")
        ns.ip("s", "-6", "route", "add", "2001:db8:1::/64", "via", "2001:db8:3::1")
        ns.ip("r1", "route", "add", "203.0.113.0/24", "via", "198.51.100.2")
        ns.ip("r1", "-6", "route", "add", "2001:db8:3::/64", "via", "2001:db8:2::2")
        ns.ip("r2", "route", "add", "192.0.2.0/24", "via", "198.51.100.1")
        ns.ip("r2", "-6", "route", "add", "2001:db8:1::/64", "via", "2001:db8:2::1")
        self.nft = shutil.which("nft") is not None
        if self.nft:
            # Neighbour discovery is left out, as ARP is (not IP): it is the link's, not a probe's.
            rules = ("table inet dpbench {\n chain out {\n  type filter hook output priority 0; policy accept;\n"
                     '  icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, '
                     'mld2-listener-report } accept\n'
                     '  oifname "l0" meta nfproto ipv4 counter comment "ipv4"\n'
                     '  oifname "l0" meta nfproto ipv6 counter comment "ipv6"\n }\n}\n')
            subprocess.run(ns.argv("t", ["nft", "-f", "-"]), input=rules.encode(), check=True, capture_output=True)
        d = env.path("newkinds-tls")
        os.makedirs(d, exist_ok=True)
        san = ",".join(f"DNS:host-{i:03d}.pmtu.test" for i in range(1, 201))
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", f"{d}/k.pem", "-out", f"{d}/c.pem", "-days", "2", "-subj", "/CN=x",
                        "-addext", f"subjectAltName={san}"], check=True, capture_output=True)
        self.services = env.procs.start("services-s", ns.argv("s", [
            sys.executable, "-B", SERVICES, "--cert", f"{d}/c.pem", "--key", f"{d}/k.pem", "--max-seconds", "3600"]),
            env.path("services-s.log"), stdout=subprocess.PIPE, stdin=subprocess.PIPE)
        if self.services.stdout.readline().strip() != b"ready":
            raise RuntimeError("services.py did not start in s (see services-s.log)")
        hosts = env.path("newkinds-hosts")
        with open(hosts, "w") as f:
            f.write(f"{S4} he.bench.test\n{S6} he.bench.test\n")
        os.chmod(hosts, 0o644)
        self.dnsmasq = env.procs.start("dnsmasq-nk", ns.argv("s", [
            "dnsmasq", "--no-daemon", "--port=53", f"--listen-address={S4},{S6}", "--bind-interfaces",
            "--no-resolv", "--no-hosts", f"--addn-hosts={hosts}", "--cache-size=0", "--pid-file="]),
            env.path("dnsmasq-nk.log"))
        time.sleep(0.3)

    def tx(self) -> dict:
        """IP bytes and packets sent on t's link so far, per family (and the link's total)."""
        out = {"link": self.ns.link_bytes("t", "l0")["tx"]}
        if self.nft:
            text = subprocess.run(self.ns.argv("t", ["nft", "list", "table", "inet", "dpbench"]),
                                  capture_output=True, text=True, check=True).stdout
            for pk, by, fam in NFT_RE.findall(text):
                out[fam] = int(by)
                out[fam + "_packets"] = int(pk)
        return out

    def close(self) -> None:
        if self.services.stdin:
            self.services.stdin.close()
        self.ns.close()


def kind_config(env: Env, kind: str, n: int, interval: float, timeout: float, port: int) -> str:
    lines = [f'listen: "{LOOP4}:{port}"', f"interval: {interval:g}s", f"timeout: {timeout:g}s",
             "families: [ipv4, ipv6]", "resolver:", f'  nameservers: ["{S4}:53"]', "targets:"]
    for i in range(n):
        if kind == "happy_eyeballs":
            lines.append(f"  - {{name: he-{i}, host: he.bench.test, port: 443, checks: [happy_eyeballs]}}")
        else:
            lines.append(f'  - {{name: {kind}4-{i}, host: "{S4}", port: 443, checks: [{kind}]}}')
            lines.append(f'  - {{name: {kind}6-{i}, host: "{S6}", port: 443, checks: [{kind}]}}')
    path = env.path(f"newkinds-{kind}.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def delta(a: dict, b: dict) -> dict:
    return {k: b.get(k, 0) - a.get(k, 0) for k in b}


def dp_phase(env: Env, chain: Chain, kind: str, n: int, interval: float, timeout: float, window: float,
             settle: float) -> dict:
    port = free_port4()
    cfg = kind_config(env, kind, n, interval, timeout, port)
    dp = env.procs.start("dualprobe", [env.args.bin, "run", "--config", cfg, "--listen", f"{LOOP4}:{port}"],
                         env.path(f"dualprobe-newkinds-{kind}.log"))
    try:
        wait_http(port, "/-/healthy", 15, dp)
        wait_http(port, "/-/ready", ready_bound(2 * n, interval, timeout), dp)
        time.sleep(settle)
        c0 = parse_probes_by(http_get(port, "/metrics", timeout=30)[1])
        x0 = chain.tx()
        w = CpuWindow()
        w.start(dp.pid)
        time.sleep(window)
        cpu = w.stop()
        x1 = chain.tx()
        c1 = parse_probes_by(http_get(port, "/metrics", timeout=30)[1])
    finally:
        env.procs.stop(dp)
    d = delta(c0, c1)
    cyc = {f: sum(v for (c, fam, _), v in d.items() if c == kind and fam == f) for f in ("ipv4", "ipv6")}
    failed = sum(v for (c, _, r), v in d.items() if c == kind and r != "ok")
    results = sorted({r for (c, _, r), v in d.items() if c == kind and v})
    tx = delta(x0, x1)
    out = {"kind": kind, "targets": n, "interval_s": interval, "cycles": cyc, "failed": failed,
           "results": results, "cpu_ns": cpu["cpu_ns"], "wall_s": cpu["wall_s"], "tx": tx}
    if kind == "happy_eyeballs":
        races = cyc["ipv6"]
        out["probes"] = races
        out["us_per_probe"] = cpu["cpu_ns"] / 1e3 / races if races else float("nan")
        both = tx.get("ipv4", 0) + tx.get("ipv6", 0) if chain.nft else tx["link"]
        out["bytes_per_cycle"] = {"race": both / races if races else float("nan")}
        if chain.nft and races:
            out["bytes_per_cycle"].update({f"of which {f}": tx.get(f, 0) / races for f in ("ipv4", "ipv6")})
    else:
        total = cyc["ipv4"] + cyc["ipv6"]
        out["probes"] = total
        out["us_per_probe"] = cpu["cpu_ns"] / 1e3 / total if total else float("nan")
        if chain.nft:
            out["bytes_per_cycle"] = {f: tx.get(f, 0) / cyc[f] if cyc[f] else float("nan") for f in ("ipv4", "ipv6")}
        else:
            out["bytes_per_cycle"] = {"both": tx["link"] / total if total else float("nan")}
    return out


def bb_icmp_phase(env: Env, chain: Chain, n: int, interval: float, timeout: float, window: float,
                  settle: float) -> dict:
    bb, bport = start_blackbox(env, timeout)
    rate = 2 * n / interval
    drv = Driver(bport, [("ipv4", f"/probe?module=icmp4&target={S4}"), ("ipv6", f"/probe?module=icmp6&target={S6}")],
                 rate, 1 + settle + window + 5, workers=max(4, min(16, int(rate / 10) + 4)))
    try:
        drv.start()
        time.sleep(1 + settle)
        x0, t0 = chain.tx(), time.monotonic()
        w = CpuWindow()
        w.start(bb.pid)
        time.sleep(window)
        cpu = w.stop()
        x1, t1 = chain.tx(), time.monotonic()
    finally:
        drv.join(5)
        env.procs.stop(bb)
    got = drv.between(t0, t1)
    per = {f: got.get((f, "ok"), 0) + got.get((f, "fail"), 0) for f in ("ipv4", "ipv6")}
    total = per["ipv4"] + per["ipv6"]
    tx = delta(x0, x1)
    bpc = ({f: tx.get(f, 0) / per[f] if per[f] else float("nan") for f in ("ipv4", "ipv6")} if chain.nft
           else {"both": tx["link"] / total if total else float("nan")})
    return {"kind": "icmp", "probes": total, "failed": sum(v for (_, r), v in got.items() if r != "ok"),
            "us_per_probe": cpu["cpu_ns"] / 1e3 / total if total else float("nan"), "bytes_per_cycle": bpc,
            "cpu_ns": cpu["cpu_ns"], "wall_s": cpu["wall_s"], "tx": tx}


def run(env: Env, n: int, interval: float, window: float, timeout: float | None = None,
        kinds: tuple = KINDS, with_blackbox: bool = True, settle: float = 1.0) -> dict:
    timeout = min(2.0, interval / 2) if timeout is None else timeout
    chain = Chain(env)
    out: dict = {"targets": n, "interval_s": interval, "window_s": window, "nft": chain.nft,
                 "dualprobe": {}, "blackbox": {}}
    try:
        with chain.ns.entered("t"):
            for kind in kinds:
                log(f"newkinds: {kind}, {n} targets{' x 2 families' if kind != 'happy_eyeballs' else ''} "
                    f"every {interval:g}s, {window:g}s window")
                r = dp_phase(env, chain, kind, n, interval, timeout, window, settle)
                log(f"  {r['us_per_probe']:.0f} us/probe over {r['probes']:.0f}, bytes/cycle "
                    + ", ".join(f"{k} {v:.0f}" for k, v in r["bytes_per_cycle"].items())
                    + f"; results {','.join(r['results'])}")
                out["dualprobe"][kind] = r
            if with_blackbox and "icmp" in kinds:
                log(f"newkinds: blackbox icmp at the same rate ({2 * n / interval:g}/s)")
                r = bb_icmp_phase(env, chain, n, interval, timeout, window, settle)
                log(f"  {r['us_per_probe']:.0f} us/probe over {r['probes']}")
                out["blackbox"]["icmp"] = r
    finally:
        chain.close()
    return out


def report(res: dict) -> None:
    print(f"\n== newkinds (issue 14): CPU per probe and bytes sent per cycle, netns task -> router -> "
          f"router -> server, {res['targets']} targets per family every {res['interval_s']:g}s, "
          f"{res['window_s']:g}s windows ==")
    print(f"  {'kind':16} {'dualprobe us/probe':>18} {'blackbox':>9} {'ratio':>6} {'probes':>7} {'failed':>6}  "
          f"bytes sent per cycle (IP headers included)")
    for kind, r in res["dualprobe"].items():
        bb = res["blackbox"].get(kind)
        bbs = f"{bb['us_per_probe']:9.0f}" if bb else f"{'-':>9}"
        ratio = f"{r['us_per_probe'] / bb['us_per_probe']:6.3f}" if bb and bb["us_per_probe"] else f"{'-':>6}"
        per = "per race" if kind == "happy_eyeballs" else "per cycle"
        b = ", ".join(f"{k} {v:.0f}" for k, v in r["bytes_per_cycle"].items())
        print(f"  {kind:16} {r['us_per_probe']:18.0f} {bbs} {ratio} {r['probes']:7.0f} {r['failed']:6.0f}  {b} ({per})")
        if bb:
            print(f"  {'  blackbox icmp':16} {'':18} {'':9} {'':6} {bb['probes']:7} {bb['failed']:6}  "
                  + ", ".join(f"{k} {v:.0f}" for k, v in bb["bytes_per_cycle"].items()) + " (per probe)")
    if not res["nft"]:
        print("  (nft not found: bytes are the link's Ethernet frames, both families together)")
    print("  happy_eyeballs: CPU and bytes per race (both cycles of a target; DNS A+AAAA included)")
