#!/usr/bin/env python3
"""Validates the task-definition snippets in examples/ (no AWS call, no network).

examples/dualprobe-sidecar.cfn.yml (CloudFormation) and
examples/dualprobe-sidecar.task-definition.json (ECS API JSON) add dualprobe to an
existing task definition. Both are checked:

1. The YAML, placed in a minimal template (an app container, the task and execution
   roles, a log group), passes cfn-lint (errors and warnings); the JSON's task role
   policy goes into that template as an AWS::IAM::Policy, so cfn-lint checks its
   grammar too.
2. The JSON's containerDefinitions and volumes, as a RegisterTaskDefinition request,
   pass botocore's ParamValidator against the ECS service model (the shape the API
   accepts: names, types, required members); every mount point names a volume.
3. Neither drifts from cloudformation/service.yml's dualprobe container on the fields
   that decide how it runs (DRIFT_FIELDS), its volumes and its dualprobe-probes policy.
4. With --dualprobe BIN (or $DUALPROBE_BIN), both snippets' DUALPROBE_CONFIG, with
   sample values, pass `BIN check-config`.

Run with the Python that has cfn-lint (it brings botocore, through aws-sam-translator).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import subprocess
import sys
import tempfile

from cfnlint.api import lint
from cfnlint.decode import cfn_yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
YAML_SNIPPET = os.path.join(REPO, "examples", "dualprobe-sidecar.cfn.yml")
JSON_SNIPPET = os.path.join(REPO, "examples", "dualprobe-sidecar.task-definition.json")
SERVICE = os.path.join(REPO, "cloudformation", "service.yml")

# CloudFormation names (the JSON uses the same with a lower-case first letter).
DRIFT_FIELDS = ("Essential", "RestartPolicy", "User", "ReadonlyRootFilesystem", "LinuxParameters",
                "PortMappings", "HealthCheck", "MountPoints")
# The JSON's placeholders (examples/README.md tells users to replace them) and sample values.
PLACEHOLDERS = {"ACCOUNT_ID": "123456789012", "REGION": "eu-west-1", "VPC_ID": "vpc-0123456789abcdef0",
                "LOG_GROUP": "/ecs/my-service"}
ECR_IMAGE = re.compile(r"^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com/dualprobe:[\w.-]+$")

errors: list[str] = []


def err(msg: str) -> None:
    errors.append(msg)


def plain(node):
    """cfn-lint's decoded nodes as plain dicts/lists/strs (for comparison and JSON)."""
    return json.loads(json.dumps(node))


def true_branch(node):
    """Fn::If resolved to its first branch (service.yml with ECS Exec on), recursively."""
    if isinstance(node, dict):
        if set(node) == {"Fn::If"}:
            return true_branch(node["Fn::If"][1])
        return {k: true_branch(v) for k, v in node.items()}
    if isinstance(node, list):
        return [true_branch(v) for v in node]
    return node


def camel(node, opaque=("options",)):
    """CloudFormation property names -> ECS API names (first letter lower-cased); the
    keys of `options` (log driver options) are data, not property names."""
    if isinstance(node, dict):
        return {k[:1].lower() + k[1:]: (v if k[:1].lower() + k[1:] in opaque else camel(v))
                for k, v in node.items()}
    if isinstance(node, list):
        return [camel(v) for v in node]
    return node


def service_parts() -> tuple[dict, list, dict]:
    svc = plain(cfn_yaml.load(SERVICE))
    props = svc["Resources"]["TaskDefinition"]["Properties"]
    dp = next(c for c in props["ContainerDefinitions"] if isinstance(c, dict) and c.get("Name") == "dualprobe")
    policy = None
    for p in svc["Resources"]["TaskRole"]["Properties"]["Policies"]:
        p = true_branch(p)
        if isinstance(p, dict) and p.get("PolicyName") == "dualprobe-probes":
            policy = p["PolicyDocument"]
    return true_branch(dp), true_branch(props.get("Volumes") or []), policy


