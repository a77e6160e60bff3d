#!/usr/bin/env python3
"""The task role's `dualprobe-probes` policy held to the code's AWS calls (issue 11, item 2).

1. Reads the policy statements from cloudformation/service.yml (own loader for the
   CloudFormation short-form tags) and the DUALPROBE_CONFIG the template renders.
2. Starts moto (its server app, one process, one state) on 127.0.0.1 and [::1] with IAM
   enforcement after exactly the setup calls (INITIAL_NO_AUTH_ACTION_COUNT), and dnsmasq on
   127.0.0.1 answering the dual-stack endpoint names with both loopback addresses.
3. Setup: an IAM user holding exactly those statements, its access key, a bucket, a dual-stack
   VPC with an interface and a gateway endpoint. Then proves enforcement: the user's
   s3:CreateBucket is denied and a wrong secret is rejected.
4. Runs the release binary as the task definition does (DUALPROBE_CONFIG, `run --log-format
   json --emf`, credentials from the environment), with the template's AWS targets and its
   vpc_endpoints discovery pointed at moto, and requires every call to succeed over both
   families: s3/ec2 checks `ok` (never aws_denied/aws_auth), discovery success with the VPC's 2
   endpoints and at least one successful refresh, targets of source vpc_endpoints, the EMF
   DiscoverySuccess line, no WARN/ERROR log line.
5. Least privilege: statements are Allow with literal actions (no wildcards, no Not*); every
   action in them was exercised (moto's own authorization log); every SDK call in src/ is known
   to this script (a new one fails here until the test covers it).

--mutants also reruns the whole scenario once per action with that action removed and requires
each run to fail (the test of the test).

  scripts/check-iam.py [--mutants] [BIN]       BIN or $DUALPROBE_BIN (the release binary)
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.request

import yaml

from cfn_modes import MODES, ModeView
from iam_peers import (EC2_DUALSTACK, REGION, Fail, Proc, free_port_both, make_pki,
                       serve_moto, start_dnsmasq, wait_tcp)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICE_YML = os.path.join(REPO, "cloudformation", "service.yml")
POLICY_NAME = "dualprobe-probes"
BUCKET = "dualprobe-iam-check"
# The SDK calls in src/ (method names of the aws-sdk clients) and the IAM action each needs.
# `shipped`: the template's config makes it; otherwise only a non-default `aws.operation`
# does, which README/service.yml document as needing that action added.
SDK_CALLS = {
    "list_buckets": ("s3:ListAllMyBuckets", True),
    "describe_regions": ("ec2:DescribeRegions", True),
    "describe_vpc_endpoints": ("ec2:DescribeVpcEndpoints", True),
    "describe_vpcs": ("ec2:DescribeVpcs", True),
    "describe_availability_zones": ("ec2:DescribeAvailabilityZones", False),
    "describe_instances": ("ec2:DescribeInstances", False),
}
SDK_CALL_RE = re.compile(r"\.(list_buckets|describe_[a-z_]+|get_object|head_bucket|head_object|"
                         r"assume_role\w*|get_caller_identity)\(\)")


# ---------------------------------------------------------------- CloudFormation YAML

class CfnLoader(yaml.SafeLoader):
    """PyYAML with the CloudFormation short forms turned into their long forms."""


TAGS = {"Ref": "Ref", "Condition": "Condition"}
for _fn in ("Sub", "GetAtt", "If", "Join", "Select", "Split", "Equals", "Not", "And", "Or",
            "FindInMap", "Base64", "Cidr", "ImportValue", "GetAZs", "Transform", "Length",
            "ToJsonString"):
    TAGS[_fn] = "Fn::" + _fn


def _construct_tag(loader: CfnLoader, suffix: str, node: yaml.Node):
    key = TAGS.get(suffix)
    if key is None:
        raise yaml.constructor.ConstructorError(
            None, None, f"unknown CloudFormation tag !{suffix}", node.start_mark)
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if key == "Fn::GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {key: value}


CfnLoader.add_multi_constructor("!", _construct_tag)


def load_template(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.load(f, Loader=CfnLoader)  # noqa: S506 (SafeLoader subclass)
    except (OSError, yaml.YAMLError) as e:
        raise Fail(f"{path}: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("Resources"), dict):
        raise Fail(f"{path}: no Resources mapping")
    return doc


def resolve(value, values: dict, where: str):
    """Resolves Ref/Fn::Sub/Fn::Join in a policy document; anything else is an error."""
    if isinstance(value, list):
        return [resolve(v, values, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        (k, v), = value.items()
        if k == "Ref":
            if v not in values:
                raise Fail(f"{where}: no value for Ref {v}")
            return values[v]
        if k == "Fn::Sub" and isinstance(v, str):
            def sub(m):
                if m.group(1) not in values:
                    raise Fail(f"{where}: no value for ${{{m.group(1)}}}")
                return values[m.group(1)]
            return re.sub(r"\$\{([^!}][^}]*)\}", sub, v)
        if k == "Fn::Join" and isinstance(v, list) and len(v) == 2:
            return v[0].join(resolve(v[1], values, where))
        if k.startswith("Fn::") or k == "Condition":
            raise Fail(f"{where}: {k} is not supported in the {POLICY_NAME} policy")
    return {k: resolve(v, values, f"{where}.{k}") for k, v in value.items()}


def policy_statements(doc: dict, path: str) -> list[dict]:
    """The statements of the one `dualprobe-probes` inline policy of the template's roles."""
    found = []
    for name, res in doc["Resources"].items():
        if not isinstance(res, dict) or res.get("Type") != "AWS::IAM::Role":
            continue
        for i, p in enumerate(res.get("Properties", {}).get("Policies", []) or []):
            if isinstance(p, dict) and p.get("PolicyName") == POLICY_NAME:
                found.append((f"Resources.{name}.Properties.Policies[{i}]", p))
    if len(found) != 1:
        raise Fail(f"{path}: expected one {POLICY_NAME} policy, found {len(found)}")
    where, p = found[0]
    where = f"{path}: {where}"
    values = {"AWS::Region": REGION, "AWS::Partition": "aws", "AWS::AccountId": "123456789012",
              "AWS::StackName": "dualprobe-iam-check"}
    statements = resolve(p.get("PolicyDocument", {}), values, where).get("Statement")
    if not isinstance(statements, list) or not statements:
        raise Fail(f"{where}.PolicyDocument.Statement: expected a non-empty list")
    return statements


