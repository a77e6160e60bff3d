#!/usr/bin/env python3
"""Renders one container of a CloudFormation task definition into the `podman run` that runs it
the way ECS/Fargate does, for scripts/check-image.sh.

    task_container.py TEMPLATE CONTAINER OUTDIR [--param NAME=VALUE ...]

Resolves the template's intrinsic functions (!Ref, !Sub, !If, !GetAtt, !Join, !Select, !Equals,
!Not, !And, !Or, AWS::NoValue) with the parameters' defaults, sample values for parameters
without one and placeholder values for resource attributes. Writes to OUTDIR:
  run.args      podman run options, NUL-separated, without --name/--network (the script's own)
  command.args  the container's Command, NUL-separated (after the image)
  facts.json    what the checks compare against: user, ports, health check, stop timeout,
                volumes (name, container path, read-only), init, read-only root, environment
Every container-definition field is either mapped to a podman option or listed in IGNORED with
the reason; any other field fails, so a field added to the template cannot silently go untested.
"""
import json
import os
import re
import sys

import yaml

# Placeholders for the values CloudFormation only knows once it deploys.
SAMPLE_PARAMS = {
    "VpcId": "vpc-0123456789abcdef0",
    "ClusterName": "dualprobe-check",
    "LoadBalancerDNSName": "dualprobe-check-alb-1234567890.us-east-1.elb.amazonaws.com",
}
SAMPLE_GETATT: dict = {}
PSEUDO = {
    "AWS::Region": "us-east-1",
    "AWS::AccountId": "123456789012",
    "AWS::Partition": "aws",
    "AWS::StackName": "dualprobe-check",
    "AWS::URLSuffix": "amazonaws.com",
}
NO_VALUE = object()

# ECS defaults for what the container definition leaves out (ECS developer guide, "Task
# definition parameters"): Fargate's stop timeout, and the health check's timing.
DEFAULT_STOP_TIMEOUT = 30
HEALTH_DEFAULTS = {"Interval": 30, "Timeout": 5, "Retries": 3, "StartPeriod": 0}

# Fields with no local equivalent, and why the test can leave them out.
IGNORED = {
    "Name": "the script names the container itself",
    "Image": "replaced by the image under test",
    "Essential": "task-level behaviour: whether the task stops with this container",
    "LogConfiguration": "awslogs ships stdout; the test reads the same stdout with podman logs",
    "RestartPolicy": "the ECS agent restarts the container; the test stops it on purpose",
    "PortMappings": "awsvpc publishes nothing: the port is checked inside the task's namespace",
}


class Tag:
    def __init__(self, name, value):
        self.name, self.value = name, value


class Loader(yaml.SafeLoader):
    pass