# ------------------------------------------------------------------ 1. cfn-lint
def minimal_template(snip: dict, json_policy: dict) -> dict:
    """The smallest real task definition the snippet can be pasted into."""
    assume = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                      "Principal": {"Service": "ecs-tasks.amazonaws.com"}}]}
    app = {"Name": "app", "Image": {"Ref": "AppImageUri"}, "Essential": True,
           "PortMappings": [{"ContainerPort": 80, "Protocol": "tcp"}]}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": "examples/dualprobe-sidecar.cfn.yml in a minimal task definition (CI only)",
        "Parameters": {
            "AppImageUri": {"Type": "String"},
            "DualprobeImageUri": {"Type": "String"},
            "VpcId": {"Type": "AWS::EC2::VPC::Id"},
        },
        "Resources": {
            "LogGroup": {"Type": "AWS::Logs::LogGroup", "DeletionPolicy": "Delete",
                         "UpdateReplacePolicy": "Delete", "Properties": {"RetentionInDays": 14}},
            "ExecutionRole": {"Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": assume,
                "ManagedPolicyArns": [{"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/"
                                                  "AmazonECSTaskExecutionRolePolicy"}]}},
            "TaskRole": {"Type": "AWS::IAM::Role", "Properties": {
                "AssumeRolePolicyDocument": assume, "Policies": snip["TaskRolePolicies"]}},
            "JsonExamplePolicy": {"Type": "AWS::IAM::Policy", "Properties": {
                "PolicyName": "dualprobe-probes-json", "PolicyDocument": json_policy,
                "Roles": [{"Ref": "TaskRole"}]}},
            "TaskDefinition": {"Type": "AWS::ECS::TaskDefinition", "Properties": {
                "RequiresCompatibilities": ["FARGATE"], "NetworkMode": "awsvpc", "Cpu": "512", "Memory": "1024",
                "RuntimePlatform": {"OperatingSystemFamily": "LINUX", "CpuArchitecture": "X86_64"},
                "ExecutionRoleArn": {"Fn::GetAtt": ["ExecutionRole", "Arn"]},
                "TaskRoleArn": {"Fn::GetAtt": ["TaskRole", "Arn"]},
                "ContainerDefinitions": [app] + snip["ContainerDefinitions"],
                "Volumes": snip["Volumes"]}},
        },
    }


def check_cfn_lint(snip: dict, json_policy: dict) -> None:
    text = json.dumps(minimal_template(snip, json_policy), indent=1)
    for m in lint(text, regions=["us-east-1"]):
        err(f"{os.path.relpath(YAML_SNIPPET, REPO)} in a minimal template: cfn-lint {m.rule.id} "
            f"at {'/'.join(str(p) for p in m.path)}: {m.message}")


# ------------------------------------------------------------------ 2. ECS API shape
# Limits RegisterTaskDefinition enforces that neither the botocore shape nor cfn-lint
# checks (the botocore ecs model's documentation of HealthCheck, ContainerRestartPolicy).
RANGES = (("healthCheck", "interval", 5, 300), ("healthCheck", "timeout", 2, 60),
          ("healthCheck", "retries", 1, 10), ("healthCheck", "startPeriod", 0, 300),
          ("restartPolicy", "restartAttemptPeriod", 60, 1800))


def check_ecs_rules(where: str, c: dict) -> None:
    for parent, key, lo, hi in RANGES:
        v = (c.get(parent) or {}).get(key)
        if v is not None and not (isinstance(v, int) and lo <= v <= hi):
            err(f"{where}: container {c.get('name')}: {parent}.{key} {v!r} outside {lo}..{hi}")
    mem, res = c.get("memory"), c.get("memoryReservation")
    if isinstance(mem, int) and isinstance(res, int) and res > mem:
        err(f"{where}: container {c.get('name')}: memoryReservation {res} > memory {mem}")


def check_api_shape(doc: dict) -> None:
    import botocore.session
    from botocore.validate import ParamValidator

    where = os.path.relpath(JSON_SNIPPET, REPO)
    shape = botocore.session.get_session().get_service_model("ecs").operation_model("RegisterTaskDefinition").input_shape
    params = {"family": "dualprobe-example", "networkMode": "awsvpc", "requiresCompatibilities": ["FARGATE"],
              "cpu": "512", "memory": "1024",
              "containerDefinitions": doc["containerDefinitions"], "volumes": doc["volumes"]}
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        err(f"{where}: not a valid RegisterTaskDefinition request (botocore ecs model):\n{report.generate_report()}")
    volumes = {v.get("name") for v in doc["volumes"]}
    for c in doc["containerDefinitions"]:
        check_ecs_rules(where, c)
        for mp in c.get("mountPoints") or []:
            if mp.get("sourceVolume") not in volumes:
                err(f"{where}: container {c.get('name')}: mount point volume {mp.get('sourceVolume')!r} is not in volumes")
        image = c.get("image", "")
        for k, v in PLACEHOLDERS.items():
            image = image.replace(k, v)
        if not ECR_IMAGE.match(image):
            err(f"{where}: image {c.get('image')!r} is not ACCOUNT_ID.dkr.ecr.REGION.amazonaws.com/dualprobe:TAG")


