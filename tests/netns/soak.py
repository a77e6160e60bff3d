#!/usr/bin/env python3
"""Soak test of dualprobe in the netns suite's dual-stack "VPC" (docs/benchmarks.md, "Soak").

    sudo tests/netns/soak.py --bin target/x86_64-unknown-linux-gnu/release/dualprobe --minutes 30

Builds the suite's topology (tests/netns/topology.py: namespaces task and aws, links vpc/egw/pl,
dnsmasq, the HTTP/HTTPS listeners; no moto, no Prometheus), starts the agent in `task` with 200
targets (names served by the suite's dnsmasq, the listeners' addresses on both families, a mix of
dns/tcp/tls/http chains, interval 10 s, timeout 2 s) and then, for --minutes, every minute:
  :02  a reload, alternating SIGHUP and POST /-/reload, between two valid target sets that differ
       in 5 targets: the new set must be live (and the removed targets' series gone) at once
  :12  a fault, alternating: the IPv6 path (even minutes: the default route deleted, or the egw
       link down, in turn) or a dnsmasq restart (odd minutes). Every affected (target, family)
       pair must show the failure within interval + timeout + one poll, the unaffected family must
       not, and every pair must be back within the same bound after the fault is undone
  :48  every third minute (1, 4, 7, ...) a bad config, which must be refused (400, or
       dualprobe_config_last_reload_successful 0 after SIGHUP) while the old targets keep running
Every --scrape-every (15 s) it records the agent's VmRSS, RssAnon, open fds, threads, CPU time,
the number of series on /metrics and the failing pairs. At the end: no stuck pair (every pair's
cycle count advanced across every pair of samples at least 2 x interval apart), every scrape
answered, flat RSS/RssAnon/fds/threads (soak_report.py: last third's median against the first
third's after warm-up, and a slope per hour), no packet outside the documentation prefixes.

Each check prints `[n] ... PASS|FAIL`; the last line is `N passed, M failed` (exit 1 if any
failed). --out DIR gets samples.csv, events.csv, summary.json, soak.svg and table.md. Without
root, `ip netns`, nft or dnsmasq: `SKIPPED` and exit 0 (1 with CI set), as the suite. The topology
is torn down however the run ends. Python 3 standard library only.
"""
import argparse
import concurrent.futures
import csv
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import soak_report  # noqa: E402
from run import preflight  # noqa: E402
from topology import (_LABEL, _SAMPLE, EGW_A6, EGW_T6, LEGACY4, METRICS_PORT, S3_4, S3_6,  # noqa: E402
                      SVC_VPCE4, VPC_DNS4, WEB4, WEB6, Suite, SuiteError, Target, log)

DOMAIN = "soak.test"
OK_RESULTS = ("ok", "aws_denied")
BAD_CONFIGS = [  # (what, how the good document is broken)
    ("unknown check", lambda doc: doc.replace("checks: [dns, tcp]", "checks: [dns, ping]", 1)),
    ("timeout >= interval", lambda doc: doc.replace("timeout: ", "timeout: 30s #", 1)),
    ("YAML syntax error", lambda doc: doc + "  - name: [unclosed\n"),
    ("duplicate target name", lambda doc: doc + doc[doc.index("  - name: "):].split("\n  - name: ")[0] + "\n"),
]


# ---- the 200 targets -----------------------------------------------------------------------------
class Spec(Target):
    """A soak target: a Target (name, checks, families, expect) plus what its config needs."""

    def __init__(self, name, checks, families, expect=None, addrs=(), port=80, scheme=None):
        super().__init__(name, checks, families, expect)
        self.host, self.addrs, self.port, self.scheme = f"{name}.{DOMAIN}", addrs, port, scheme

    def yaml(self, ca):
        lines = [f"  - name: {self.name}", f"    host: {self.host}", f"    port: {self.port}",
                 f"    checks: [{', '.join(self.checks)}]"]
        if self.families != ["ipv4", "ipv6"]:
            lines.append(f"    families: [{', '.join(self.families)}]")
        if self.scheme:
            lines.append(f"    http: {{ path: /healthz, scheme: {self.scheme} }}")
        if "tls" in self.checks:
            lines.append(f'    tls: {{ ca_file: "{ca}" }}')
        if self.expect:
            lines.append("    expect: {" + ", ".join(f"{k}: {v}" for k, v in self.expect.items()) + "}")
        return "\n".join(lines)