def rendered_config(doc: dict, path: str, mode: str = "dualstack") -> dict:
    """The dualprobe container's DUALPROBE_CONFIG (!Sub) for NetworkMode MODE, rendered and parsed."""
    try:
        view = ModeView(doc, {"NetworkMode": mode} if "NetworkMode" in (doc.get("Parameters") or {}) else {})
        containers = view.resolve(doc["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"])
    except (KeyError, ValueError, TypeError) as e:
        raise Fail(f"{path}: cannot resolve the task definition for NetworkMode={mode}: {e}") from e
    for c in containers:
        if isinstance(c, dict) and c.get("Name") == "dualprobe":
            for e in c.get("Environment", []):
                if e.get("Name") == "DUALPROBE_CONFIG":
                    sub = e["Value"]["Fn::Sub"] if isinstance(e["Value"], dict) else e["Value"]
                    values = {"AWS::Region": REGION, "VpcId": "vpc-placeholder",
                              "LoadBalancerDNSName": "alb.invalid"}
                    text = re.sub(r"\$\{([^!}][^}]*)\}",
                                  lambda m: values.get(m.group(1), "placeholder.invalid"), sub)
                    return yaml.safe_load(text)
    raise Fail(f"{path}: no DUALPROBE_CONFIG on the dualprobe container")


def aws_calls(cfg: dict) -> tuple:
    """What a config makes AWS do: its aws: targets' calls and its discovery sources."""
    calls = sorted((t["aws"].get("service"), t["aws"].get("operation") or "", tuple(sorted(t.get("checks") or [])))
                   for t in cfg.get("targets") or [] if "aws" in t)
    return calls, sorted((cfg.get("discovery") or {}).keys())


def same_calls_every_mode(doc: dict, path: str) -> list[str]:
    """The scenario runs the dualstack config; the ipv6only one must call AWS the same way."""
    if "NetworkMode" not in (doc.get("Parameters") or {}):
        return []
    want = aws_calls(rendered_config(doc, path, "dualstack"))
    return [f"NetworkMode={m}: the config's AWS calls {aws_calls(rendered_config(doc, path, m))} differ from "
            f"dualstack's {want}, which is all this check runs" for m in MODES
            if aws_calls(rendered_config(doc, path, m)) != want]


def actions_of(statements: list[dict]) -> list[str]:
    out = []
    for i, st in enumerate(statements):
        a = st.get("Action", [])
        out += [a] if isinstance(a, str) else list(a)
    return out


