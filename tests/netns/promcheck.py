"""A real Prometheus inside the task namespace, scraping the agent there every second with
dashboards/alerts.yml loaded, so the scenarios can assert which alert expressions hold under each
fault (docs/netns-suite.md, "Alert expressions under the faults").

An alert's expression is evaluated directly (an instant query), not its alert state: every `for:`
is minutes long, the faults last seconds. The dashboard's and the rules' expressions are extracted
with scripts/check-promql.py. Python 3 standard library only."""
import importlib.util
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from topology import METRICS_PORT, REPO, Proc, SuiteError

PROM_PORT = 9090
RULES = os.path.join(REPO, "dashboards", "alerts.yml")
DASHBOARD = os.path.join(REPO, "dashboards", "grafana-dualprobe.json")
HEADLINE = "Expectations met by family"
# The suite's certificates live two days: this alert's expression holds throughout, by design.
STANDING = {"DualprobeCertificateExpiringSoon"}


def _check_promql():
    spec = importlib.util.spec_from_file_location("check_promql", os.path.join(REPO, "scripts", "check-promql.py"))
    mod = importlib.util.module_from_spec(spec)
    sys.modules["check_promql"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


class Prom:
    def __init__(self, suite):
        self.s = suite
        self.cp = _check_promql()
        self.alerts = {e.source.split("alert ", 1)[1]: e.query
                       for e in self.cp.rule_exprs(RULES) if ": alert " in e.source}
        self.exprs = self.cp.grafana_exprs(DASHBOARD) + self.cp.rule_exprs(RULES)
        self.headline = next(e.query for e in self.exprs if HEADLINE in e.source)
        self.proc = None

    def start(self):
        prom = shutil.which("prometheus")
        if prom is None:
            raise SuiteError("prometheus is not installed (Debian package prometheus; "
                             "scripts/install-test-deps.sh): the alert expressions cannot be evaluated")
        w = self.s.work
        with open(f"{w}/prometheus.yml", "w") as f:
            f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [{json.dumps(RULES)}]
scrape_configs:
  - job_name: dualprobe
    static_configs:
      - targets: ["127.0.0.1:{METRICS_PORT}"]
""")
        cmd = ["ip", "netns", "exec", self.s.ns_t, prom, f"--config.file={w}/prometheus.yml",
               f"--storage.tsdb.path={w}/prometheus-data", f"--web.listen-address=127.0.0.1:{PROM_PORT}",
               "--log.level=warn"]
        self.proc = self.s.procs["prometheus"] = Proc("prometheus", cmd, f"{w}/prometheus.log", stdin_pipe=False)
        end = time.monotonic() + 60
        while time.monotonic() < end and self.proc.alive():
            try:
                if self.query('up{job="dualprobe"} == 1'):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        raise SuiteError(f"prometheus in the task namespace did not scrape the agent; see {w}/prometheus.log")

    def query(self, expr):
        def q():
            url = f"http://127.0.0.1:{PROM_PORT}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            try:
                with opener.open(url, timeout=5) as r:
                    data = json.loads(r.read())
            except urllib.error.HTTPError as e:
                data = json.loads(e.read())
            if data.get("status") != "success":
                raise ValueError(f"{expr}: {data.get('error')}")
            return data["data"]["result"]
        return self.s.in_ns(self.s.ns_t, q, timeout=8)

    def holding(self):
        """{alert: [label sets]} of every alert whose expression returns series now."""
        out = {}
        for name, expr in self.alerts.items():
            res = self.query(expr)
            if res:
                out[name] = [r["metric"] for r in res]
        return out

    def family_headline(self):
        return {r["metric"].get("family"): float(r["value"][1]) for r in self.query(self.headline)}

    def expect(self, want, headline=None, deadline=8.0):
        """Polls until exactly the alerts of `want` ({alert: [label subsets]}; STANDING aside) hold,
        each for every subset given, and the headline panel shows `headline` ({family: "ok"|"low"}).
        Returns (ok, line)."""
        end = time.monotonic() + deadline
        while True:
            have, problems = self.holding(), []
            for name, subsets in want.items():
                for sub in subsets:
                    if not any(all(m.get(k) == v for k, v in sub.items()) for m in have.get(name, [])):
                        problems.append(f"{name} does not hold for {sub}")
            extra = sorted(set(have) - set(want) - STANDING)
            if extra:
                problems.append("also holding: " + ", ".join(
                    f"{n}{[{k: v for k, v in m.items() if k in ('target', 'family')} for m in have[n]]}"
                    for n in extra))
            head = self.family_headline()
            for fam, state in (headline or {}).items():
                v = head.get(fam)
                if v is None or (state == "ok") != (v == 1):
                    problems.append(f"headline {fam} = {v}, want {'1' if state == 'ok' else '< 1'}")
            if not problems:
                got = "; ".join(f"{n}: {','.join(sorted({m.get('target') or m.get('family', '?') for m in have[n]}))}"
                                for n in sorted(have) if n not in STANDING) or "no alert expression"
                heads = ", ".join(f"{k} {v:.2f}" for k, v in sorted(head.items()))
                return True, f"prometheus: {got} (headline {heads})"
            if time.monotonic() >= end:
                return False, "prometheus: " + "; ".join(problems)
            time.sleep(0.5)

    def all_evaluate(self):
        """Every dashboard and rule expression evaluates without error. Returns (ok, line)."""
        bad = []
        for e in self.exprs:
            try:
                self.query(e.query)
            except ValueError as err:
                bad.append(f"{e.source}: {err}")
        if bad:
            return False, "; ".join(bad)
        return True, f"{len(self.exprs)} dashboard/rule expressions evaluate"


def with_alerts(prom, want, headline, extra=None):
    """An `extra` hook for Scenarios.fault_scenario: the alert expressions while the fault holds,
    after the scenario's own extra check (if any)."""
    def fn(s0, s_hit, s1):
        if extra:
            good, line = extra(s0, s_hit, s1)
            if not good:
                return False, line
        else:
            line = ""
        if prom is None:
            return True, line
        good, pline = prom.expect(want, headline)
        return good, "; ".join(x for x in (line, pline) if x)
    return fn
