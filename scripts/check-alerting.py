#!/usr/bin/env python3
"""Checks of the alerting that ships with the stack (cfn-lint cannot do these).

1. cloudformation/alerting-prometheus.yml loads dashboards/alerts.yml into AMP: its
   RuleGroupsNamespace Data must be byte-identical to the file (--write regenerates it).
2. Every alert of dashboards/alerts.yml has a severity (warning|critical), a summary, a
   description and a runbook_url docs/runbook.md#ANCHOR naming a heading of docs/runbook.md;
   every CloudWatch alarm's description names an existing runbook section.
3. The AMP alert manager definition on service.yml's workspace renders, routes to an SNS
   receiver with topic_arn and sigv4.region, inhibits only alerts that exist, and passes
   `amtool check-config` (Debian prometheus-alertmanager).
4. alerting-cloudwatch.yml against service.yml: a per-target alarm for exactly each (target,
   family) of the rendered DUALPROBE_CONFIG whose expect is reachable, unreachable or nodata,
   in each NetworkMode (the alarms are the same in both: each mode's config judges the same
   pairs), discovery alarms only for configured sources, the TaskFamily and EmfNamespace outputs equal to the task
   definition's family and the dualprobe command's namespace, and a dashboard body that renders
   to JSON showing every EMF metric, with a failed-probes table grouped by result and task.
5. With --dualprobe BIN (or $DUALPROBE_BIN), for each NetworkMode's config: BIN runs with --emf
   on loopback only (its targets
   renamed copies of the stack's, resolved through a closed port on 127.0.0.1, so nothing is
   sent anywhere; ECS task metadata served on 127.0.0.1) and every alarm's metric, dimension set
   and dimension values must appear in the EMF lines it writes. A binary whose /metrics has no
   dualprobe_discovery_success predates the heartbeat and discovery EMF lines: those alarms are
   then reported as NOTE, not checked.

Needs the Python that has cfn-lint (its YAML loader reads the short-form tags) and PyYAML.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import yaml
from cfnlint.decode import cfn_yaml

from cfn_modes import MODES, ModeView, container

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFN = os.path.join(REPO, "cloudformation")
RULES = os.path.join(REPO, "dashboards", "alerts.yml")
RUNBOOK = os.path.join(REPO, "docs", "runbook.md")
AMP_TEMPLATE = os.path.join(CFN, "alerting-prometheus.yml")
CW_TEMPLATE = os.path.join(CFN, "alerting-cloudwatch.yml")

SAMPLE = {
    "AWS::Region": "eu-west-1", "AWS::StackName": "ipv6-environment-ServiceStack-ABC",
    "AWS::AccountId": "123456789012", "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com",
    "LoadBalancerDNSName": "ipv6-e-LoadB-1234567890.eu-west-1.elb.amazonaws.com",
    "VpcId": "vpc-0123456789abcdef0", "ServiceName": "web", "HealthCheckPath": "/",
    "ClusterName": "ipv6-environment-ClusterStack-XYZ-Cluster-abc",
    "AlarmTopicArn": "arn:aws:sns:eu-west-1:123456789012:dualprobe-alerts",
    "PrometheusWorkspace.PrometheusEndpoint": "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1234/",
}
TASK_FAMILY = "ipv6-environment-ServiceStack-ABC-web"

AMP_HEADER = """\
AWSTemplateFormatVersion: "2010-09-09"
Description: >-
  dualprobe alerting for MetricsExport=prometheus: dashboards/alerts.yml as an Amazon Managed
  Service for Prometheus rule groups namespace (the alert manager that routes the alerts to SNS
  is on the workspace, in service.yml). Generated: scripts/check-alerting.py --write copies
  dashboards/alerts.yml into Data below, and CI fails when the two differ.

Parameters:
  WorkspaceArn:
    Type: String
    AllowedPattern: ^arn:aws[a-z-]*:aps:[a-z0-9-]+:[0-9]{12}:workspace/.+$
    Description: The workspace the ADOT collectors remote-write to (service.yml)

Resources:
  DualprobeRules:
    Type: AWS::APS::RuleGroupsNamespace
    Properties:
      Workspace: !Ref WorkspaceArn
      Name: dualprobe
      Data: |
"""
AMP_FOOTER = """
Outputs:
  RuleGroupsNamespaceArn:
    Description: The rule groups namespace holding dashboards/alerts.yml
    Value: !Ref DualprobeRules
