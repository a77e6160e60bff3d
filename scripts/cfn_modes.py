"""A CloudFormation template as deployed with given parameters, for the checks that hold both
NetworkModes (dualstack, ipv6only) of cloudformation/*.yml to what each must build.

Works on cfn-lint's decoding (cfnlint.decode.cfn_yaml: short-form tags become {"Fn::If": ...},
{"Ref": ...}). Only the choices parameters make are resolved: conditions (Fn::Equals, Fn::Not,
Fn::And, Fn::Or, Condition over !Ref of parameters and literals), Fn::If, and AWS::NoValue.
Everything else (!Sub, !GetAtt, !Select, ...) is left as it is, for the caller to render.
"""

from __future__ import annotations

MODES = ("dualstack", "ipv6only")
_NO_VALUE = object()


class ModeView:
    """TEMPLATE with PARAMS (the rest at their defaults)."""

    def __init__(self, template: dict, params: dict[str, str] | None = None):
        self.t = template
        declared = template.get("Parameters") or {}
        unknown = set(params or {}) - set(declared)
        if unknown:
            raise KeyError(f"no such parameter(s): {sorted(unknown)}")
        self.params = {k: str(v["Default"]) for k, v in declared.items() if "Default" in v}
        self.params.update({k: str(v) for k, v in (params or {}).items()})
        self._conditions: dict[str, bool] = {}

    # ------------------------------------------------------------------ conditions
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            spec = (self.t.get("Conditions") or {}).get(name)
            if spec is None:
                raise KeyError(f"condition {name} is not defined")
            self._conditions[name] = self._truth(spec)
        return self._conditions[name]

    def _scalar(self, node) -> str:
        if isinstance(node, dict) and set(node) == {"Ref"}:
            if node["Ref"] not in self.params:
                raise KeyError(f"!Ref {node['Ref']} in a condition: not a parameter with a value")
            return self.params[node["Ref"]]
        if isinstance(node, (str, int, float, bool)):
            return str(node).lower() if isinstance(node, bool) else str(node)
        raise ValueError(f"cannot evaluate {node!r} in a condition")

    def _truth(self, node) -> bool:
        (fn, arg), = node.items()
        if fn == "Fn::Equals":
            return self._scalar(arg[0]) == self._scalar(arg[1])
        if fn == "Fn::Not":
            return not self._truth(arg[0])
        if fn == "Fn::And":
            return all(self._truth(a) for a in arg)
        if fn == "Fn::Or":
            return any(self._truth(a) for a in arg)
        if fn == "Condition":
            return self.condition(arg)
        raise ValueError(f"cannot evaluate {fn} in a condition")

    # ------------------------------------------------------------------ values
    def resolve(self, node):
        """NODE with every Fn::If decided and AWS::NoValue dropped (None if NODE is NoValue)."""
        out = self._resolve(node)
        return None if out is _NO_VALUE else out

    def _resolve(self, node):
        if isinstance(node, dict):
            if set(node) == {"Fn::If"}:
                cond, yes, no = node["Fn::If"]
                return self._resolve(yes if self.condition(cond) else no)
            if node == {"Ref": "AWS::NoValue"}:
                return _NO_VALUE
            out = {}
            for k, v in node.items():
                r = self._resolve(v)
                if r is not _NO_VALUE:
                    out[k] = r
            return out
        if isinstance(node, list):
            return [r for r in (self._resolve(v) for v in node) if r is not _NO_VALUE]
        return node

    def resources(self) -> dict[str, dict]:
        """The resources this deployment creates, their properties resolved."""
        out = {}
        for name, res in (self.t.get("Resources") or {}).items():
            if "Condition" in res and not self.condition(res["Condition"]):
                continue
            out[name] = {"Type": res.get("Type"), "Properties": self.resolve(res.get("Properties") or {})}
        return out

    def outputs(self) -> dict[str, dict]:
        return {k: v for k, v in (self.t.get("Outputs") or {}).items()
                if "Condition" not in v or self.condition(v["Condition"])}


def container(view: ModeView, name: str) -> dict:
    """One container of the template's task definition, resolved."""
    for c in view.resolve(view.t["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"]):
        if c.get("Name") == name:
            return c
    raise KeyError(f"no container {name} in the task definition")