def make_spec(name, i, tls):
    """Target i of the mix: 4 in 5 dual-stack (dns+tcp; +http; +tls; +tls+http, on the web or the
    s3 addresses), the 5th IPv4 only: over PrivateLink (dns+tcp+tls), or every 4th of those an
    A-only name on both families that must stay unreachable over IPv6."""
    dual = (WEB4, WEB6) if i % 2 == 0 else (S3_4, S3_6)
    kind = i % 5
    if kind == 4 and i % 20 == 4:
        return Spec(name, ["dns", "tcp", "http"], ["ipv4", "ipv6"], {"ipv4": "reachable", "ipv6": "unreachable"},
                    (LEGACY4,), 80, "http")
    if kind == 4:
        return Spec(name, ["dns", "tcp", "tls"] if tls else ["dns", "tcp"], ["ipv4"], None, (SVC_VPCE4,),
                    443 if tls else 80)
    if kind in (2, 3) and not tls:
        kind -= 2
    checks = [["dns", "tcp"], ["dns", "tcp", "http"], ["dns", "tcp", "tls"], ["dns", "tcp", "tls", "http"]][kind]
    port = 443 if "tls" in checks else 80
    scheme = ("https" if "tls" in checks else "http") if "http" in checks else None
    return Spec(name, checks, ["ipv4", "ipv6"], None, dual, port, scheme)


class SoakSuite(Suite):
    """The suite's topology with the soak's targets and configs."""
    services_seconds = 4 * 3600

    def __init__(self, args):
        super().__init__(args)
        n, d = args.targets, args.differ
        self.common = [f"t{i:03d}" for i in range(n - d)]
        self.sets = {"A": self.common + [f"a{i:03d}" for i in range(d)],
                     "B": self.common + [f"b{i:03d}" for i in range(d)]}
        self.specs = {}
        self.current = "A"

    def cert_names(self):
        return super().cert_names() + [f"*.{DOMAIN}"]

    def host_lines(self, aaaa=True):
        lines = super().host_lines(aaaa)
        for sp in self.specs.values():
            lines += [f"{a} {sp.host}" for a in sp.addrs if aaaa or ":" not in a]
        return lines

    def define_targets(self):
        names = self.common + [x for x in self.sets["A"] + self.sets["B"] if x not in self.common]
        self.specs = {name: make_spec(name, i, self.tls) for i, name in enumerate(names)}
        self.write_hosts(aaaa=True)  # now with the soak's names; dnsmasq rereads on SIGHUP
        self.procs["dnsmasq"].signal(signal.SIGHUP)
        self.targets = [self.specs[x] for x in self.sets[self.current]]

    def config_text(self, which):
        ca = f"{self.work}/ca.pem"
        body = "\n".join(self.specs[x].yaml(ca) for x in self.sets[which])
        return (f"# written by tests/netns/soak.py (set {which})\ninterval: {self.interval}s\n"
                f"timeout: {self.timeout}s\nfamilies: [ipv4, ipv6]\nresolver:\n"
                f'  nameservers: ["{VPC_DNS4}:53"]\ntargets:\n{body}\n')

    def check_config(self, path):
        out = subprocess.run([self.args.bin, "check-config", path], capture_output=True, text=True, timeout=30)
        return out.returncode, (out.stderr + out.stdout).strip()

    def write_config(self, which=None, bad=None):
        """Writes set `which` (default: the current one) to dualprobe.yaml, or its bad variant."""
        doc = self.config_text(which or self.current)
        if bad is not None:
            doc = BAD_CONFIGS[bad][1](doc)
        path = f"{self.work}/dualprobe.yaml"
        with open(path + ".tmp", "w") as f:
            f.write(doc)
        os.replace(path + ".tmp", path)
        return path

    def validate_configs(self):
        """Both sets pass check-config, every bad variant fails it: the reloads test what they say."""
        for which in ("A", "B"):
            code, text = self.check_config(self.write_config(which))
            if code != 0:
                raise SuiteError(f"check-config rejected target set {which}:\n{text}")
        for k, (what, _) in enumerate(BAD_CONFIGS):
            code, _ = self.check_config(self.write_config(bad=k))
            if code == 0:
                raise SuiteError(f"the bad config `{what}` passes check-config: the soak's bad reloads would not be bad")
        self.write_config()

    def agent_pid(self):
        return self.procs["agent"].p.pid  # `ip netns exec` execs the binary: same pid

    def post(self, path, timeout=10):
        def p():
            req = urllib.request.Request(f"http://127.0.0.1:{METRICS_PORT}{path}", data=b"", method="POST")
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            try:
                with opener.open(req, timeout=timeout) as r:
                    return r.status, r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode()
        return self.in_ns(self.ns_t, p, timeout=timeout + 2)


