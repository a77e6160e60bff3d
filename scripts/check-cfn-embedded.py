#!/usr/bin/env python3
"""Checks cfn-lint cannot do on cloudformation/*.yml.

1. parent.yml <-> nested templates: every AWS::Serverless::Application Location
   exists, every parameter passed is declared by the nested template, every nested
   parameter without a Default is passed, and every !GetAtt Stack.Outputs.X names
   an output of that nested template.
2. The documents embedded in service.yml as !Sub strings are rendered with sample
   values and parsed, for each NetworkMode (dualstack, ipv6only): DUALPROBE_CONFIG
   (YAML, checked against the names in docs/contract.md and against what the mode's
   network gives a task: no IPv4 at all in ipv6only, so every target is probed over IPv6
   only or expects IPv4 unreachable/any, AWS dual-stack names via native IPv6, an
   IPv4-only name via NAT64 and the NAT64 prefix the VPC routes; no DNS64 in dualstack),
   the ADOT collector's AOT_CONFIG_CONTENT (YAML) and the CloudWatch DashboardBody (JSON).
   Plus the task definition's safety rules (check_task_definition) and that no
   template defaults to an image from a public registry.
3. With --dualprobe BIN (or $DUALPROBE_BIN), each mode's rendered DUALPROBE_CONFIG is
   also run through `BIN check-config FILE`.
4. What each NetworkMode builds (scripts/cfn_modes.py resolves the conditions): ipv6only -
   IPv6-only private subnets (Ipv6Native, no IPv4 CIDR, DNS64, resource-name hostnames),
   a NAT gateway in a public subnet and the 64:ff9b::/96 route to it, interface endpoints
   with IpAddressType and DnsRecordIpType ipv6 and no ECR endpoints (IPv6-only tasks pull
   from ECR's dual-stack names), an ipv6 target group behind the dual-stack ALB, the ADOT
   image from the dual-stack registry; dualstack - dual-stack private subnets, no NAT
   gateway and no route to one, ipv4 endpoints, an ipv4 target group.

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

from cfn_modes import MODES, ModeView, container

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CFN = os.path.join(REPO, "cloudformation")

SAMPLE = {
    "AWS::Region": "eu-west-1",
    "AWS::StackName": "ipv6-environment-ServiceStack-ABC",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "LoadBalancerDNSName": "ipv6-e-LoadB-1234567890.eu-west-1.elb.amazonaws.com",
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
EXPECTS = {"reachable", "unreachable", "any", "nodata"}
VIA = {"native", "nat64"}
TOP_KEYS = {"listen", "interval", "timeout", "families", "resolver", "targets", "discovery", "probe", "modules"}
RESOLVER_KEYS = {"nameservers", "nat64_prefixes", "nat64_discovery"}
NAT64_PREFIX = "64:ff9b::/96"  # RFC 6052's well-known prefix: ipv6-vpc.yml's route, AWS's DNS64
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
def check_dualprobe_config(text: str, mode: str) -> dict | None:
    where = f"DUALPROBE_CONFIG ({mode})"
    try:
        cfg = yaml.safe_load(text)
    except yaml.YAMLError as e:
        err(f"{where} is not valid YAML: {e}")
        return None
    if not isinstance(cfg, dict):
        err(f"{where} is not a mapping")
        return None
    for k in cfg:
        if k not in TOP_KEYS:
            err(f"{where}: unknown top-level key {k!r}")
    for k in cfg.get("resolver") or {}:
        if k not in RESOLVER_KEYS:
            err(f"{where}: unknown resolver key {k!r}")
    names = set()
    for t in cfg.get("targets") or []:
        n = t.get("name")
        if not n or n in names:
            err(f"{where}: target name missing or duplicate: {n!r}")
        names.add(n)
        for k in t:
            if k not in TARGET_KEYS:
                err(f"{where} target {n}: unknown key {k!r}")
        if not t.get("host") and not t.get("aws"):
            err(f"{where} target {n}: needs host or aws")
        for c in t.get("checks") or []:
            if c not in CHECKS:
                err(f"{where} target {n}: unknown check {c!r}")
        for fam, exp in (t.get("expect") or {}).items():
            if fam == "via":
                for vf, how in (exp or {}).items():
                    if vf != "ipv6" or how not in VIA:
                        err(f"{where} target {n}: bad expect via {vf}: {how} (ipv6: native|nat64)")
            elif fam not in FAMILIES or exp not in EXPECTS:
                err(f"{where} target {n}: bad expect {fam}: {exp}")
    for f in cfg.get("families") or []:
        if f not in FAMILIES:
            err(f"{where}: unknown family {f!r}")
    check_mode_expectations(cfg, mode, where)
    return cfg


def aws_name(t: dict) -> bool:
    """A target whose name AWS answers with AAAA records: an `aws:` dual-stack target or an
    *.api.aws / *.dualstack.* / the load balancer's name."""
    host = str(t.get("host") or "")
    return bool((t.get("aws") or {}).get("dual_stack")) or host.endswith(".api.aws") \
        or ".dualstack." in host or host == SAMPLE["LoadBalancerDNSName"]