def least_privilege_shape(statements: list[dict]) -> list[str]:
    errs = []
    for i, st in enumerate(statements):
        sid = st.get("Sid", f"Statement[{i}]")
        if st.get("Effect") != "Allow":
            errs.append(f"{sid}: Effect must be Allow")
        for k in ("NotAction", "NotResource", "NotPrincipal"):
            if k in st:
                errs.append(f"{sid}: {k} grants more than it names")
        acts = st.get("Action")
        for a in [acts] if isinstance(acts, str) else (acts or []):
            if not isinstance(a, str) or "*" in a or "?" in a or ":" not in a:
                errs.append(f"{sid}: action {a!r} is not one literal service:Action")
    return errs


def sdk_calls_in_src() -> list[str]:
    """Unknown SDK calls in src/ (each must be added to SDK_CALLS and exercised), and
    SDK_CALLS entries src/ no longer has (the grep would be stale)."""
    errs, seen = [], set()
    for root, _, files in os.walk(os.path.join(REPO, "src")):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(root, f)
            with open(path, encoding="utf-8") as fh:
                for n, line in enumerate(fh, 1):
                    for m in SDK_CALL_RE.finditer(line):
                        seen.add(m.group(1))
                        if m.group(1) not in SDK_CALLS:
                            errs.append(f"{os.path.relpath(path, REPO)}:{n}: AWS call {m.group(1)}()"
                                        " is unknown to scripts/check-iam.py (add it to SDK_CALLS)")
    errs += [f"SDK_CALLS lists {c}() but src/ no longer calls it" for c in SDK_CALLS if c not in seen]
    return errs


# ---------------------------------------------------------------- one scenario

def boto(service: str, endpoint: str, ca: str, key="testing", secret="testing"):
    import boto3
    from botocore.config import Config
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint, verify=ca,
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(retries={"total_max_attempts": 1},
                                      s3={"addressing_style": "path"}))


def setup(endpoint: str, ca: str, statements: list[dict]) -> tuple[str, str, str]:
    """The setup calls; their number is SETUP_CALLS (moto authorizes everything after it)."""
    iam = boto("iam", endpoint, ca)
    iam.create_user(UserName="dualprobe-task")  # 1
    iam.put_user_policy(UserName="dualprobe-task", PolicyName=POLICY_NAME,  # 2
                        PolicyDocument=json.dumps({"Version": "2012-10-17",
                                                   "Statement": statements}))
    k = iam.create_access_key(UserName="dualprobe-task")["AccessKey"]  # 3
    boto("s3", endpoint, ca).create_bucket(Bucket=BUCKET)  # 4
    ec2 = boto("ec2", endpoint, ca)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16",  # 5
                         AmazonProvidedIpv6CidrBlock=True)["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24",  # 6
                               AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
    rt = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]  # 7
    ec2.create_vpc_endpoint(VpcId=vpc, VpcEndpointType="Interface",  # 8
                            ServiceName=f"com.amazonaws.{REGION}.logs", SubnetIds=[subnet],
                            PrivateDnsEnabled=True)
    ec2.create_vpc_endpoint(VpcId=vpc, VpcEndpointType="Gateway",  # 9
                            ServiceName=f"com.amazonaws.{REGION}.s3", RouteTableIds=[rt])
    return k["AccessKeyId"], k["SecretAccessKey"], vpc


SETUP_CALLS = 9


def prove_enforcement(endpoint: str, ca: str, key: str, secret: str) -> None:
    from botocore.exceptions import ClientError
    for what, client, code in (
            ("s3:CreateBucket (not in the policy)", boto("s3", endpoint, ca, key, secret),
             "AccessDenied"),
            ("a wrong secret", boto("s3", endpoint, ca, key, secret + "x"),
             "SignatureDoesNotMatch")):
        try:
            client.create_bucket(Bucket="dualprobe-must-be-denied")
        except ClientError as e:
            if e.response["Error"]["Code"] != code:
                raise Fail(f"enforcement: {what} answered {e.response['Error']} (want {code})")
            continue
        raise Fail(f"enforcement is off: {what} succeeded (INITIAL_NO_AUTH_ACTION_COUNT wrong?)")