# ---- /metrics, indexed ----------------------------------------------------------------------------
_WANT = ("dualprobe_probe_success", "dualprobe_probes_total", "dualprobe_expectation_met",
         "dualprobe_target_info", "dualprobe_config_last_reload")


class View:
    """One scrape, indexed by (target, check, family): only the series the soak reads are parsed,
    all are counted."""

    def __init__(self, text, t):
        self.t, self.series, self.bytes = t, 0, len(text)
        self.success, self.results, self.met, self.targets = {}, {}, {}, set()
        self.reload_ok = self.reload_ts = None
        for line in text.splitlines():
            if not line or line[0] == "#":
                continue
            self.series += 1
            if not line.startswith(_WANT):
                continue
            m = _SAMPLE.match(line)
            if not m:
                continue
            name, lab, val = m.group(1), dict(_LABEL.findall(m.group(2) or "")), float(m.group(3))
            key = (lab.get("target"), lab.get("check"), lab.get("family"))
            if name == "dualprobe_probe_success":
                self.success[key] = val
            elif name == "dualprobe_probes_total":
                self.results.setdefault(key, {})[lab.get("result")] = val
            elif name == "dualprobe_expectation_met":
                self.met[(key[0], key[2])] = val
            elif name == "dualprobe_target_info":
                self.targets.add(key[0])
            elif name == "dualprobe_config_last_reload_successful":
                self.reload_ok = val
            elif name == "dualprobe_config_last_reload_success_timestamp_seconds":
                self.reload_ts = val

    def cycles(self, target, checks, family):
        """Cycles run so far: every cycle records its first check (later ones may be skipped)."""
        return sum(self.results.get((target, checks[0], family), {}).values())

    def new_bad(self, before, target, check, family, ignore=()):
        """Results other than ok (and `ignore`) recorded since `before`: {result: count}."""
        a, b = before.results.get((target, check, family), {}), self.results.get((target, check, family), {})
        return {r: v - a.get(r, 0) for r, v in b.items()
                if v > a.get(r, 0) and r not in OK_RESULTS and r not in ignore}

    def pair_ok(self, sp, family):
        if sp.expects(family) == "reachable" and any(
                self.success.get((sp.name, c, family)) != 1 for c in sp.checks):
            return False
        return self.met.get((sp.name, family)) == 1