# ------------------------------------------------------------------ 3. drift
def check_drift(snip: dict, doc: dict) -> None:
    dp, volumes, policy = service_parts()
    ycs = [c for c in snip["ContainerDefinitions"] if c.get("Name") == "dualprobe"]
    jcs = [c for c in doc["containerDefinitions"] if c.get("name") == "dualprobe"]
    if len(ycs) != 1 or len(jcs) != 1:
        err("examples: each snippet needs exactly one container named dualprobe")
        return
    y, j = ycs[0], jcs[0]
    yname, jname = os.path.relpath(YAML_SNIPPET, REPO), os.path.relpath(JSON_SNIPPET, REPO)
    check_ecs_rules(yname, camel(y))
    for f in DRIFT_FIELDS:
        want = dp.get(f)
        if y.get(f) != want:
            err(f"{yname}: {f} is {y.get(f)!r}, cloudformation/service.yml has {want!r}")
        jf = f[:1].lower() + f[1:]
        if j.get(jf) != camel(want):
            err(f"{jname}: {jf} is {j.get(jf)!r}, cloudformation/service.yml has {camel(want)!r}")
    if y.get("Image") != dp.get("Image"):
        err(f"{yname}: Image is {y.get('Image')!r}, cloudformation/service.yml has {dp.get('Image')!r}")
    want_env = [e["Name"] for e in dp.get("Environment") or []]
    if [e["Name"] for e in y.get("Environment") or []] != want_env:
        err(f"{yname}: environment names differ from cloudformation/service.yml's {want_env}")
    if [e["name"] for e in j.get("environment") or []] != want_env:
        err(f"{jname}: environment names differ from cloudformation/service.yml's {want_env}")
    want_opts = {k: v for k, v in ((dp.get("LogConfiguration") or {}).get("Options") or {}).items()
                 if k in ("mode", "max-buffer-size", "awslogs-stream-prefix")}
    for name, opts in ((yname, (y.get("LogConfiguration") or {}).get("Options") or {}),
                       (jname, (j.get("logConfiguration") or {}).get("options") or {})):
        got = {k: opts.get(k) for k in want_opts}
        if got != want_opts:
            err(f"{name}: log options {got} differ from cloudformation/service.yml's {want_opts}")
    if snip["Volumes"] != volumes:
        err(f"{yname}: Volumes {snip['Volumes']} differ from cloudformation/service.yml's {volumes}")
    if doc["volumes"] != camel(volumes):
        err(f"{jname}: volumes {doc['volumes']} differ from cloudformation/service.yml's {camel(volumes)}")
    ypol = [p["PolicyDocument"] for p in snip["TaskRolePolicies"] if p.get("PolicyName") == "dualprobe-probes"]
    if ypol != [policy]:
        err(f"{yname}: TaskRolePolicies dualprobe-probes differs from cloudformation/service.yml's")
    if doc["taskRolePolicy"] != policy:
        err(f"{jname}: taskRolePolicy differs from cloudformation/service.yml's dualprobe-probes")


# ------------------------------------------------------------------ 4. check-config
def check_configs(snip: dict, doc: dict, dualprobe: str) -> None:
    yenv = {e["Name"]: e["Value"] for e in snip["ContainerDefinitions"][0].get("Environment") or []}
    sub = yenv.get("DUALPROBE_CONFIG", {})
    sub = sub.get("Fn::Sub") if isinstance(sub, dict) else sub
    yaml_cfg = re.sub(r"\$\{AWS::Region\}", PLACEHOLDERS["REGION"], sub or "")
    if "${" in yaml_cfg:
        err(f"{os.path.relpath(YAML_SNIPPET, REPO)}: DUALPROBE_CONFIG has a variable other than AWS::Region")
    jenv = {e["name"]: e["value"] for e in doc["containerDefinitions"][0].get("environment") or []}
    json_cfg = jenv.get("DUALPROBE_CONFIG", "")
    for k, v in PLACEHOLDERS.items():
        json_cfg = json_cfg.replace(k, v)
    env = dict(os.environ, DUALPROBE_VPC_ID=PLACEHOLDERS["VPC_ID"])
    for where, text in ((YAML_SNIPPET, yaml_cfg), (JSON_SNIPPET, json_cfg)):
        with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as f:
            f.write(text)
        try:
            r = subprocess.run([dualprobe, "check-config", f.name], capture_output=True, text=True,
                               timeout=60, env=env)
            if r.returncode != 0:
                err(f"{os.path.relpath(where, REPO)}: dualprobe check-config rejected DUALPROBE_CONFIG:\n"
                    f"{r.stdout}{r.stderr}")
        finally:
            os.unlink(f.name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dualprobe", default=os.environ.get("DUALPROBE_BIN"),
                    help="dualprobe binary for `check-config` of the snippets' DUALPROBE_CONFIG")
    args = ap.parse_args()
    snip = plain(cfn_yaml.load(YAML_SNIPPET))
    try:
        with open(JSON_SNIPPET, encoding="utf-8") as f:
            doc = json.load(f)
    except ValueError as e:
        print(f"error: {os.path.relpath(JSON_SNIPPET, REPO)}: not JSON: {e}", file=sys.stderr)
        return 1
    for key in ("containerDefinitions", "volumes", "taskRolePolicy"):
        if key not in doc:
            err(f"{os.path.relpath(JSON_SNIPPET, REPO)}: top-level key {key!r} missing")
    for key in ("ContainerDefinitions", "Volumes", "TaskRolePolicies"):
        if key not in snip:
            err(f"{os.path.relpath(YAML_SNIPPET, REPO)}: top-level key {key!r} missing")
    if not errors:
        check_cfn_lint(copy.deepcopy(snip), doc["taskRolePolicy"])
        check_api_shape(doc)
        check_drift(snip, doc)
        if args.dualprobe:
            check_configs(snip, doc, args.dualprobe)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