"""

errors: list[str] = []
notes: list[str] = []


def err(msg: str) -> None:
    errors.append(msg)


def render(sub, where: str, extra: dict | None = None) -> str:
    values = dict(SAMPLE, **(extra or {}))
    if isinstance(sub, dict) and "Fn::Sub" in sub:
        sub = sub["Fn::Sub"]
    if not isinstance(sub, str):
        raise SystemExit(f"{where}: expected a !Sub string, got {type(sub).__name__}")

    def repl(m: re.Match) -> str:
        key = m.group(1)
        if key.startswith("!"):
            return "${" + key[1:] + "}"
        if key not in values:
            err(f"{where}: no sample value for ${{{key}}}")
            return "X"
        return values[key]

    return re.sub(r"\$\{([^}]+)\}", repl, sub)


def if_branch(node, want_true: bool = True):
    if isinstance(node, dict) and "Fn::If" in node:
        return node["Fn::If"][1 if want_true else 2]
    return node


# ------------------------------------------------------------------ 1. embedded rules
def amp_template_text(rules: str) -> str:
    body = "".join(("        " + line if line.strip() else "") + "\n" for line in rules.splitlines())
    return AMP_HEADER + body + AMP_FOOTER


def check_embedded(rules: str) -> None:
    try:
        t = cfn_yaml.load(AMP_TEMPLATE)
        data = t["Resources"]["DualprobeRules"]["Properties"]["Data"]
    except (OSError, KeyError, TypeError) as e:
        err(f"{AMP_TEMPLATE}: no RuleGroupsNamespace Data ({e!r}); run scripts/check-alerting.py --write")
        return
    if data != rules:
        a, b = data.splitlines(), rules.splitlines()
        n = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        err(f"alerting-prometheus.yml Data differs from dashboards/alerts.yml at line {n + 1} "
            f"(template: {a[n] if n < len(a) else '<end>'!r}, file: {b[n] if n < len(b) else '<end>'!r}); "
            "run scripts/check-alerting.py --write")


# ------------------------------------------------------------------ 2. runbook
def anchors() -> set[str]:
    out = set()
    with open(RUNBOOK, encoding="utf-8") as f:
        for line in f:
            m = re.match(r"^#{1,6}\s+(.*?)\s*$", line)
            if m:  # GitHub's slug: lower case, punctuation dropped, spaces to hyphens
                out.add(re.sub(r"[^\w\- ]", "", m.group(1).lower()).replace(" ", "-"))
    return out


def check_alerts(doc: dict, have: set[str]) -> set[str]:
    names = set()
    for g in doc.get("groups") or []:
        for r in g.get("rules") or []:
            if "alert" not in r:
                continue
            n = r["alert"]
            names.add(n)
            sev = (r.get("labels") or {}).get("severity")
            if sev not in ("warning", "critical"):
                err(f"alerts.yml {n}: severity {sev!r} (want warning or critical)")
            ann = r.get("annotations") or {}
            for k in ("summary", "description", "runbook_url"):
                if not str(ann.get(k, "")).strip():
                    err(f"alerts.yml {n}: no annotation {k}")
            url = str(ann.get("runbook_url", ""))
            m = re.fullmatch(r"docs/runbook\.md#([a-z0-9-]+)", url)
            if not m or m.group(1) not in have:
                err(f"alerts.yml {n}: runbook_url {url!r} is not a section of docs/runbook.md")
            elif m.group(1) != n.lower():
                err(f"alerts.yml {n}: runbook_url points at #{m.group(1)}, not the alert's own section")
    return names


# ------------------------------------------------------------------ 3. alert manager
def check_alertmanager(svc: dict, alert_names: set[str]) -> None:
    ws = svc["Resources"].get("PrometheusWorkspace", {}).get("Properties", {})
    amd = if_branch(ws.get("AlertManagerDefinition"))
    if amd is None:
        err("service.yml PrometheusWorkspace: no AlertManagerDefinition")
        return
    try:
        outer = yaml.safe_load(render(amd, "AlertManagerDefinition"))
        cfg_text = outer["alertmanager_config"]
        cfg = yaml.safe_load(cfg_text)
    except (yaml.YAMLError, KeyError, TypeError) as e:
        err(f"AlertManagerDefinition: not alertmanager_config YAML: {e!r}")
        return
    recv = {r["name"]: r for r in cfg.get("receivers") or []}
    root = (cfg.get("route") or {}).get("receiver")
    if root not in recv:
        err(f"AlertManagerDefinition: route receiver {root!r} is not a receiver")
    for r in recv.values():
        for sns in r.get("sns_configs") or []:
            if not str(sns.get("topic_arn", "")).startswith("arn:aws:sns:"):
                err(f"AlertManagerDefinition receiver {r['name']}: topic_arn {sns.get('topic_arn')!r}")
            if not (sns.get("sigv4") or {}).get("region"):
                err(f"AlertManagerDefinition receiver {r['name']}: AMP needs sigv4.region on sns_configs")
    if not any(r.get("sns_configs") for r in recv.values()):
        err("AlertManagerDefinition: no sns_configs receiver")
    for rule in cfg.get("inhibit_rules") or []:
        for m in (rule.get("source_matchers") or []) + (rule.get("target_matchers") or []):
            for name in re.findall(r"Dualprobe[A-Za-z0-9]+", m):
                if name not in alert_names:
                    err(f"AlertManagerDefinition inhibit rule names {name}, not an alert of alerts.yml")
    amtool = shutil.which("amtool")
    if not amtool:
        err("amtool not found (apt-get install prometheus-alertmanager; scripts/install-deploy-tools.sh)")
        return
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
        f.write(cfg_text)
    try:
        r = subprocess.run([amtool, "check-config", f.name], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            err(f"amtool check-config rejected the alert manager config:\n{r.stdout}{r.stderr}")
    finally:
        os.unlink(f.name)


# ------------------------------------------------------------------ 4. alarms vs service.yml
def dualprobe_container(svc: dict) -> dict:
    for c in svc["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]:
        c = if_branch(c)
        if isinstance(c, dict) and c.get("Name") == "dualprobe":
            return c
    raise SystemExit("service.yml: no dualprobe container")


def stack_config(svc: dict, mode: str) -> dict:
    env = {e["Name"]: e["Value"] for e in
           container(ModeView(svc, {"NetworkMode": mode}), "dualprobe").get("Environment", [])}
    return yaml.safe_load(render(env["DUALPROBE_CONFIG"], f"DUALPROBE_CONFIG ({mode})"))


def judged_pairs(cfg: dict) -> set[tuple[str, str]]:
    default = cfg.get("families") or ["ipv4", "ipv6"]
    out = set()
    for t in cfg.get("targets") or []:
        expect = t.get("expect") or {}
        for fam in t.get("families") or default:
            if expect.get(fam, "reachable") in ("reachable", "unreachable", "nodata"):
                out.add((t["name"], fam))
    return out


def alarms(cw: dict) -> dict[str, dict]:
    return {k: v["Properties"] for k, v in cw["Resources"].items() if v["Type"] == "AWS::CloudWatch::Alarm"}


def alarm_metrics(props: dict) -> list[tuple[str, dict]]:
    """(metric name, {dimension: value}) of an alarm; values may be CloudFormation Refs."""
    def dims(ds):
        return {d["Name"]: d["Value"] for d in ds or []}
    if "MetricName" in props:
        return [(props["MetricName"], dims(props.get("Dimensions")))]
    return [(m["MetricStat"]["Metric"]["MetricName"], dims(m["MetricStat"]["Metric"].get("Dimensions")))
            for m in props.get("Metrics") or [] if "MetricStat" in m]


def check_cloudwatch(svc: dict, cw: dict, cfg: dict, have: set[str], mode: str) -> None:
    want = judged_pairs(cfg)
    got = set()
    sources = set((cfg.get("discovery") or {}).keys())
    for name, p in alarms(cw).items():
        m = re.search(r"docs/runbook\.md#([a-z0-9-]+)", str(p.get("AlarmDescription", "")))
        if not m or m.group(1) not in have:
            err(f"alerting-cloudwatch.yml {name}: AlarmDescription names no section of docs/runbook.md")
        for metric, d in alarm_metrics(p):
            if metric == "ExpectationMet" and set(d) == {"target", "family"}:
                got.add((d["target"], d["family"]))
            if "source" in d and d["source"] not in sources:
                err(f"alerting-cloudwatch.yml {name}: source {d['source']} is not a discovery source "
                    f"of DUALPROBE_CONFIG ({sorted(sources)})")
    for pair in sorted(want - got):
        err(f"alerting-cloudwatch.yml: no ExpectationMet alarm for target {pair[0]} family {pair[1]} "
            f"(NetworkMode={mode})")
    for pair in sorted(got - want):
        err(f"alerting-cloudwatch.yml: alarm for {pair[0]}/{pair[1]}, which DUALPROBE_CONFIG "
            f"(NetworkMode={mode}) does not judge")
    # The outputs parent.yml feeds to the alerting stack describe the task dualprobe runs in.
    outs = svc.get("Outputs") or {}
    fam = svc["Resources"]["TaskDefinition"]["Properties"]["Family"]
    if outs.get("TaskFamily", {}).get("Value") != fam:
        err(f"service.yml output TaskFamily {outs.get('TaskFamily')} is not the task definition Family {fam}")
    cmd = if_branch(dualprobe_container(svc).get("Command"), True)  # the UseCloudWatch branch
    ns = cmd[cmd.index("--emf-namespace") + 1] if "--emf-namespace" in cmd else "dualprobe"
    if "--emf" not in cmd:
        err(f"service.yml dualprobe Command (cloudwatch) has no --emf: {cmd}")
    if outs.get("EmfNamespace", {}).get("Value") != ns:
        err(f"service.yml output EmfNamespace {outs.get('EmfNamespace')} is not the command's namespace {ns!r}")
    dash = cw["Resources"]["Dashboard"]["Properties"]["DashboardBody"]
    arns = {f"{k}.Arn": f"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:{k}" for k in alarms(cw)}
    try:
        body = json.loads(render(dash, "DashboardBody", dict(
            arns, AlarmNamePrefix="ipv6-environment", TaskFamily=TASK_FAMILY, EmfNamespace=ns,
            LogGroupName="/ecs/ipv6-environment-ServiceStack-ABC/web")))
    except ValueError as e:
        err(f"alerting-cloudwatch.yml DashboardBody is not JSON: {e}")
        return
    text = json.dumps(body)
    for metric in ("ProbeSuccess", "ProbeDuration", "ExpectationMet", "Heartbeat",
                   "DiscoverySuccess", "DiscoveryEndpoints"):
        if metric not in text:
            err(f"DashboardBody: metric {metric} not shown")
    logs = [w for w in body.get("widgets", []) if w.get("type") == "log"]
    if not any(re.search(r"stats .* by .*\btask\b.*\bresult\b", w["properties"].get("query", "")) for w in logs):
        err("DashboardBody: no log widget grouping failed probes by task and result")
    listed = {a for w in body["widgets"] if w.get("type") == "alarm" for a in w["properties"]["alarms"]}
    if listed != set(arns.values()):
        err("DashboardBody: the alarm widget does not list exactly the stack's alarms")


# ------------------------------------------------------------------ 5. the binary's EMF lines
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_udp_tcp_port() -> int:
    for _ in range(50):
        p = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", p))
            return p
        except OSError:
            continue
    raise RuntimeError("no free port")


def serve_task_metadata(task_family: str) -> tuple[http.server.HTTPServer, str]:
    doc = json.dumps({
        "Cluster": "arn:aws:ecs:eu-west-1:123456789012:cluster/c", "TaskARN":
        "arn:aws:ecs:eu-west-1:123456789012:task/c/0123456789abcdef0123456789abcdef",
        "Family": task_family, "Revision": "1", "AvailabilityZone": "eu-west-1a", "LaunchType": "FARGATE",
        "Containers": []}).encode()

    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200 if self.path.endswith("/task") else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(doc)))
            self.end_headers()
            self.wfile.write(doc)

        def log_message(self, *a):
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/v4/meta"


def run_emf(bin_: str, cfg: dict, seconds: float) -> tuple[list[dict], bool]:
    """EMF documents of BIN run on the stack's target names; (docs, binary has discovery metrics)."""
    work = tempfile.mkdtemp(prefix="dualprobe-alerting-")
    try:
        return _run_emf(bin_, cfg, seconds, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run_emf(bin_: str, cfg: dict, seconds: float, work: str) -> tuple[list[dict], bool]:
    dns = closed_udp_tcp_port()
    ec2 = free_port()  # closed: vpc_endpoints discovery fails (refused) without leaving loopback
    default = cfg.get("families") or ["ipv4", "ipv6"]
    empty_tpl = os.path.join(work, "no-endpoints.yml")
    with open(empty_tpl, "w") as f:
        f.write("Resources: {}\n")
    targets = [{"name": t["name"], "host": f"{t['name']}.alerting.invalid", "port": 443,
                "checks": ["dns", "tcp"], "families": t.get("families") or default,
                "expect": t.get("expect") or {}} for t in cfg["targets"]]
    local = {"interval": "1s", "timeout": "300ms", "resolver": {"nameservers": [f"127.0.0.1:{dns}"]},
             "targets": targets, "discovery": {
                 "cloudformation": {"template": empty_tpl, "region": "eu-west-1"},
                 "vpc_endpoints": {"vpc_id": "vpc-0123456789abcdef0", "region": "eu-west-1",
                                   "dual_stack": False, "endpoint_url": f"http://127.0.0.1:{ec2}"}}}
    path = os.path.join(work, "dualprobe.yml")
    with open(path, "w") as f:
        yaml.safe_dump(local, f)
    srv, meta = serve_task_metadata(TASK_FAMILY)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ECS_", "DUALPROBE_"))}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_EC2_METADATA_DISABLED="true",
               AWS_CONFIG_FILE=os.path.join(work, "none"), AWS_SHARED_CREDENTIALS_FILE=os.path.join(work, "none"),
               ECS_CONTAINER_METADATA_URI_V4=meta, DUALPROBE_LOG="warn")
    port = free_port()
    out_path = os.path.join(work, "emf.jsonl")
    with open(out_path, "wb") as out, open(os.path.join(work, "stderr.log"), "wb") as errf:
        p = subprocess.Popen([os.path.abspath(bin_), "run", "--config", path, "--listen",
                              f"127.0.0.1:{port}", "--emf"], stdout=out, stderr=errf, env=env, cwd=work)
    has_discovery = False
    try:
        time.sleep(seconds)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                has_discovery = b"dualprobe_discovery_success" in r.read()
        except OSError as e:
            err(f"dualprobe /metrics did not answer: {e}")
    finally:
        p.terminate()
        p.wait(timeout=10)
        srv.shutdown()
    docs = []
    with open(out_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if isinstance(d, dict) and "_aws" in d:
                docs.append(d)
    if not docs:
        with open(os.path.join(work, "stderr.log"), errors="replace") as f:
            err(f"dualprobe --emf wrote no EMF line in {seconds}s; stderr:\n{f.read()[-2000:]}")
    return docs, has_discovery


def check_emf(bin_: str, cw: dict, cfg: dict, ns: str, mode: str) -> None:
    docs, new = run_emf(bin_, cfg, 6.0)
    seen: list[tuple[str, str, frozenset, dict]] = []  # namespace, metric, dimension set, values
    for d in docs:
        for cm in d["_aws"].get("CloudWatchMetrics", []):
            for dimset in cm.get("Dimensions", []):
                for m in cm.get("Metrics", []):
                    seen.append((cm.get("Namespace"), m["Name"], frozenset(dimset),
                                 {k: d.get(k) for k in dimset}))
    fixed = {"TaskFamily": TASK_FAMILY}
    checked = 0
    for name, p in alarms(cw).items():
        for metric, dims in alarm_metrics(p):
            want = {k: (fixed.get(v["Ref"]) if isinstance(v, dict) else v) for k, v in dims.items()}
            # heartbeat, discovery and the task_family dimensions came with dualprobe_discovery_*
            if not new and (metric in ("Heartbeat", "DiscoverySuccess", "DiscoveryEndpoints") or "task_family" in dims):
                notes.append(f"{name}: {metric} by {sorted(dims)} not checked, the binary predates it "
                             "(no dualprobe_discovery_success on /metrics)")
                continue
            if metric == "DiscoveryEndpoints":
                # written on success only: the failing vpc_endpoints source cannot show it here
                want.pop("source", None)
            hits = [s for s in seen if s[0] == ns and s[1] == metric and s[2] == frozenset(dims)
                    and all(s[3].get(k) == v for k, v in want.items())]
            checked += 1
            if not hits:
                have = sorted({(s[1], tuple(sorted(s[2]))) for s in seen if s[1] == metric})
                err(f"alarm {name}: no EMF line in namespace {ns} with {metric} by {sorted(dims)} = {want}; "
                    f"the binary writes {metric} by {have or 'nothing'}")
    print(f"EMF ({mode}): {len(docs)} lines from {bin_}; {checked} alarm metrics checked against them")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dualprobe", default=os.environ.get("DUALPROBE_BIN"),
                    help="run this binary with --emf and check the alarms' metrics against its output")
    ap.add_argument("--write", action="store_true",
                    help="regenerate cloudformation/alerting-prometheus.yml from dashboards/alerts.yml")
    args = ap.parse_args()
    with open(RULES, encoding="utf-8") as f:
        rules = f.read()
    if args.write:
        with open(AMP_TEMPLATE, "w", encoding="utf-8") as f:
            f.write(amp_template_text(rules))
        print(f"wrote {AMP_TEMPLATE}")
        return 0
    have = anchors()
    check_embedded(rules)
    names = check_alerts(yaml.safe_load(rules), have)
    svc = cfn_yaml.load(os.path.join(CFN, "service.yml"))
    cw = cfn_yaml.load(CW_TEMPLATE)
    check_alertmanager(svc, names)
    for mode in MODES:
        cfg = stack_config(svc, mode)
        check_cloudwatch(svc, cw, cfg, have, mode)
        if args.dualprobe:
            check_emf(args.dualprobe, cw, cfg, svc["Outputs"]["EmfNamespace"]["Value"], mode)
    for n in notes:
        print(f"NOTE: {n}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    print(f"check-alerting: {len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
