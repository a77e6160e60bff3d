"""The fault scenarios (docs/netns-suite.md, "Scenarios"): each applies one fault to the topology,
asserts the agent's per-family metrics and, through a Prometheus in the task namespace, which alert
expressions of dashboards/alerts.yml hold (promcheck.py), then undoes the fault.
Python 3 standard library only."""
import concurrent.futures
import os
import re
import signal
import sys
import time

from promcheck import with_alerts
from topology import DLY_T6, EGW_A6, ENDPOINTS4, HERE, NAT4, PL_A4, PUBLIC6, Proc, delta_results, run

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
    def __init__(self, suite, prom=None):
        self.s = suite
        self.c = Check(suite)
        self.prom = prom  # promcheck.Prom, or None: no alert expressions evaluated

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
        line = (f"{len(reach)} pairs pass every check ({fmt_pairs(reach)}); expectation_met=1 on all "
                f"{len(self.c.pairs())} pairs incl. expected-unreachable {','.join(unreach)}")
        if self.prom:
            # healthy: no alert expression holds, the headline is 1 for both families
            for good, more in (self.prom.all_evaluate(), self.prom.expect({}, {"ipv4": "ok", "ipv6": "ok"})):
                if not good:
                    return False, f"{line}; but {more}"
                line += f"; {more}"
        return True, line

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

    def alerts(self, want, headline, extra=None):
        """The fault's alert expressions ({alert: [label subsets]}) and headline, as an extra hook."""
        return with_alerts(self.prom, want, headline, extra)

    def v6_down_alerts(self):
        """IPv6 gone for every IPv6 target: per-target and per-family alerts, IPv4 untouched."""
        return self.alerts({"DualprobeIPv6PathDown": [{"target": t.name} for t, _ in self.v6_public()],
                            "DualprobeFamilyDown": [{"family": "ipv6"}]}, {"ipv4": "ok", "ipv6": "low"})

    # 2
    def v6_route_removed(self):
        t = self.s.ns_t
        return self.fault_scenario(
            apply=lambda: self.s.ip(t, "-6", "route", "del", "default"),
            revert=lambda: self.s.ip(t, "-6", "route", "replace", "default", "via", EGW_A6, "dev", "egw-t"),
            affected=self.v6_public(),
            expect_fn=self.reason_expect("tcp", ["unreachable"]),
            deadline=self.iv + 0.5, extra=self.v6_down_alerts())

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
                                   deadline=2 * self.iv + 0.5,
                                   extra=with_alerts(self.prom, {
                                       "DualprobeIPv6PathDown": [{"target": t.name} for t, _ in affected],
                                       "DualprobeFamilyDown": [{"family": "ipv6"}]},
                                       {"ipv4": "ok", "ipv6": "low"}, deadline_honoured),
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
        # configured (not discovered) endpoint targets: IPv4PathDown, and IPv4 still works elsewhere
        return self.fault_scenario(
            apply=lambda: self.s.ip(t, "link", "set", "pl-t", "down"),
            revert=revert, affected=affected, expect_fn=expect, deadline=2 * self.iv + 0.5,
            extra=self.alerts({"DualprobeIPv4PathDown": [{"target": x.name} for x, _ in affected]},
                              {"ipv4": "low", "ipv6": "ok"}))

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
                                   deadline=2 * self.iv + 0.5, extra=self.v6_down_alerts())

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

        v4 = [x for x, f in self.c.pairs() if f == "ipv4" and x.expects(f) == "reachable"]
        every = self.alerts({"DualprobeIPv6PathDown": [{"target": x.name} for x, _ in self.v6_public()],
                             "DualprobeIPv4PathDown": [{"target": x.name} for x in v4],
                             "DualprobeFamilyDown": [{"family": "ipv4"}, {"family": "ipv6"}]},
                            {"ipv4": "low", "ipv6": "low"}, still_running)
        return self.fault_scenario(apply, revert, affected, expect, deadline=2 * self.iv + 0.5,
                                   extra=every, after_hit=self.iv + s.timeout + 0.5)

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
            affected=nat, expect_fn=expect, deadline=2 * self.iv + 0.5,
            extra=self.alerts({"DualprobeUnexpectedlyReachable": [{"target": t.name, "family": f} for t, f in nat]},
                              {"ipv4": "low", "ipv6": "ok"}))

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
