#!/usr/bin/env python3
"""Checks cfn-lint cannot do on cloudformation/*.yml.

1. parent.yml <-> nested templates: every AWS::Serverless::Application Location
   exists, every parameter passed is declared by the nested template, every nested
   parameter without a Default is passed, and every !GetAtt Stack.Outputs.X names
   an output of that nested template.
2. The documents embedded in service.yml as !Sub strings are rendered with sample
   values and parsed: DUALPROBE_CONFIG (YAML, checked against the names in
   docs/contract.md), the ADOT collector's AOT_CONFIG_CONTENT (YAML) and the
   CloudWatch DashboardBody (JSON).
   Plus the task definition's safety rules (check_task_definition) and that no
   template defaults to an image from a public registry.
3. With --dualprobe BIN (or $DUALPROBE_BIN), the rendered DUALPROBE_CONFIG is also
   run through `BIN check-config FILE`.

Needs the Python that has cfn-lint installed (it uses cfn-lint's YAML loader for the
CloudFormation short-form tags, and PyYAML, a cfn-lint dependency).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

import yaml
from cfnlint.decode import cfn_yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFN = os.path.join(REPO, "cloudformation")

SAMPLE = {
    "AWS::Region": "eu-west-1",
    "AWS::StackName": "ipv6-environment-ServiceStack-ABC",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "LoadBalancer.DNSName": "ipv6-e-LoadB-1234567890.eu-west-1.elb.amazonaws.com",
    "VpcId": "vpc-0123456789abcdef0",
    "ServiceName": "web",
    "ClusterName": "ipv6-environment-ClusterStack-XYZ-Cluster-abc",
    "PrometheusWorkspace.PrometheusEndpoint": "https://aps-workspaces.eu-west-1.amazonaws.com/workspaces/ws-1234/",
    "LogGroup": "/ecs/ipv6-environment-ServiceStack-ABC/web",
    "HealthCheckPath": "/healthz?from=alb",
}

# docs/contract.md
CHECKS = {"dns", "tcp", "tls", "http", "s3", "ec2", "private_dns"}
FAMILIES = {"ipv4", "ipv6"}
EXPECTS = {"reachable", "unreachable", "any"}
TOP_KEYS = {"listen", "interval", "timeout", "families", "resolver", "targets", "discovery", "probe", "modules"}
TARGET_KEYS = {"name", "host", "port", "checks", "interval", "timeout", "families", "addresses",
               "http", "tls", "expect", "aws", "module"}

errors: list[str] = []


def err(msg: str) -> None:
    errors.append(msg)


def load(name: str) -> dict:
    return cfn_yaml.load(os.path.join(CFN, name))


def render(sub, where: str) -> str:
    """Render an Fn::Sub string (no variable map) with SAMPLE values."""
    if isinstance(sub, dict) and "Fn::Sub" in sub:
        sub = sub["Fn::Sub"]
    if not isinstance(sub, str):
        raise SystemExit(f"{where}: expected a !Sub string")

    def repl(m: re.Match) -> str:
        key = m.group(1)
        if key.startswith("!"):
            return "${" + key[1:] + "}"
        if key not in SAMPLE:
            err(f"{where}: no sample value for ${{{key}}}")
            return "X"
        return SAMPLE[key]

    return re.sub(r"\$\{([^}]+)\}", repl, sub)


# ------------------------------------------------------------------ 1. nesting
def check_nesting() -> None:
    parent = load("parent.yml")
    children: dict[str, dict] = {}
    for name, res in parent["Resources"].items():
        if res.get("Type") != "AWS::Serverless::Application":
            continue
        loc = res["Properties"]["Location"]
        path = os.path.join(CFN, loc)
        if not os.path.exists(path):
            err(f"parent.yml {name}: Location {loc} does not exist")
            continue
        child = load(loc)
        children[name] = child
        declared = child.get("Parameters", {}) or {}
        passed = res["Properties"].get("Parameters", {}) or {}
        for p in passed:
            if p not in declared:
                err(f"parent.yml {name}: passes {p}, which {loc} does not declare")
        for p, spec in declared.items():
            if "Default" not in spec and p not in passed:
                err(f"parent.yml {name}: does not pass {p}, required by {loc}")
            elif p not in passed:
                # A child default the parent cannot override is a setting users lose.
                err(f"parent.yml {name}: does not pass {p} ({loc}); add a parent parameter for it")
    outputs = parent.get("Outputs") or {}
    for name, out in outputs.items():
        ga = (out.get("Value") or {}).get("Fn::GetAtt") if isinstance(out.get("Value"), dict) else None
        if isinstance(ga, list) and ga[0] in children and str(ga[1]).startswith("Outputs."):
            child_out = (children[ga[0]].get("Outputs") or {}).get(ga[1].split(".", 1)[1]) or {}
            if "Condition" in child_out and "Condition" not in out:
                err(f"parent.yml output {name}: {ga[0]}.{ga[1]} is conditional, the output is not")
    for want in PARENT_OUTPUTS:
        if want not in outputs:
            err(f"parent.yml: output {want} missing")

    def walk(node) -> None:
        if isinstance(node, dict):
            if "Fn::GetAtt" in node:
                ga = node["Fn::GetAtt"]
                if isinstance(ga, str):
                    ga = ga.split(".", 1)
                if len(ga) == 2 and ga[0] in children and str(ga[1]).startswith("Outputs."):
                    out = ga[1].split(".", 1)[1]
                    if out not in (children[ga[0]].get("Outputs") or {}):
                        err(f"parent.yml: !GetAtt {ga[0]}.{ga[1]} - no such output")
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(parent)


# Surfaced at the top: where to look after `sam deploy` (README, scripts/deploy.sh).
PARENT_OUTPUTS = ("PublicURI", "ClusterName", "ServiceName", "DashboardURL",
                  "PrometheusRemoteWriteEndpoint", "PrometheusQueryEndpoint")
PUBLIC_REGISTRY = re.compile(r"^(public\.ecr\.aws|docker\.io|ghcr\.io|quay\.io|registry\.k8s\.io)/")


def check_task_definition(svc: dict, containers: list[dict]) -> None:
    """The rules that keep an optional sidecar from ever costing the app its task."""
    essential = {c["Name"] for c in containers if c.get("Essential", True) is True}
    for c in containers:
        n = c["Name"]
        opts = (c.get("LogConfiguration") or {}).get("Options") or {}
        if opts.get("mode") != "non-blocking" or "max-buffer-size" not in opts:
            err(f"service.yml container {n}: awslogs needs mode: non-blocking and max-buffer-size")
        if n not in essential:
            rp = c.get("RestartPolicy") or {}
            if rp.get("Enabled") is not True:
                err(f"service.yml container {n}: non-essential without RestartPolicy Enabled: true")
        for dep in c.get("DependsOn") or []:
            if n in essential and dep.get("ContainerName") not in essential:
                err(f"service.yml container {n}: essential, DependsOn non-essential {dep.get('ContainerName')}")
    # PrivateDnsEnabled interface endpoints are VPC-wide names: the VPC stack owns them.
    for rname, r in svc["Resources"].items():
        if r.get("Type") == "AWS::EC2::VPCEndpoint":
            err(f"service.yml {rname}: VPC endpoints belong in ipv6-vpc.yml (one per VPC)")
    for tname in sorted(os.listdir(CFN)):
        if tname.endswith(".yml"):
            for p, spec in (load(tname).get("Parameters") or {}).items():
                if PUBLIC_REGISTRY.match(str(spec.get("Default", ""))):
                    err(f"{tname} parameter {p}: default {spec['Default']} is a public registry "
                        "the private subnets cannot reach")


# ------------------------------------------------------------------ 2. embedded documents
def check_dualprobe_config(text: str) -> dict | None:
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as e:
        err(f"DUALPROBE_CONFIG is not valid YAML: {e}")
        return None
    if not isinstance(cfg, dict):
        err("DUALPROBE_CONFIG is not a mapping")
        return None
    for k in cfg:
        if k not in TOP_KEYS:
            err(f"DUALPROBE_CONFIG: unknown top-level key {k!r}")
    names = set()
    for t in cfg.get("targets") or []:
        n = t.get("name")
        if not n or n in names:
            err(f"DUALPROBE_CONFIG: target name missing or duplicate: {n!r}")
        names.add(n)
        for k in t:
            if k not in TARGET_KEYS:
                err(f"DUALPROBE_CONFIG target {n}: unknown key {k!r}")
        if not t.get("host") and not t.get("aws"):
            err(f"DUALPROBE_CONFIG target {n}: needs host or aws")
        for c in t.get("checks") or []:
            if c not in CHECKS:
                err(f"DUALPROBE_CONFIG target {n}: unknown check {c!r}")
        for fam, exp in (t.get("expect") or {}).items():
            if fam not in FAMILIES or exp not in EXPECTS:
                err(f"DUALPROBE_CONFIG target {n}: bad expect {fam}: {exp}")
    for f in cfg.get("families") or []:
        if f not in FAMILIES:
            err(f"DUALPROBE_CONFIG: unknown family {f!r}")
    return cfg


def check_service(dualprobe: str | None) -> None:
    svc = load("service.yml")
    res = svc["Resources"]
    containers = res["TaskDefinition"]["Properties"]["ContainerDefinitions"]
    flat = []
    for c in containers:
        if isinstance(c, dict) and "Fn::If" in c:
            c = c["Fn::If"][1]
        flat.append(c)
    by_name = {c["Name"]: c for c in flat}
    check_task_definition(svc, flat)
    dp = by_name.get("dualprobe")
    if not dp:
        err("service.yml: no dualprobe container")
        return
    env = {e["Name"]: e["Value"] for e in dp.get("Environment", [])}
    if "DUALPROBE_CONFIG" not in env:
        err("service.yml: dualprobe has no DUALPROBE_CONFIG")
        return
    text = render(env["DUALPROBE_CONFIG"], "DUALPROBE_CONFIG")
    cfg = check_dualprobe_config(text)
    if cfg is not None and dualprobe:
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            f.write(text)
        try:
            r = subprocess.run([dualprobe, "check-config", f.name], capture_output=True, text=True, timeout=60)
            if r.returncode != 0:
                err(f"dualprobe check-config rejected DUALPROBE_CONFIG:\n{r.stdout}{r.stderr}")
        finally:
            os.unlink(f.name)

    adot = by_name.get("adot-collector")
    if adot:
        aenv = {e["Name"]: e["Value"] for e in adot.get("Environment", [])}
        try:
            a = yaml.safe_load(render(aenv["AOT_CONFIG_CONTENT"], "AOT_CONFIG_CONTENT"))
            targets = a["receivers"]["prometheus"]["config"]["scrape_configs"][0]["static_configs"][0]["targets"]
            if "localhost:9469" not in targets:
                err("AOT_CONFIG_CONTENT: does not scrape localhost:9469")
            if a["receivers"]["prometheus"]["config"]["scrape_configs"][0]["job_name"] != "dualprobe":
                err('AOT_CONFIG_CONTENT: job_name must be "dualprobe" (alerts.yml uses up{job="dualprobe"})')
        except (yaml.YAMLError, KeyError, IndexError, TypeError) as e:
            err(f"AOT_CONFIG_CONTENT: {e!r}")

    dash = res.get("Dashboard")
    if dash:
        try:
            body = json.loads(render(dash["Properties"]["DashboardBody"], "DashboardBody"))
            if not body.get("widgets"):
                err("DashboardBody: no widgets")
            text = json.dumps(body)
            for m in ("ProbeSuccess", "ProbeDuration", "ExpectationMet"):
                if m not in text:
                    err(f"DashboardBody: metric {m} not shown")
        except ValueError as e:
            err(f"DashboardBody is not valid JSON: {e}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dualprobe", default=os.environ.get("DUALPROBE_BIN"),
                    help="dualprobe binary for `check-config` of the rendered DUALPROBE_CONFIG")
    ap.add_argument("--print-config", action="store_true", help="print the rendered DUALPROBE_CONFIG and exit")
    args = ap.parse_args()
    if args.print_config:
        svc = load("service.yml")
        for c in svc["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]:
            if isinstance(c, dict) and c.get("Name") == "dualprobe":
                env = {e["Name"]: e["Value"] for e in c["Environment"]}
                print(render(env["DUALPROBE_CONFIG"], "DUALPROBE_CONFIG"), end="")
        return 0
    check_nesting()
    check_service(args.dualprobe)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