def _construct(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return Tag(suffix, value)


Loader.add_multi_constructor("!", _construct)


class Fail(Exception):
    pass


class Resolver:
    def __init__(self, template, params):
        self.t = template
        self.params = {}
        for name, spec in (template.get("Parameters") or {}).items():
            if name in params:
                self.params[name] = params[name]
            elif "Default" in spec:
                self.params[name] = str(spec["Default"])
            else:
                self.params[name] = SAMPLE_PARAMS.get(name, f"sample-{name.lower()}")
        unknown = set(params) - set(self.params)
        if unknown:
            raise Fail(f"--param {sorted(unknown)}: no such parameter in the template")
        self.conditions = {}

    def condition(self, name):
        if name not in self.conditions:
            spec = (self.t.get("Conditions") or {}).get(name)
            if spec is None:
                raise Fail(f"condition {name!r} is not defined in Conditions")
            self.conditions[name] = bool(self.value(spec))
        return self.conditions[name]

    def ref(self, name):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in PSEUDO:
            return PSEUDO[name]
        if name in self.params:
            return self.params[name]
        if name in (self.t.get("Resources") or {}):
            return f"sample-{name.lower()}"
        raise Fail(f"!Ref {name}: neither a parameter nor a resource")

    def getatt(self, res, attr):
        if res not in (self.t.get("Resources") or {}):
            raise Fail(f"!GetAtt {res}.{attr}: no such resource")
        return SAMPLE_GETATT.get((res, attr), f"sample-{res.lower()}-{attr.lower()}")

    def sub(self, arg):
        text, local = (arg, {}) if isinstance(arg, str) else (arg[0], self.value(arg[1]))

        def one(m):
            key = m.group(1)
            if key.startswith("!"):
                return "${" + key[1:] + "}"
            if key in local:
                return str(local[key])
            if "." in key:
                res, attr = key.split(".", 1)
                return self.getatt(res, attr)
            v = self.ref(key)
            if v is NO_VALUE:
                raise Fail(f"!Sub ${{{key}}}: AWS::NoValue inside a string")
            return str(v)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def fn(self, name, arg):
        if name == "Ref":
            return self.ref(arg)
        if name == "Sub":
            return self.sub(arg)
        if name == "If":
            cond, yes, no = arg
            return self.value(yes if self.condition(cond) else no)
        if name == "Equals":
            a, b = (self.value(x) for x in arg)
            return str(a) == str(b)
        if name == "Not":
            return not self.value(arg[0])
        if name == "And":
            return all(self.value(x) for x in arg)
        if name == "Or":
            return any(self.value(x) for x in arg)
        if name == "Condition":
            return self.condition(arg)
        if name == "GetAtt":
            res, attr = arg.split(".", 1) if isinstance(arg, str) else arg
            return self.getatt(res, attr)
        if name == "Join":
            sep, items = arg
            return sep.join(str(x) for x in self.value(items))
        if name == "Select":
            return self.value(arg[1])[int(self.value(arg[0]))]
        raise Fail(f"intrinsic function {name} is not supported by {os.path.basename(__file__)}")

    def value(self, v):
        if isinstance(v, Tag):
            return self.fn(v.name, v.value)
        if isinstance(v, dict):
            if len(v) == 1:
                (k, arg), = v.items()
                if k.startswith("Fn::") or k == "Ref":
                    return self.fn(k[4:] if k.startswith("Fn::") else k, arg)
            out = {}
            for k, x in v.items():
                r = self.value(x)
                if r is not NO_VALUE:
                    out[k] = r
            return out
        if isinstance(v, list):
            return [r for r in (self.value(x) for x in v) if r is not NO_VALUE]
        return v


def task_definition(template):
    found = [(n, r) for n, r in (template.get("Resources") or {}).items()
             if r.get("Type") == "AWS::ECS::TaskDefinition"]
    if len(found) != 1:
        raise Fail(f"expected one AWS::ECS::TaskDefinition, found {len(found)}")
    return found[0]


def health_cmd(hc):
    cmd = hc.get("Command") or []
    if cmd and cmd[0] == "CMD":
        return json.dumps(cmd[1:])
    if cmd and cmd[0] == "CMD-SHELL":
        return " ".join(cmd[1:])
    raise Fail(f"HealthCheck.Command {cmd!r}: must start with CMD or CMD-SHELL")


def render(template_path, container, params):
    with open(template_path) as f:
        template = yaml.load(f, Loader=Loader)
    r = Resolver(template, params)
    _, td = task_definition(template)
    props = r.value(td.get("Properties", {}))
    defs = [c for c in props.get("ContainerDefinitions", []) if c.get("Name") == container]
    if len(defs) != 1:
        raise Fail(f"{template_path}: no single container named {container!r} in the task definition")
    c = defs[0]
    task_volumes = {v["Name"]: v for v in props.get("Volumes", [])}

    args, facts = [], {"name": container, "environment": {}, "volumes": [], "ports": []}
    for key, val in c.items():
        if key in IGNORED:
            if key == "PortMappings":
                facts["ports"] = [int(p["ContainerPort"]) for p in val]
            continue
        if key == "Cpu":
            args.append(f"--cpu-shares={int(val)}")
        elif key == "Memory":
            args.append(f"--memory={int(val)}m")
        elif key == "MemoryReservation":
            args.append(f"--memory-reservation={int(val)}m")
        elif key == "User":
            args.append(f"--user={val}")
            facts["user"] = str(val)
        elif key == "ReadonlyRootFilesystem":
            if val is True or str(val).lower() == "true":
                # ECS mounts nothing writable of its own; podman would add tmpfs on /tmp, /run.
                args += ["--read-only", "--read-only-tmpfs=false"]
                facts["read_only"] = True
        elif key == "LinuxParameters":
            for lk, lv in val.items():
                if lk == "Capabilities":
                    args += [f"--cap-drop={x.lower()}" for x in lv.get("Drop", [])]
                    args += [f"--cap-add={x.lower()}" for x in lv.get("Add", [])]
                    facts["cap_drop"] = [x.upper() for x in lv.get("Drop", [])]
                elif lk == "InitProcessEnabled":
                    facts["init"] = lv is True or str(lv).lower() == "true"
                    # Docker's --init (what ECS sets) runs tini as PID 1; Debian ships it static.
                    if facts["init"]:
                        args += ["--init", "--init-path=/usr/bin/tini-static"]
                else:
                    raise Fail(f"LinuxParameters.{lk}: not mapped to podman in {__file__}")
        elif key == "Command":
            facts["command"] = [str(x) for x in val]
        elif key == "EntryPoint":
            args.append("--entrypoint=" + json.dumps([str(x) for x in val]))
        elif key == "Environment":
            for e in val:
                args.append(f"--env={e['Name']}={e['Value']}")
                facts["environment"][e["Name"]] = e["Value"]
        elif key == "HealthCheck":
            h = {**HEALTH_DEFAULTS, **val}
            args += [f"--health-cmd={health_cmd(h)}", f"--health-interval={h['Interval']}s",
                     f"--health-timeout={h['Timeout']}s", f"--health-retries={h['Retries']}"]
            if int(h["StartPeriod"]):
                args.append(f"--health-start-period={h['StartPeriod']}s")
            facts["health"] = {"command": h["Command"], "interval": int(h["Interval"]),
                               "timeout": int(h["Timeout"]), "retries": int(h["Retries"]),
                               "start_period": int(h["StartPeriod"])}
        elif key == "StopTimeout":
            facts["stop_timeout"] = int(val)
        elif key == "MountPoints":
            for m in val:
                v = task_volumes.get(m["SourceVolume"])
                if v is None:
                    raise Fail(f"MountPoints: volume {m['SourceVolume']!r} is not in the task's Volumes")
                if set(v) - {"Name"}:
                    raise Fail(f"volume {v['Name']!r}: only Fargate task storage (a Name alone) is mapped")
                ro = m.get("ReadOnly") is True or str(m.get("ReadOnly")).lower() == "true"
                facts["volumes"].append({"name": v["Name"], "path": m["ContainerPath"], "read_only": ro})
        elif key == "Ulimits":
            args += [f"--ulimit={u['Name']}={u['SoftLimit']}:{u['HardLimit']}" for u in val]
            facts["ulimits"] = True
        elif key == "SystemControls":
            # Namespaced sysctls (net.*), set in the container's own network namespace as
            # Fargate does for awsvpc tasks: net.ipv4.ping_group_range for the icmp check.
            args += [f"--sysctl={c['Namespace']}={c['Value']}" for c in val]
            facts["sysctls"] = {c["Namespace"]: c["Value"] for c in val}
        else:
            raise Fail(f"container field {key}: not mapped to podman in {__file__}; map it or "
                       "list it in IGNORED with the reason")
    facts.setdefault("stop_timeout", DEFAULT_STOP_TIMEOUT)
    facts.setdefault("read_only", False)
    facts.setdefault("init", False)
    facts.setdefault("cap_drop", [])
    args.append(f"--stop-timeout={facts['stop_timeout']}")
    return args, facts


def main(argv):
    if len(argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    template, container, outdir = argv[1:4]
    params = {}
    rest = argv[4:]
    while rest:
        if rest[0] != "--param" or len(rest) < 2 or "=" not in rest[1]:
            raise Fail(f"bad arguments {rest!r}: expected --param NAME=VALUE")
        k, v = rest[1].split("=", 1)
        params[k] = v
        rest = rest[2:]
    args, facts = render(template, container, params)
    with open(os.path.join(outdir, "run.args"), "w") as f:
        f.write("".join(a + "\0" for a in args))
    with open(os.path.join(outdir, "command.args"), "w") as f:
        f.write("".join(a + "\0" for a in facts.get("command", [])))
    with open(os.path.join(outdir, "facts.json"), "w") as f:
        json.dump(facts, f, indent=2)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv))
    except (Fail, OSError, yaml.YAMLError, KeyError, TypeError, ValueError) as e:
        print(f"task_container.py: {sys.argv[1] if len(sys.argv) > 1 else ''}: {e}", file=sys.stderr)
        sys.exit(1)