def agent_config(template_config: dict, vpc: str, port: int, dns_port: int, ca: str) -> dict:
    cfg = copy.deepcopy(template_config)
    aws_targets = [t for t in cfg.get("targets", []) if "aws" in t]
    if not aws_targets:
        raise Fail("the template's DUALPROBE_CONFIG has no aws: target; nothing to hold the policy to")
    vpce = (cfg.get("discovery") or {}).get("vpc_endpoints")
    if not isinstance(vpce, dict):
        raise Fail("the template's DUALPROBE_CONFIG has no discovery.vpc_endpoints")
    for t in aws_targets:
        if t["aws"].get("region") != REGION or t["aws"].get("endpoint_url"):
            raise Fail(f"target {t['name']}: expected region ${{AWS::Region}} and no endpoint_url")
        # Same request and Host as deployed; only the TCP port and the CA differ.
        t["port"] = port
        t["tls"] = {**t.get("tls", {}), "ca_file": ca}
        t["interval"] = "2s"
        t["timeout"] = "1500ms"
    # The ec2 check's other operations: not granted, so AWS must answer aws_denied.
    for op, (action, shipped) in SDK_CALLS.items():
        if action.startswith("ec2:") and not shipped:
            name = "".join(w.capitalize() for w in op.split("_"))
            aws_targets.append({"name": "op-" + op.replace("_", "-"), "checks": ["ec2"], "port": port,
                                "tls": {"ca_file": ca}, "interval": "2s", "timeout": "1500ms",
                                "aws": {"service": "ec2", "region": REGION, "dual_stack": True,
                                        "operation": name}})
    cfg["targets"] = aws_targets
    cfg["resolver"] = {"nameservers": [f"127.0.0.1:{dns_port}"]}
    vpce.update(vpc_id=vpc, dual_stack=False, refresh="1s", ca_file=ca,
                endpoint_url=f"https://{EC2_DUALSTACK}:{port}")
    return cfg


def parse_metrics(text: str) -> list[tuple[str, dict, float]]:
    out = []
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)", line)
        if m:
            labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
            out.append((m.group(1), labels, float(m.group(3))))
    return out


def run_scenario(bin_path: str, work: str, pki: tuple[str, str, str], dns_port: int,
                 statements: list[dict], template_config: dict, name: str,
                 deadline_s: float = 25.0) -> tuple[list[str], list[dict]]:
    """One full run; returns (failures, moto's authorization log)."""
    ca, cert, key = pki
    d = os.path.join(work, name)
    os.makedirs(d)
    port = free_port_both()
    log_path = os.path.join(d, "moto-auth.jsonl")
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_CALLS),
           "S3_IGNORE_SUBDOMAIN_BUCKETNAME": "true", "AWS_EC2_METADATA_DISABLED": "true",
           "MOTO_ALLOW_NONEXISTENT_REGION": "false", "NO_PROXY": "*"}
    moto = Proc("moto", [sys.executable, os.path.abspath(__file__), "--serve-moto", cert, key,
                         str(port), log_path], os.path.join(d, "moto.log"), env=env)
    agent = None
    failures: list[str] = []
    try:
        wait_tcp("127.0.0.1", port, moto, 60)
        wait_tcp("::1", port, moto, 10)
        endpoint = f"https://127.0.0.1:{port}"
        from botocore.exceptions import BotoCoreError, ClientError
        try:
            akid, secret, vpc = setup(endpoint, ca, statements)
        except (BotoCoreError, ClientError) as e:
            raise Fail(f"setup: {e} (moto enforces IAM after exactly SETUP_CALLS={SETUP_CALLS} "
                       "requests: does setup() still make that many?)") from e
        prove_enforcement(endpoint, ca, akid, secret)
        cfg = agent_config(template_config, vpc, port, dns_port, ca)
        home = os.path.join(d, "home")
        os.makedirs(home)
        # HOME is empty: no ~/.aws profile; IMDS off; only the environment's keys.
        agent_env = {"PATH": "/usr/bin:/bin", "HOME": home, "AWS_ACCESS_KEY_ID": akid,
                     "AWS_SECRET_ACCESS_KEY": secret, "AWS_EC2_METADATA_DISABLED": "true",
                     "DUALPROBE_VPC_ID": vpc, "DUALPROBE_CONFIG": yaml.safe_dump(cfg)}
        emf = open(os.path.join(d, "emf.jsonl"), "wb")
        agent = Proc("dualprobe", [bin_path, "run", "--listen", "127.0.0.1:0", "--log-format",
                                   "json", "--emf"], os.path.join(d, "agent.log"),
                     env=agent_env, stdout=emf)
        families = cfg.get("families") or ["ipv4", "ipv6"]
        want = {(t["name"], t["aws"]["service"], f) for t in cfg["targets"]
                if not t["name"].startswith("op-") and t["aws"]["service"] in t.get("checks", [])
                for f in t.get("families", families)}
        failures = watch_agent(agent, d, deadline_s, want)
        emf.close()
        if not failures:
            failures += check_emf(os.path.join(d, "emf.jsonl"))
    except Fail as e:
        failures.append(str(e))
    finally:
        if agent:
            agent.stop()
        moto.stop()
    auth = []
    if os.path.exists(log_path):
        with open(log_path, encoding="utf-8") as f:
            auth = [json.loads(line) for line in f if line.strip()]
    return failures, auth