def check_mode_expectations(cfg: dict, mode: str, where: str) -> None:
    """The expectations each NetworkMode's network makes true (ipv6-vpc.yml)."""
    default = cfg.get("families") or ["ipv4", "ipv6"]
    targets = cfg.get("targets") or []
    nat64 = [t for t in targets if ((t.get("expect") or {}).get("via") or {}).get("ipv6") == "nat64"]
    if mode == "ipv6only":
        if default != ["ipv6"]:
            err(f"{where}: families {default}, want [ipv6] (the task has no IPv4 address)")
        prefixes = (cfg.get("resolver") or {}).get("nat64_prefixes")
        if prefixes is not None and prefixes != [NAT64_PREFIX]:
            err(f"{where}: resolver.nat64_prefixes {prefixes}, but the VPC routes only {NAT64_PREFIX}")
        for t in targets:
            exp = t.get("expect") or {}
            fams = t.get("families") or default
            if "ipv4" in fams and exp.get("ipv4", "reachable") not in ("unreachable", "any"):
                err(f"{where} target {t.get('name')}: ipv4 expected {exp.get('ipv4', 'reachable')}, "
                    "but the task has no IPv4 (want unreachable or any)")
            via = (exp.get("via") or {}).get("ipv6")
            if "ipv6" in fams and aws_name(t) and via != "native":
                err(f"{where} target {t.get('name')}: an AWS dual-stack name must expect via ipv6 native")
        if not any(t.get("host") and not aws_name(t) and "ipv6" in (t.get("families") or default)
                   and (t.get("expect") or {}).get("ipv6") == "reachable" for t in nat64):
            err(f"{where}: no IPv4-only internet name expected reachable over ipv6 via nat64")
    else:
        for t in nat64:
            err(f"{where} target {t.get('name')}: via nat64, but dual-stack subnets have no DNS64")


def rendered_config(svc: dict, mode: str) -> str:
    env = {e["Name"]: e["Value"] for e in container(ModeView(svc, {"NetworkMode": mode}), "dualprobe")
           .get("Environment", [])}
    if "DUALPROBE_CONFIG" not in env:
        raise SystemExit("service.yml: dualprobe has no DUALPROBE_CONFIG")
    return render(env["DUALPROBE_CONFIG"], f"DUALPROBE_CONFIG ({mode})")


def check_service(dualprobe: str | None) -> None:
    svc = load("service.yml")
    res = svc["Resources"]
    # Every optional container in (the prometheus branch), ECS Exec on.
    flat = ModeView(svc, {"MetricsExport": "prometheus"}).resolve(
        res["TaskDefinition"]["Properties"]["ContainerDefinitions"])
    by_name = {c["Name"]: c for c in flat}
    check_task_definition(svc, flat)
    if "dualprobe" not in by_name:
        err("service.yml: no dualprobe container")
        return
    for mode in MODES:
        text = rendered_config(svc, mode)
        cfg = check_dualprobe_config(text, mode)
        if cfg is not None and dualprobe:
            with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
                f.write(text)
            try:
                r = subprocess.run([dualprobe, "check-config", f.name], capture_output=True, text=True, timeout=60)
                if r.returncode != 0:
                    err(f"dualprobe check-config rejected DUALPROBE_CONFIG ({mode}):\n{r.stdout}{r.stderr}")
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


# ------------------------------------------------------------------ 4. what each mode builds
def of_type(resources: dict, t: str) -> dict[str, dict]:
    return {k: v["Properties"] for k, v in resources.items() if v["Type"] == t}


