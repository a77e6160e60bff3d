#!/usr/bin/env python3
"""Runs scripts/deploy.sh --dry-run and checks the commands it prints (no AWS call).

aws, docker, sam, dig, curl and session-manager-plugin are replaced on PATH by
tripwires that record any call and fail: a dry run must call none of them. The
printed commands are then held to what they drive:
- the order of the steps, the ECR login pipeline, the image URIs and the build
  platform (the task definition's X86_64);
- `sam deploy`: the template exists, and every --parameter-overrides key is a
  parameter of cloudformation/parent.yml whose AllowedPattern / AllowedValues /
  MaxLength the value satisfies, and every parameter without a Default is given;
- the preflight call uses only flags scripts/preflight.sh accepts;
- ECS Exec targets the dualprobe container with a `/dualprobe probe` command whose
  flags the binary's `probe --help` lists (with --dualprobe BIN or $DUALPROBE_BIN);
- teardown deletes the stack and the repositories;
- --network-mode ipv6only: NetworkMode=ipv6only reaches sam deploy and preflight, the images
  are pushed to the registry's usual name but the stack pulls them by ECR's dual-stack name
  (ACCOUNT.dkr-ecr.REGION.on.aws, what IPv6-only tasks need), and the in-task probes are
  IPv6-only, including an IPv4-only name (NAT64);
- bad arguments are refused with exit status 2 and a message.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile

from cfnlint.decode import cfn_yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(REPO, "scripts", "deploy.sh")
PREFLIGHT = os.path.join(REPO, "scripts", "preflight.sh")
ACCOUNT, REGION, TAG, STACK = "123456789012", "eu-west-1", "1.2.3", "ci-stack"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"
DUALSTACK_REGISTRY = f"{ACCOUNT}.dkr-ecr.{REGION}.on.aws"
TOOLS = ("aws", "docker", "sam", "dig", "curl", "session-manager-plugin")

errors: list[str] = []


def err(msg: str) -> None:
    errors.append(msg)


def commands(out: str) -> list[list[str]]:
    """The printed commands as argv lists; `VAR=$(cmd)` lines give cmd, pipelines stay whole."""
    cmds = []
    for line in out.splitlines():
        if not line.startswith("+ ") or line == "+ (if missing)":
            continue
        text = line[2:]
        m = re.match(r"^[A-Za-z_]+=\$\((.*)\)$", text)
        if m:
            text = m.group(1)
        if " | " in text:
            cmds.append(["|", text])
            continue
        try:
            cmds.append(shlex.split(text))
        except ValueError as e:
            err(f"deploy.sh printed a command the shell cannot parse ({e}): {line}")
    return cmds


def run_deploy(stubs: str, trip: str, args: list[str], expect_rc: int = 0) -> tuple[str, list[list[str]]]:
    env = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}", TRIPWIRE=trip)
    for k in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        env.pop(k, None)
    r = subprocess.run(["bash", DEPLOY, *args], capture_output=True, text=True, env=env, timeout=60)
    if r.returncode != expect_rc:
        err(f"deploy.sh {' '.join(args)}: exit {r.returncode}, expected {expect_rc}\n{r.stdout}{r.stderr}")
    if expect_rc == 2 and "deploy: " not in r.stderr:
        err(f"deploy.sh {' '.join(args)}: refused without a 'deploy: ...' message")
    return r.stdout + r.stderr, commands(r.stdout)


def find(cmds: list[list[str]], *prefix: str) -> list[list[str]]:
    return [c for c in cmds if c[: len(prefix)] == list(prefix)]


def flag(cmd: list[str], name: str) -> list[str]:
    """The values after `name`, up to the next --flag."""
    if name not in cmd:
        return []
    vals = []
    for a in cmd[cmd.index(name) + 1:]:
        if a.startswith("--"):
            break
        vals.append(a)
    return vals


def check_order(cmds: list[list[str]], steps: list[tuple[str, ...]], scenario: str) -> None:
    i = 0
    for c in cmds:
        if i < len(steps) and c[: len(steps[i])] == list(steps[i]):
            i += 1
    if i < len(steps):
        err(f"{scenario}: step {' '.join(steps[i])!r} missing or out of order")


def check_sam_deploy(cmd: list[str], scenario: str) -> dict[str, str]:
    parent = cfn_yaml.load(os.path.join(REPO, "cloudformation", "parent.yml"))
    declared = parent.get("Parameters") or {}
    tpl = flag(cmd, "--template-file")
    if not tpl or not os.path.exists(os.path.join(REPO, tpl[0])):
        err(f"{scenario}: sam deploy --template-file {tpl} does not exist (relative to the repository)")
    caps = flag(cmd, "--capabilities")
    if "CAPABILITY_IAM" not in caps:
        err(f"{scenario}: sam deploy without CAPABILITY_IAM (the stacks create IAM roles)")
    if flag(cmd, "--stack-name") != [STACK] or flag(cmd, "--region") != [REGION]:
        err(f"{scenario}: sam deploy --stack-name/--region are not {STACK}/{REGION}")
    params = {}
    for kv in flag(cmd, "--parameter-overrides"):
        k, _, v = kv.partition("=")
        params[k] = v
        spec = declared.get(k)
        if spec is None:
            err(f"{scenario}: sam deploy passes {k}, which parent.yml does not declare")
            continue
        if "AllowedPattern" in spec and not re.fullmatch(str(spec["AllowedPattern"]), v):
            err(f"{scenario}: {k}={v!r} does not match parent.yml's AllowedPattern {spec['AllowedPattern']}")
        if "AllowedValues" in spec and v not in [str(x) for x in spec["AllowedValues"]]:
            err(f"{scenario}: {k}={v!r} is not one of parent.yml's AllowedValues")
        if "MaxLength" in spec and len(v) > int(spec["MaxLength"]):
            err(f"{scenario}: {k}={v!r} is longer than parent.yml's MaxLength")
    for k, spec in declared.items():
        if "Default" not in spec and k not in params:
            err(f"{scenario}: sam deploy does not pass {k}, which parent.yml requires")
    return params


def check_preflight_flags(cmd: list[str], scenario: str) -> None:
    with open(PREFLIGHT, encoding="utf-8") as f:
        accepted = set(re.findall(r"^\s*(--[a-z-]+)\)", f.read(), re.M))
    for a in cmd[1:]:
        if a.startswith("--") and a not in accepted:
            err(f"{scenario}: deploy.sh calls preflight.sh with {a}, which it does not accept")


def check_exec(cmds: list[list[str]], dualprobe: str | None, scenario: str) -> list[list[str]]:
    """The `/dualprobe probe` commands run through ECS Exec (each checked against probe --help)."""
    execs = find(cmds, "aws", "ecs", "execute-command")
    probes = []
    if not execs:
        err(f"{scenario}: no ECS Exec into dualprobe")
    help_text = ""
    if dualprobe:
        help_text = subprocess.run([dualprobe, "probe", "--help"], capture_output=True, text=True, timeout=30).stdout
    for c in execs:
        if flag(c, "--container") != ["dualprobe"] or "--interactive" not in c:
            err(f"{scenario}: execute-command not --interactive into --container dualprobe: {c}")
        inner = shlex.split((flag(c, "--command") or [""])[0])
        probes.append(inner)
        if inner[:2] != ["/dualprobe", "probe"]:
            err(f"{scenario}: ECS Exec command is not `/dualprobe probe ...`: {inner}")
        for a in inner[2:]:
            flag_re = r"(?<![\w-])" + re.escape(a.split("=")[0]) + r"(?![\w-])"
            if a.startswith("--") and help_text and not re.search(flag_re, help_text):
                err(f"{scenario}: `dualprobe probe` has no flag {a} (probe --help)")
    return probes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dualprobe", default=os.environ.get("DUALPROBE_BIN"))
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        stubs, trip = os.path.join(tmp, "bin"), os.path.join(tmp, "called")
        os.mkdir(stubs)
        for t in TOOLS:
            p = os.path.join(stubs, t)
            with open(p, "w") as f:
                f.write('#!/bin/sh\necho "$0 $*" >>"$TRIPWIRE"\nexit 97\n')
            os.chmod(p, 0o755)
        app = os.path.join(tmp, "app")
        os.mkdir(app)
        open(os.path.join(app, "Dockerfile"), "w").close()
        base = ["--dry-run", "--region", REGION, "--image-tag", TAG, "--stack-name", STACK]

        # 1. defaults: nginx through the cache, CloudWatch, ECS Exec; every step.
        s = "default"
        _, cmds = run_deploy(stubs, trip, base + ["--account-id", ACCOUNT, "--all", "--teardown"])
        check_order(cmds, [("docker", "build"), ("aws", "ecr", "describe-repositories"), ("|",),
                           ("docker", "push"), ("sam", "deploy"), ("aws", "cloudformation", "describe-stacks"),
                           ("aws", "ecs", "wait", "services-stable"), ("dig", "+short", "A"),
                           ("dig", "+short", "AAAA"), ("curl", "-4"), ("curl", "-6"), ("aws", "ecs", "list-tasks"),
                           ("aws", "ecs", "execute-command"), ("sam", "delete"), ("aws", "ecr", "delete-repository")], s)
        build = find(cmds, "docker", "build")
        want_uri = f"{REGISTRY}/dualprobe:{TAG}"
        if not build or flag(build[0], "--platform") != ["linux/amd64"] or flag(build[0], "-t")[:1] != [want_uri] \
                or not os.path.exists(os.path.join(build[0][-1], "Dockerfile")):
            err(f"{s}: docker build is not --platform linux/amd64 -t {want_uri} <dir with the Dockerfile>: {build}")
        login = f"aws ecr get-login-password --region {REGION} | docker login --username AWS --password-stdin {REGISTRY}"
        if ["|", login] not in cmds:
            err(f"{s}: no ECR login `{login}`")
        if find(cmds, "docker", "push") != [["docker", "push", want_uri]]:
            err(f"{s}: docker push is not exactly {want_uri}")
        pre = [c for c in cmds if c and c[0].endswith("scripts/preflight.sh")]
        if not pre or find(cmds, "sam", "deploy") and cmds.index(pre[0]) > cmds.index(find(cmds, "sam", "deploy")[0]):
            err(f"{s}: preflight.sh does not run before sam deploy")
        else:
            check_preflight_flags(pre[0], s)
        params = check_sam_deploy((find(cmds, "sam", "deploy") or [[]])[0], s)
        if params.get("DualprobeImageUri") != want_uri:
            err(f"{s}: DualprobeImageUri is {params.get('DualprobeImageUri')}, not the pushed {want_uri}")
        if params.get("NetworkMode") != "dualstack":
            err(f"{s}: sam deploy NetworkMode={params.get('NetworkMode')}, expected the default dualstack")
        if not params.get("ImageUri", "").startswith(f"{REGISTRY}/{params.get('EcrPullThroughCachePrefix')}/"):
            err(f"{s}: the default app image is not under the pull through cache prefix: {params.get('ImageUri')}")
        probes = check_exec(cmds, args.dualprobe, s)
        if not probes or flag(probes[0], "--family") != ["both"]:
            err(f"{s}: the first in-task probe (S3) is not over both families: {probes[:1]}")
        if not find(cmds, "sam", "delete", "--stack-name", STACK):
            err(f"{s}: teardown does not sam delete --stack-name {STACK}")
        if not [c for c in find(cmds, "aws", "ecr", "delete-repository") if flag(c, "--repository-name") == ["dualprobe"]]:
            err(f"{s}: teardown does not delete the dualprobe repository")

        # 2. the seed's sample app, Prometheus, no ECS Exec, an existing cache rule.
        s = "sample app"
        _, cmds = run_deploy(stubs, trip, base + ["--account-id", ACCOUNT, "--app-dir", app, "--metrics-export",
                                                  "prometheus", "--ecs-exec", "false", "--no-create-cache-rule",
                                                  "--parameter", "DesiredCount=1", "--all", "--teardown"])
        app_uri = f"{REGISTRY}/sample-app-repo:ipv6-app"
        if not [c for c in find(cmds, "docker", "build") if flag(c, "-t")[:1] == [app_uri] and c[-1] == app]:
            err(f"{s}: no docker build -t {app_uri} {app}")
        if ["docker", "push", app_uri] not in cmds:
            err(f"{s}: the sample app is not pushed")
        params = check_sam_deploy((find(cmds, "sam", "deploy") or [[]])[0], s)
        for k, v in (("ImageUri", app_uri), ("MetricsExport", "prometheus"), ("EnableEcsExec", "false"),
                     ("CreateEcrPullThroughCacheRule", "false"), ("DesiredCount", "1")):
            if params.get(k) != v:
                err(f"{s}: sam deploy {k}={params.get(k)}, expected {v}")
        for path in ("/list-buckets", "/list-ec2"):
            if not [c for c in find(cmds, "curl") if c[-1].endswith(path)]:
                err(f"{s}: verify does not curl the sample app's {path}")
        if find(cmds, "aws", "ecs", "execute-command"):
            err(f"{s}: ECS Exec used with --ecs-exec false")
        if not [c for c in find(cmds, "aws", "ecr", "delete-repository") if "sample-app-repo" in c]:
            err(f"{s}: teardown does not delete sample-app-repo")
        if find(cmds, "aws", "ecr", "describe-repositories", "--region", REGION, "--query"):
            err(f"{s}: teardown deletes the cache's repositories of a rule it did not create")

        # 3. ipv6only: the dual-stack registry for pulls, IPv6-only probes, NAT64.
        s = "ipv6only"
        _, cmds = run_deploy(stubs, trip, base + ["--account-id", ACCOUNT, "--network-mode", "ipv6only",
                                                  "--app-dir", app, "--all"])
        params = check_sam_deploy((find(cmds, "sam", "deploy") or [[]])[0], s)
        if params.get("NetworkMode") != "ipv6only":
            err(f"{s}: sam deploy NetworkMode={params.get('NetworkMode')}, expected ipv6only")
        for k, repo in (("DualprobeImageUri", f"dualprobe:{TAG}"), ("ImageUri", "sample-app-repo:ipv6-app")):
            if params.get(k) != f"{DUALSTACK_REGISTRY}/{repo}":
                err(f"{s}: {k}={params.get(k)}; IPv6-only tasks pull from {DUALSTACK_REGISTRY}/{repo}")
        pushed = [c[-1] for c in find(cmds, "docker", "push")]
        if pushed != [f"{REGISTRY}/dualprobe:{TAG}", f"{REGISTRY}/sample-app-repo:ipv6-app"]:
            err(f"{s}: docker push {pushed}; the images are pushed to {REGISTRY} (the same registry)")
        pre = [c for c in cmds if c and c[0].endswith("scripts/preflight.sh")]
        if not pre or flag(pre[0], "--network-mode") != ["ipv6only"]:
            err(f"{s}: preflight.sh does not get --network-mode ipv6only: {pre}")
        else:
            check_preflight_flags(pre[0], s)
        probes = check_exec(cmds, args.dualprobe, s)
        if any(flag(p, "--family") != ["ipv6"] for p in probes):
            err(f"{s}: an in-task probe is not --family ipv6 (the task has no IPv4): {probes}")
        if not any(p[2:3] and not re.search(r"\.(amazonaws\.com|api\.aws)(:\d+)?$", p[2]) for p in probes):
            err(f"{s}: no in-task probe of an IPv4-only internet name (NAT64): {probes}")
        _, cmds = run_deploy(stubs, trip, base + ["--account-id", ACCOUNT, "--network-mode", "ipv6only", "--deploy"])
        params = check_sam_deploy((find(cmds, "sam", "deploy") or [[]])[0], s + " (nginx)")
        if not params.get("ImageUri", "").startswith(f"{DUALSTACK_REGISTRY}/{params.get('EcrPullThroughCachePrefix')}/"):
            err(f"{s}: the default app image is not pulled through the cache by the dual-stack name: "
                f"{params.get('ImageUri')}")

        # 4. no --account-id: looked up (printed, not called).
        s = "account lookup"
        _, cmds = run_deploy(stubs, trip, base + ["--push"])
        if not find(cmds, "aws", "sts", "get-caller-identity"):
            err(f"{s}: the account is not looked up with sts get-caller-identity")

        # 5. refusals.
        for bad in (["--metrics-export", "bogus", "--deploy"], ["--network-mode", "ipv4only", "--deploy"], [],
                    ["--parameter", "novalue", "--deploy"],
                    ["--account-id", "12", "--deploy"], ["--app-dir", tmp + "/nope", "--build"], ["--bogus", "--build"]):
            run_deploy(stubs, trip, base + bad, expect_rc=2)

        if os.path.exists(trip):
            with open(trip) as f:
                err(f"--dry-run called real tools:\n{f.read()}")
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