def listen_address(log: str, proc: Proc, seconds: float) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with open(log, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    v = json.loads(line)
                except ValueError:
                    continue
                if isinstance(v, dict) and v.get("listen"):
                    return v["listen"]
        if proc.p.poll() is not None:
            raise Fail(f"dualprobe exited with {proc.p.returncode}:\n{proc.tail()}")
        time.sleep(0.1)
    raise Fail("dualprobe logged no listen address")


def watch_agent(agent: Proc, d: str, deadline_s: float, want: set) -> list[str]:
    """Polls /metrics until every AWS path succeeded (returns []) or one failed for good.
    `want`: the (target, check, family) of the template's s3/ec2 checks, each must pass."""
    listen = listen_address(agent.log, agent, 15)
    end = time.monotonic() + deadline_s
    first_success = None
    missing: list[str] = ["no scrape yet"]
    while time.monotonic() < end:
        with urllib.request.urlopen(f"http://{listen}/metrics", timeout=5) as r:
            samples = parse_metrics(r.read().decode())
        with open(os.path.join(d, "metrics.txt"), "w") as f:
            f.write("\n".join(f"{n}{l} {v}" for n, l, v in samples))
        bad = [f"{l['target']}/{l['check']}/{l['family']}: result {l['result']}"
               for n, l, v in samples
               if n == "dualprobe_probes_total" and l.get("check") in ("s3", "ec2") and v > 0
               and l["result"] != "ok" and not l["target"].startswith("op-")]
        bad += [f"{l['target']}/ec2/{l['family']}: result {l['result']} (want aws_denied: "
                "this operation is not granted)"
                for n, l, v in samples
                if n == "dualprobe_probes_total" and l.get("target", "").startswith("op-")
                and v > 0 and l["result"] != "aws_denied"]
        val = {(n, l.get("source")): v for n, l, v in samples if n.startswith("dualprobe_disc")
               or n == "dualprobe_targets"}
        if val.get(("dualprobe_discovery_success", "vpc_endpoints")) == 0:
            bad.append("dualprobe_discovery_success{source=\"vpc_endpoints\"} is 0")
        bad += log_problems(agent.log)
        if bad:
            return bad
        missing = []
        ok = {(l["target"], l["check"], l["family"]) for n, l, v in samples
              if n == "dualprobe_probes_total" and l.get("check") in ("s3", "ec2")
              and l["result"] == "ok" and v > 0}
        missing += [f"{t}/{c}/{f} not ok yet" for t, c, f in sorted(want - ok)]
        if val.get(("dualprobe_discovery_endpoints", "vpc_endpoints")) != 2:
            missing.append("dualprobe_discovery_endpoints{source=\"vpc_endpoints\"} is not 2 "
                           f"({val.get(('dualprobe_discovery_endpoints', 'vpc_endpoints'))})")
        if not val.get(("dualprobe_targets", "vpc_endpoints")):
            missing.append("no dualprobe_targets{source=\"vpc_endpoints\"}")
        ts = val.get(("dualprobe_discovery_last_success_timestamp_seconds", "vpc_endpoints"))
        if first_success is None:
            first_success = ts
        if ts is None or ts == first_success:
            missing.append("no successful discovery refresh yet")
        if not missing:
            return []
        time.sleep(0.25)
    return [f"not every AWS path succeeded within {deadline_s} s: " + "; ".join(missing)]


def log_problems(log: str) -> list[str]:
    out = []
    with open(log, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                v = json.loads(line)
            except ValueError:
                continue
            if not isinstance(v, dict) or v.get("level") not in ("WARN", "ERROR"):
                continue
            # The discovered endpoints (vpce-*) are probed too, and their private names exist
            # in no DNS here: their failing checks are expected, not an IAM problem. (They run
            # at once since first runs are no longer spread over the interval.)
            if str(v.get("target", "")).startswith("vpce-") and \
                    str(v.get("message", "")).startswith(("first probe:", "now failing")):
                continue
            out.append(f"log: {line.strip()[:400]}")
    return out


def check_emf(path: str) -> list[str]:
    with open(path, encoding="utf-8") as f:
        docs = [json.loads(line) for line in f if line.strip().startswith("{")]
    disc = [d for d in docs if d.get("source") == "vpc_endpoints" and "DiscoverySuccess" in d]
    if not disc:
        return ["EMF: no DiscoverySuccess line for vpc_endpoints"]
    bad = [d for d in disc if d["DiscoverySuccess"] != 1 or d.get("DiscoveryEndpoints") != 2]
    return [f"EMF: discovery line {bad[0]}"] if bad else []


# ---------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bin", nargs="?", default=os.environ.get("DUALPROBE_BIN"))
    ap.add_argument("--mutants", action="store_true",
                    help="also rerun once per action with it removed; each run must fail")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--template", default=SERVICE_YML,
                    help="the service template (default: cloudformation/service.yml)")
    ap.add_argument("--serve-moto", nargs=4, metavar=("CERT", "KEY", "PORT", "LOG"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve_moto:
        cert, key, port, log = args.serve_moto
        serve_moto(cert, key, int(port), log)
        return 0
    if not args.bin or not os.access(args.bin, os.X_OK):
        print("check-iam: give the release binary as an argument or $DUALPROBE_BIN", file=sys.stderr)
        return 2
    started = time.monotonic()
    work = tempfile.mkdtemp(prefix="dualprobe-iam-")
    dns = None
    try:
        doc = load_template(args.template)
        statements = policy_statements(doc, args.template)
        template_config = rendered_config(doc, args.template)
        actions = actions_of(statements)
        print(f"check-iam: {POLICY_NAME} grants {', '.join(actions)}")
        errors = least_privilege_shape(statements) + sdk_calls_in_src() + same_calls_every_mode(doc, args.template)
        dns, dns_port = start_dnsmasq(work)
        pki = make_pki(work)
        failures, auth = run_scenario(args.bin, work, pki, dns_port, statements,
                                      template_config, "policy")
        errors += failures
        allowed = {e["action"] for e in auth if e["allowed"]}
        families = {e["action"]: set() for e in auth}
        for e in auth:
            families[e["action"]].add("ipv6" if ":" in e["remote"] else "ipv4")
        unused = [a for a in actions if a not in allowed]
        if unused and not failures:
            errors.append(f"least privilege: granted but never called: {', '.join(unused)}")
        needed = {a for a, shipped in SDK_CALLS.values() if shipped}
        errors += [f"the code calls {a} but the policy does not grant it"
                   for a in sorted(needed - set(actions))]
        for a in ("s3:ListAllMyBuckets", "ec2:DescribeRegions"):
            if not failures and families.get(a) != {"ipv4", "ipv6"}:
                errors.append(f"{a} was not called over both families: {families.get(a)}")
        for a in sorted(allowed):
            print(f"  called and allowed: {a} over {','.join(sorted(families[a]))}")
        if errors:
            for e in errors:
                print(f"FAIL  {e}")
            print(f"check-iam: work directory kept: {work}")
            args.keep = True
            return 1
        print(f"PASS  every AWS call dualprobe makes succeeds with exactly the template's "
              f"{POLICY_NAME} statements ({time.monotonic() - started:.1f} s)")
        if args.mutants:
            survived = []
            for a in actions:
                reduced = []
                for st in statements:
                    acts = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
                    rest = [x for x in acts if x != a]
                    if rest:
                        reduced.append({**st, "Action": rest})
                fails, _ = run_scenario(args.bin, work, pki, dns_port, reduced, template_config,
                                        "without-" + a.replace(":", "-"), deadline_s=15)
                if fails:
                    print(f"PASS  without {a}: detected:")
                    for f in fails[:3]:
                        print(f"        {f[:400]}")
                else:
                    print(f"FAIL  without {a}: the check still passed")
                    survived.append(a)
            if survived:
                args.keep = True
                print(f"check-iam: work directory kept: {work}")
                return 1
            print(f"PASS  removing any granted action makes the check fail "
                  f"({time.monotonic() - started:.1f} s in all)")
        return 0
    except Fail as e:
        print(f"FAIL  {e}")
        return 1
    finally:
        if dns:
            dns.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