def proc_stats(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "Threads", "VmHWM"):
                out[k] = int(v.split()[0])
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    out["cpu_s"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


# ---- the soak ------------------------------------------------------------------------------------
class Soak:
    def __init__(self, suite, args):
        self.s, self.args = suite, args
        self.iv, self.to, self.poll = args.interval, args.timeout, args.poll
        self.bound = self.iv + self.to + self.poll + 1.0  # interval + timeout + one poll (+ its scrape)
        self.rows, self.samples, self.events = [], [], []
        self.active = []  # (monotonic time, set of target names live from then on)
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.passed = self.failed = 0
        self.t0 = None
        self.fault_now = ""
        self.scrape_failures = []
        self.last = None

    def result(self, ok, name, line, **extra):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        n = self.passed + self.failed
        at = time.monotonic() - self.t0 if self.t0 else 0.0
        log(f"[{n}] {at / 60:5.2f}m {name}: {'PASS' if ok else 'FAIL'}: {line}")
        self.events.append(dict(n=n, minute=round(at / 60, 3), name=name, ok=ok, line=line, **extra))
        return ok

    def view(self, timeout=10):
        # Stamped when the request is sent: the agent renders on receipt, so whatever the scrape
        # shows was recorded by then (within the render's few ms).
        t = time.monotonic()
        _, text = self.s.http_get("/metrics", timeout=timeout)
        v = View(text, t)
        self.last = v
        return v

    def live_specs(self):
        return [self.s.specs[x] for x in self.s.sets[self.s.current]]

    def stable_pairs(self):
        common = set(self.s.common)
        return [(sp, f) for sp in self.live_specs() if sp.name in common for f in sp.families]

    # -- sampling (a thread: every --scrape-every seconds, whatever the main thread does) --
    def sampler(self):
        due = time.monotonic()
        while not self.stopping.is_set():
            self.sample()
            due += self.args.scrape_every
            self.stopping.wait(max(0.0, due - time.monotonic()))

    def sample(self):
        pid = self.s.agent_pid()
        t = time.monotonic()
        row = {"t_s": round(t - self.t0, 2), "utc": time.strftime("%H:%M:%S", time.gmtime())}
        try:
            st = proc_stats(pid)
        except OSError as e:
            self.scrape_failures.append(f"{row['t_s']}s: /proc/{pid}: {e}")
            return
        row.update(vmrss_kib=st["VmRSS"], rssanon_kib=st["RssAnon"], vmhwm_kib=st["VmHWM"], fds=st["fds"],
                   threads=st["Threads"], cpu_s=round(st["cpu_s"], 2))
        t1 = time.monotonic()
        try:
            v = self.view(timeout=10)
        except (OSError, concurrent.futures.TimeoutError) as e:
            self.scrape_failures.append(f"{row['t_s']}s: /metrics: {e!r}")
            row.update(series="", bytes="", scrape_ms="", pairs="", failing="", unmet="")
        else:
            live = [(sp, f) for sp in self.live_specs() for f in sp.families]
            row.update(series=v.series, bytes=v.bytes, scrape_ms=round((time.monotonic() - t1) * 1000),
                       pairs=len({(k[0], k[2]) for k in v.success}),
                       failing=sum(1 for sp, f in live if sp.expects(f) == "reachable" and not v.pair_ok(sp, f)),
                       unmet=sum(1 for k, x in v.met.items() if x != 1))
            with self.lock:
                self.samples.append(v)
        row["fault"] = self.fault_now
        with self.lock:
            self.rows.append(row)

    # -- faults --
    def wait_pairs(self, pairs, cond, deadline):
        """Polls until cond(view, spec, family) holds for every pair. Returns (first time seen per
        pair, the last view, the pairs never seen)."""
        start, seen, v = time.monotonic(), {}, None
        while True:
            try:
                v = self.view()
                for sp, f in pairs:
                    if (sp.name, f) not in seen and cond(v, sp, f):
                        seen[(sp.name, f)] = v.t - start
            except (OSError, concurrent.futures.TimeoutError):
                pass
            missing = [(sp, f) for sp, f in pairs if (sp.name, f) not in seen]
            if not missing or time.monotonic() - start >= deadline:
                return seen, v, missing
            time.sleep(self.poll)

    def fault(self, name, apply, revert, affected, check, ignore=(), unaffected=()):
        """Applies a fault; every affected pair must show a new non-ok `check` result (not in
        `ignore`) with probe_success 0 within the bound, the unaffected ones nothing but ok; then
        reverts it and every stable pair must be healthy again within the bound."""
        stable = self.stable_pairs()
        _, _, sick = self.wait_pairs(stable, lambda v, sp, f: v.pair_ok(sp, f), 3 * self.iv)
        if sick:
            return self.result(False, name, f"not healthy before the fault: {fmt(sick)}")
        v0 = self.view()
        self.fault_now = name
        t_apply = time.monotonic()
        try:
            apply()

            def hit(v, sp, f):
                return bool(v.new_bad(v0, sp.name, check, f, ignore)) and v.success.get((sp.name, check, f)) == 0
            seen, v_hit, missing = self.wait_pairs(affected, hit, self.bound)
            reasons = {}
            for sp, f in affected:
                for r in v_hit.new_bad(v0, sp.name, check, f, ignore) if v_hit else {}:
                    reasons[r] = reasons.get(r, 0) + 1
            others = [f"{sp.name}/{f} {check}={v_hit.new_bad(v0, sp.name, check, f)}" for sp, f in unaffected
                      if v_hit and v_hit.new_bad(v0, sp.name, check, f)]
        finally:
            t_revert = time.monotonic()
            revert()
            self.fault_now = f"{name} (recovering)"
        back, _, stuck = self.wait_pairs(stable, lambda v, sp, f: v.pair_ok(sp, f), self.bound)
        self.fault_now = ""
        lat = sorted(seen.values())
        rec = sorted(back.values())
        extra = dict(kind=name, pairs=len(affected), start_minute=round((t_apply - self.t0) / 60, 3), detect_max_s=round(lat[-1], 2) if lat else None,
                     detect_median_s=round(statistics.median(lat), 2) if lat else None,
                     held_s=round(t_revert - t_apply, 2), recover_max_s=round(rec[-1], 2) if rec else None,
                     reasons=reasons)
        line = (f"{len(seen)}/{len(affected)} pairs showed {check}={','.join(sorted(reasons)) or '?'} "
                f"within {lat[-1] if lat else 0:.1f}s (median {extra['detect_median_s']}s, bound {self.bound:.0f}s); "
                f"held {extra['held_s']:.1f}s; all {len(stable)} stable pairs healthy {rec[-1] if rec else 0:.1f}s after")
        problems = []
        if missing:
            problems.append(f"not reflected within {self.bound:.0f}s: {fmt(missing)}")
        if others:
            problems.append(f"the other family failed too: {'; '.join(others[:5])}")
        if stuck:
            problems.append(f"not recovered within {self.bound:.0f}s: {fmt(stuck)}")
        if unaffected:
            line += f"; {len(unaffected)} {unaffected[0][1]} pairs unaffected" if not others else ""
        return self.result(not problems, name, line + ("; " + "; ".join(problems) if problems else ""), **extra)

    def v6_fault(self, variant):
        s = self.s
        affected = [(sp, f) for sp, f in self.stable_pairs() if f == "ipv6" and sp.expects(f) == "reachable"]
        v4 = [(sp, f) for sp, f in self.stable_pairs() if f == "ipv4" and sp.expects(f) == "reachable"]
        if variant == 0:
            def apply():
                s.ip(s.ns_t, "-6", "route", "del", "default")
            name = "ipv6-default-route-flap"
        else:
            def apply():
                s.ip(s.ns_t, "link", "set", "egw-t", "down")
            name = "egw-link-flap"

        def revert():
            s.ip(s.ns_t, "link", "set", "egw-t", "up")
            # A link that went down loses its IPv6 address and routes; put them back.
            s.ip(s.ns_t, "addr", "replace", f"{EGW_T6}/64", "dev", "egw-t", "nodad")
            s.ip(s.ns_t, "-6", "route", "replace", "default", "via", EGW_A6, "dev", "egw-t")
        return self.fault(name, apply, revert, affected, "tcp", unaffected=v4)

    def dns_fault(self):
        s = self.s

        def apply():
            s.procs.pop("dnsmasq").stop()

        def revert():
            if "dnsmasq" not in s.procs:
                s.start_dnsmasq()
        # Every pair resolves; an A-only name's AAAA lookup answers nodata when dnsmasq is up.
        return self.fault("dnsmasq-restart", apply, revert, self.stable_pairs(), "dns", ignore=("nodata",))

    # -- reloads --
    def reload(self, k, good, method, bad=None):
        s = self.s
        v0 = self.last or self.view()
        old = set(s.sets[s.current])
        target = ("B" if s.current == "A" else "A") if good else s.current
        what = f"set {s.current}->{target}" if good else f"bad config ({BAD_CONFIGS[bad][0]})"
        name = f"reload-{'good' if good else 'bad'}-{method}"
        s.write_config(target, None if good else bad)
        t = time.monotonic()
        status = None
        if good:
            self.active.append((t, old & set(s.sets[target])))  # in transition: the common targets
        if method == "post":
            status, body = s.post("/-/reload")
            if status != (200 if good else 400):
                return self.result(False, name, f"{what}: POST /-/reload answered {status}: {body.strip()[:200]}")
        else:
            s.procs["agent"].signal(signal.SIGHUP)
        want = set(s.sets[target])

        def applied(v):
            if good:
                return v.reload_ok == 1 and (v.reload_ts or 0) > (v0.reload_ts or 0) and v.targets == want
            return v.reload_ok == 0 and v.targets == old
        end = t + 10
        v = None
        while time.monotonic() < end:
            v = self.view()
            if applied(v):
                break
            time.sleep(0.2)
        took = time.monotonic() - t
        if v is None or not applied(v):
            got = f"reload_successful={v.reload_ok}, {len(v.targets)} targets" if v else "no scrape"
            return self.result(False, name, f"{what}: not applied within 10s ({got})")
        if not good:
            s.write_config()  # the file back to the running config (as an operator would)
            return self.result(True, name, f"{what} refused ({'400' if status else 'SIGHUP'}), "
                                          f"reload_successful 0, the {len(old)} old targets stay", took_s=round(took, 2))
        s.current = target
        self.active.append((time.monotonic(), want))
        gone, added = old - want, want - old
        # Removed targets' series disappear at once; added ones appear after their first cycle.
        left = sorted({k[0] for k in v.success} & gone)
        first, _, missing = self.wait_pairs([(s.specs[x], f) for x in sorted(added) for f in s.specs[x].families],
                                            lambda vv, sp, f: (sp.name, sp.checks[0], f) in vv.success, self.bound)
        line = (f"{what} via {'POST (200)' if status else 'SIGHUP'} live in {took:.1f}s: -{len(gone)} +{len(added)} "
                f"targets; first cycles of the added ones within {max(first.values(), default=0):.1f}s")
        problems = ([f"series of removed targets still there: {left}"] if left else []) + (
            [f"added targets never ran: {fmt(missing)}"] if missing else [])
        return self.result(not problems, name, line + ("; " + "; ".join(problems) if problems else ""),
                           took_s=round(took, 2))

    # -- the run --
    def schedule(self):
        ev = []
        for m in range(self.args.minutes):
            b = 60 * m
            ev.append((b + 2, "reload", dict(good=True, method="sighup" if m % 2 == 0 else "post")))
            ev.append((b + 12, "v6" if m % 2 == 0 else "dns", dict(variant=(m // 2) % 2)))
            if m % 3 == 1:
                j = m // 3
                ev.append((b + 48, "reload", dict(good=False, method="post" if j % 2 == 0 else "sighup",
                                                  bad=j % len(BAD_CONFIGS))))
        return ev

    def run(self):
        s = self.s
        live = [(sp, f) for sp in self.live_specs() for f in sp.families]
        first, _, missing = self.wait_pairs(live, lambda v, sp, f: v.pair_ok(sp, f), self.args.warmup)
        if missing:
            self.result(False, "warm-up", f"{len(missing)} of {len(live)} pairs not healthy after "
                                          f"{self.args.warmup:.0f}s: {fmt(missing)}")
            return
        self.t0 = time.monotonic()
        self.active.append((self.t0, set(s.sets[s.current])))
        self.result(True, "warm-up", f"all {len(live)} pairs of {len(self.live_specs())} targets healthy "
                                     f"after {max(first.values()):.0f}s; soak starts")
        thread = threading.Thread(target=self.sampler, daemon=True)
        thread.start()
        k = 0
        try:
            for at, kind, opts in self.schedule():
                delay = self.t0 + at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -5:
                    log(f"note: {kind} at {at}s starts {-delay:.0f}s late (the previous step overran)")
                if not s.procs["agent"].alive():
                    self.result(False, "agent", f"exited with {s.procs['agent'].p.returncode}")
                    return
                if kind == "reload":
                    k += 1
                    self.reload(k, **opts)
                elif kind == "v6":
                    self.v6_fault(opts["variant"])
                else:
                    self.dns_fault()
            time.sleep(max(0.0, self.t0 + 60 * self.args.minutes - time.monotonic()))
        finally:
            self.stopping.set()
            thread.join(timeout=30)
        self.sample()  # the last point of the curve
        self.final_checks()

    def final_checks(self):
        s = self.s
        alive = s.agent_alive()
        self.result(alive, "agent alive", f"/-/healthy {'200' if alive else 'not answering'} after "
                                          f"{len(self.rows)} samples")
        self.result(not self.scrape_failures, "every scrape answered",
                    f"{len(self.rows)} samples every {self.args.scrape_every:.0f}s"
                    + (f"; failures: {self.scrape_failures[:5]}" if self.scrape_failures else ""))
        self.stuck_check()
        for ok, name, line in soak_report.flatness(self.rows, self.args.minutes, self.args.warmup_fraction):
            self.result(ok, name, line)
        stray = s.stray_packets()
        self.result(stray == 0, "egress guard", f"{stray} packets to addresses outside the documentation prefixes")

    def live_between(self, t1, t2):
        """The targets live throughout [t1, t2]: live at t1 and in every set applied up to t2."""
        at_start = [names for t, names in self.active if t <= t1]
        sets = at_start[-1:] + [names for t, names in self.active if t1 < t <= t2]
        return set.intersection(*sets) if sets else set()

    def stuck_check(self):
        """Across every pair of samples at least 2 x interval apart, every pair live throughout
        ran at least one more cycle."""
        samples, windows, checked, bad, worst = self.samples, 0, 0, [], {}
        for i, a in enumerate(samples):
            j = next((j for j in range(i + 1, len(samples)) if samples[j].t - a.t >= 2 * self.iv), None)
            if j is None:
                break
            b = samples[j]
            live = self.live_between(a.t, b.t)
            windows += 1
            for name in sorted(live):
                sp = self.s.specs[name]
                for f in sp.families:
                    ca, cb = a.cycles(name, sp.checks, f), b.cycles(name, sp.checks, f)
                    checked += 1
                    if cb <= ca:
                        bad.append(f"{name}/{f} {a.t - self.t0:.0f}-{b.t - self.t0:.0f}s")
                    worst[(name, f)] = min(worst.get((name, f), 1e9), cb - ca)
        line = (f"{windows} windows of >= {2 * self.iv}s (sample to sample), {checked} pair-windows: every live "
                f"(target, family) ran at least {min(worst.values(), default=0):.0f} more cycle(s)")
        if samples:  # cycles over the whole run of the pairs live throughout, against its length
            a, b = samples[0], samples[-1]
            ran = [b.cycles(n, self.s.specs[n].checks, f) - a.cycles(n, self.s.specs[n].checks, f)
                   for n in self.live_between(a.t, b.t) for f in self.s.specs[n].families]
            if ran:
                line += (f"; over {(b.t - a.t) / 60:.1f} min each of the {len(ran)} pairs live throughout ran "
                         f"{min(ran):.0f}..{max(ran):.0f} cycles ({(b.t - a.t) / self.iv:.0f} intervals)")
        if bad:
            line = f"{len(bad)} pair-windows without a cycle: {bad[:8]}"
        self.result(not bad and windows > 0, "no stuck pair", line)


def fmt(pairs):
    names = [f"{sp.name}/{f}" for sp, f in pairs]
    return ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")


def write_out(soak, suite, out, args, started_utc):
    os.makedirs(out, exist_ok=True)
    with open(f"{out}/samples.csv", "w", newline="") as f:
        cols = ["t_s", "utc", "vmrss_kib", "rssanon_kib", "vmhwm_kib", "fds", "threads", "cpu_s", "series",
                "bytes", "scrape_ms", "pairs", "failing", "unmet", "fault"]
        w = csv.DictWriter(f, cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(soak.rows)
    with open(f"{out}/events.csv", "w", newline="") as f:
        cols = ["n", "minute", "start_minute", "name", "ok", "detect_median_s", "detect_max_s", "held_s", "recover_max_s",
                "pairs", "reasons", "took_s", "line"]
        w = csv.DictWriter(f, cols, extrasaction="ignore")
        w.writeheader()
        for e in soak.events:
            w.writerow({**e, "reasons": json.dumps(e.get("reasons", "")) if "reasons" in e else ""})
    commit = subprocess.run(["git", "-C", os.path.dirname(args.bin), "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    version = subprocess.run([args.bin, "--version"], capture_output=True, text=True).stdout.strip()
    summary = dict(started_utc=started_utc, minutes=args.minutes, interval_s=args.interval, timeout_s=args.timeout,
                   targets=args.targets, pairs=sum(len(sp.families) for sp in soak.live_specs()),
                   scrape_every_s=args.scrape_every, poll_s=args.poll, bound_s=soak.bound, binary=args.bin,
                   version=version, commit=commit, passed=soak.passed, failed=soak.failed,
                   warmup_fraction=args.warmup_fraction, load_avg=os.getloadavg(), events=soak.events)
    with open(f"{out}/summary.json", "w") as f:
        json.dump(summary, f, indent=1)
    soak_report.write_all(out)
    log(f"soak results in {out} (samples.csv, events.csv, summary.json, soak.svg, table.md)")


def main():
    ap = argparse.ArgumentParser(description="dualprobe soak in the netns topology (docs/benchmarks.md)")
    ap.add_argument("--bin", required=True, help="the dualprobe binary (the release build)")
    ap.add_argument("--minutes", type=int, default=30, help="soak length after warm-up (default 30)")
    ap.add_argument("--out", help="directory for the CSVs and the plot (default /tmp/dualprobe-soak-<time>)")
    ap.add_argument("--targets", type=int, default=200, help="targets per config (default 200)")
    ap.add_argument("--differ", type=int, default=5, help="targets the two configs differ in (default 5)")
    ap.add_argument("--interval", type=int, default=10, help="probe interval, seconds (default 10)")
    ap.add_argument("--timeout", type=int, default=2, help="probe timeout, seconds (default 2)")
    ap.add_argument("--scrape-every", type=float, default=15.0, help="seconds between samples (default 15)")
    ap.add_argument("--poll", type=float, default=1.0, help="seconds between /metrics polls during a fault")
    ap.add_argument("--warmup", type=float, default=90.0, help="seconds for every pair to get healthy at start")
    ap.add_argument("--warmup-fraction", type=float, default=0.2,
                    help="share of the run left out of the flatness verdict (at most 5 minutes)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (agent log, configs)")
    args = ap.parse_args()
    args.bin = os.path.abspath(args.bin)
    args.no_moto = True  # the soak's targets are plain dns/tcp/tls/http
    if args.minutes < 2 or args.minutes > 200:
        ap.error("--minutes must be between 2 and 200")
    preflight(args)
    started_utc = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    out = os.path.abspath(args.out or f"/tmp/dualprobe-soak-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}")

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    suite = SoakSuite(args)
    soak = Soak(suite, args)
    keep = args.keep
    try:
        log(f"soak: binary {args.bin}, {args.minutes} min, {args.targets} targets, interval {args.interval}s, "
            f"timeout {args.timeout}s, namespaces {suite.ns_t} / {suite.ns_a}")
        suite.setup()
        suite.validate_configs()
        log(f"topology up: tls={'yes' if suite.tls else 'NO'}; agent pid {suite.agent_pid()}; "
            f"reflect bound {soak.bound:.0f}s (interval + timeout + poll + 1 s)")
        soak.run()
    except SuiteError as e:
        soak.result(False, "setup", f"the soak could not run: {e}")
    except KeyboardInterrupt as e:
        soak.result(False, "interrupted", f"{e or 'Ctrl-C'}: tearing down")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        soak.stopping.set()
        try:
            if soak.rows:
                write_out(soak, suite, out, args, started_utc)
        except Exception as e:  # noqa: BLE001 - the teardown must run
            log(f"could not write the results: {e!r}")
        suite.teardown(keep or soak.failed > 0)
    log(f"{soak.passed} passed, {soak.failed} failed")
    sys.exit(0 if soak.failed == 0 else 1)


if __name__ == "__main__":
    main()