def check_modes() -> None:
    vpc_t, lb_t, svc_t = load("ipv6-vpc.yml"), load("load-balancer.yml"), load("service.yml")
    for mode in MODES:
        m = f"NetworkMode={mode}"
        v6 = mode == "ipv6only"
        # Every optional endpoint on, so each one's families are checked.
        vpc = ModeView(vpc_t, {"NetworkMode": mode, "EnableEcsExec": "true", "EnableSecretsManager": "true",
                               "EnableApsWorkspacesEndpoint": "true"}).resources()
        subnets = of_type(vpc, "AWS::EC2::Subnet")
        private = {k: p for k, p in subnets.items() if k.startswith("PrivateSubnet")}
        public = {k: p for k, p in subnets.items() if k.startswith("PublicSubnet")}
        if len(private) != 2 or len(public) != 2:
            err(f"ipv6-vpc.yml ({m}): want 2 public and 2 private subnets, got {sorted(subnets)}")
        for k, p in public.items():
            if "CidrBlock" not in p or "Ipv6CidrBlock" not in p or p.get("Ipv6Native"):
                err(f"ipv6-vpc.yml ({m}) {k}: public subnets stay dual-stack (ALB, NAT gateway)")
        for k, p in private.items():
            names = p.get("PrivateDnsNameOptionsOnLaunch") or {}
            if "Ipv6CidrBlock" not in p or p.get("AssignIpv6AddressOnCreation") is not True:
                err(f"ipv6-vpc.yml ({m}) {k}: no IPv6 CIDR or no AssignIpv6AddressOnCreation")
            if v6 and ("CidrBlock" in p or p.get("Ipv6Native") is not True or p.get("EnableDns64") is not True
                       or names.get("HostnameType") != "resource-name"):
                err(f"ipv6-vpc.yml ({m}) {k}: not IPv6-only (want no CidrBlock, Ipv6Native, EnableDns64, "
                    f"HostnameType resource-name): {p}")
            if not v6 and ("CidrBlock" not in p or p.get("Ipv6Native") or p.get("EnableDns64")):
                err(f"ipv6-vpc.yml ({m}) {k}: not dual-stack without DNS64: {p}")
        nats = of_type(vpc, "AWS::EC2::NatGateway")
        routes = of_type(vpc, "AWS::EC2::Route")
        private_rt = [r for r in routes.values() if r.get("RouteTableId") == {"Ref": "PrivateRouteTable"}]
        nat64 = [r for r in private_rt if r.get("DestinationIpv6CidrBlock") == NAT64_PREFIX and "NatGatewayId" in r]
        if any("DestinationCidrBlock" in r for r in private_rt):
            err(f"ipv6-vpc.yml ({m}): an IPv4 route in the private route table (the design has none)")
        if v6:
            if len(nats) != 1 or len(nat64) != 1:
                err(f"ipv6-vpc.yml ({m}): want one NAT gateway and one {NAT64_PREFIX} route to it, "
                    f"got {sorted(nats)} and {nat64}")
            for k, p in nats.items():
                if str((p.get("SubnetId") or {}).get("Ref", "")) not in public:
                    err(f"ipv6-vpc.yml ({m}) {k}: a NAT gateway must be in a public subnet")
        elif nats or nat64:
            err(f"ipv6-vpc.yml ({m}): a NAT gateway or a route to one in dualstack mode")
        want = "ipv6" if v6 else "ipv4"
        for k, p in of_type(vpc, "AWS::EC2::VPCEndpoint").items():
            if p.get("VpcEndpointType") != "Interface":
                continue
            svc_name = str((p.get("ServiceName") or {}).get("Fn::Sub", p.get("ServiceName")))
            if p.get("IpAddressType") != want or (p.get("DnsOptions") or {}).get("DnsRecordIpType") != want:
                err(f"ipv6-vpc.yml ({m}) {k}: IpAddressType {p.get('IpAddressType')} / DnsRecordIpType "
                    f"{(p.get('DnsOptions') or {}).get('DnsRecordIpType')}, want {want} for both")
            if v6 and ".ecr." in svc_name:
                err(f"ipv6-vpc.yml ({m}) {k}: IPv6-only tasks pull from ECR's dual-stack names, "
                    "which PrivateLink does not carry")
        lb = ModeView(lb_t, {"NetworkMode": mode}).resources()
        for k, p in of_type(lb, "AWS::ElasticLoadBalancingV2::LoadBalancer").items():
            if p.get("IpAddressType") != "dualstack":
                err(f"load-balancer.yml ({m}) {k}: IpAddressType {p.get('IpAddressType')}, want dualstack")
        for k, p in of_type(lb, "AWS::ElasticLoadBalancingV2::TargetGroup").items():
            if p.get("IpAddressType") != want or p.get("TargetType") != "ip":
                err(f"load-balancer.yml ({m}) {k}: want an ip target group of IpAddressType {want}")
        sg = of_type(lb, "AWS::EC2::SecurityGroup").get("LoadBalancerSecurityGroup") or {}
        egress_key = "CidrIpv6" if v6 else "CidrIp"
        if not any(egress_key in e for e in sg.get("SecurityGroupEgress") or []):
            err(f"load-balancer.yml ({m}): the load balancer's egress to the tasks has no {egress_key} rule")
        sv = ModeView(svc_t, {"NetworkMode": mode, "MetricsExport": "prometheus"})
        image = sv.resolve(container(sv, "adot-collector")["Image"])
        image_text = json.dumps(image)
        if v6 != ("dkr-ecr." in image_text and ".on.aws" in image_text):
            err(f"service.yml ({m}): the ADOT image from the cache is {image_text}; ipv6only needs "
                "ECR's dual-stack ACCOUNT.dkr-ecr.REGION.on.aws, dualstack the PrivateLink name")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dualprobe", default=os.environ.get("DUALPROBE_BIN"),
                    help="dualprobe binary for `check-config` of each mode's rendered DUALPROBE_CONFIG")
    ap.add_argument("--print-config", choices=MODES, metavar="MODE",
                    help="print the DUALPROBE_CONFIG rendered for NetworkMode MODE (dualstack, ipv6only) and exit")
    args = ap.parse_args()
    if args.print_config:
        print(rendered_config(load("service.yml"), args.print_config), end="")
        return 0
    check_nesting()
    check_service(args.dualprobe)
    check_modes()
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
