#!/usr/bin/env python3
"""Evaluate every PromQL expression of the dashboards against a live Prometheus.

Extracts the expressions of
  * dashboards/grafana-dualprobe.json  (every panel target's "expr", rows included), and
  * dashboards/alerts.yml              (every recording and alerting rule's "expr"),
substitutes Grafana variables so they are valid PromQL:
  $__rate_interval, $__interval, $__range  -> 1m   (and their _ms / _s forms)
  $var, ${var}, ${var:format}, [[var]]     -> .*   (variables are only used in =~ matchers)
then runs each through GET /api/v1/query on the Prometheus given with --prometheus
(one that already scrapes a running dualprobe) and fails, listing them, when any
expression errors. With --require-series an expression that returns no series fails
too, unless it matches ALLOW_EMPTY below. --strict (implies --require-series) narrows
ALLOW_EMPTY to STRICT_ALLOW_EMPTY, i.e. only absent(): use it against a dualprobe
that has passing and failing families, a TLS target and discovered targets, where
every other expression must return series (scripts/check-dashboards-live.sh).

Standard library only (the rule file is read with a small YAML subset reader that
understands what Prometheus rule files use: plain, quoted and block scalars).

  scripts/check-promql.py --prometheus http://127.0.0.1:9090 [--require-series | --strict] [--allow-empty RE=WHY]
  scripts/check-promql.py --list          # only print the extracted expressions
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DASHBOARD = os.path.join(REPO, "dashboards", "grafana-dualprobe.json")
DEFAULT_RULES = os.path.join(REPO, "dashboards", "alerts.yml")

# Expressions allowed to return no series under --require-series: (regex searched in
# the whitespace-normalised expression, reason). Keep every entry justified.
ALLOW_EMPTY: list[tuple[str, str]] = [
    (r"\babsent\(", "absent() returns nothing while dualprobe is scraped and healthy"),
    (r"==\s*0\b", "violation / failure selections (== 0) are empty while every probe passes"),
    (r"<\s*14\s*\*\s*86400", "certificate-expiry alert is empty while certificates are fresh"),
    (r'result\s*!=\s*"ok"', "failure counters exist only after a check has failed at least once"),
    (r'result\s*!~\s*"ok\|', "failure counters exist only after a check has failed at least once"),
    (r"dualprobe_discovery_", "only present when discovery (cloudformation / vpc_endpoints) is configured"),
    (r"count by \(instance, job\) \(dualprobe_build_info\) > 1",
     "empty while every task has an (instance, job) of its own"),
    (r"dualprobe_happy_eyeballs_",
     "only present once a target with a happy_eyeballs check has raced"),
    (r"dualprobe_tls_cert_expiry_timestamp_seconds",
     "only present once a target with a tls check has completed a TLS handshake"),
    (r'source\s*=~\s*"cloudformation\|vpc_endpoints"',
     "only present when discovery (cloudformation / vpc_endpoints) found targets"),
]

# --strict: what may still be empty when the scraped dualprobe has passing and failing
# checks on both families, a violated expectation, a TLS target with a certificate near
# expiry and discovered (cloudformation) targets.
STRICT_ALLOW_EMPTY: list[tuple[str, str]] = [e for e in ALLOW_EMPTY if e[0] == r"\babsent\("]
assert len(STRICT_ALLOW_EMPTY) == 1, "STRICT_ALLOW_EMPTY must keep the absent() entry"

GRAFANA_BUILTINS = [
    # longest names first so $__interval does not eat $__interval_ms
    ("__rate_interval_ms", "60000"),
    ("__rate_interval", "1m"),
    ("__interval_ms", "60000"),
    ("__interval", "1m"),
    ("__range_ms", "60000"),
    ("__range_s", "60"),
    ("__range", "1m"),
]


@dataclass
class Expr:
    source: str  # where it came from, for the report
    raw: str
    query: str


# --------------------------------------------------------------------------- grafana
def substitute_grafana(expr: str) -> str:
    out = expr
    for name, value in GRAFANA_BUILTINS:
        out = re.sub(r"\$\{" + name + r"(?::[^}]*)?\}", value, out)
        out = re.sub(r"\$" + name + r"(?![A-Za-z0-9_])", value, out)
    out = re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::[^}]*)?\}", ".*", out)
    out = re.sub(r"\[\[[A-Za-z_][A-Za-z0-9_]*(?::[^\]]*)?\]\]", ".*", out)
    out = re.sub(r"\$[A-Za-z_][A-Za-z0-9_]*", ".*", out)
    return out


def grafana_exprs(path: str) -> list[Expr]:
    with open(path, encoding="utf-8") as f:
        dash = json.load(f)
    found: list[Expr] = []

    def walk(panels: list, prefix: str) -> None:
        for p in panels or []:
            title = p.get("title") or f"panel {p.get('id')}"
            for t in p.get("targets") or []:
                expr = t.get("expr")
                if isinstance(expr, str) and expr.strip():
                    src = f"{os.path.basename(path)}: {prefix}{title} [{t.get('refId', '?')}]"
                    found.append(Expr(src, expr, substitute_grafana(expr)))
            # collapsed rows keep their panels inside the row panel
            walk(p.get("panels") or [], f"{prefix}{title} / " if p.get("type") == "row" else prefix)

    walk(dash.get("panels") or [], "")
    return found


# --------------------------------------------------------------------------- rules
def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _unquote(value: str, path: str, lineno: int) -> str:
    if value.startswith("'"):
        if not value.endswith("'") or len(value) < 2:
            raise ValueError(f"{path}:{lineno}: multi-line single-quoted expr is not supported")
        return value[1:-1].replace("''", "'")
    if value.startswith('"'):
        if not value.endswith('"') or len(value) < 2:
            raise ValueError(f"{path}:{lineno}: multi-line double-quoted expr is not supported")
        return json.loads(value)  # YAML double-quoted escapes used in PromQL are JSON's
    return value


def _strip_comment(value: str) -> str:
    # a plain scalar ends at " #"; PromQL itself has no comments inside quotes here
    m = re.search(r"\s#", value)
    return value[: m.start()].rstrip() if m else value.rstrip()


def rule_exprs(path: str) -> list[Expr]:
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    found: list[Expr] = []
    name = "?"
    i = 0
    key_re = re.compile(r"^(\s*)(-\s+)?(alert|record|expr)\s*:\s*(.*)$")
    while i < len(lines):
        m = key_re.match(lines[i])
        if not m:
            i += 1
            continue
        key_col = len(m.group(1)) + len(m.group(2) or "")
        key, value = m.group(3), m.group(4).rstrip()
        lineno = i + 1
        i += 1
        if key in ("alert", "record"):
            name = f"{key} {_unquote(_strip_comment(value), path, lineno)}"
            continue
        if value[:1] in ("|", ">"):
            fold = value.startswith(">")
            block: list[str] = []
            while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > key_col):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            if not block:
                raise ValueError(f"{path}:{lineno}: empty block scalar for expr")
            cut = min(_indent(b) for b in block if b.strip())
            body = [b[cut:] for b in block]
            text = (" " if fold else "\n").join(body)
        else:
            text = _unquote(_strip_comment(value), path, lineno)
            if not value.startswith(("'", '"')):
                # plain scalar continued on more-indented lines
                while i < len(lines) and lines[i].strip() and _indent(lines[i]) > key_col \
                        and not lines[i].lstrip().startswith("#"):
                    text += " " + _strip_comment(lines[i].strip())
                    i += 1
        text = text.strip()
        if not text:
            raise ValueError(f"{path}:{lineno}: empty expr")
        found.append(Expr(f"{os.path.basename(path)}: {name}", text, text))
    return found


# --------------------------------------------------------------------------- query
def query(base: str, expr: str, timeout: float) -> tuple[str | None, list]:
    """Returns (error or None, result list)."""
    url = base.rstrip("/") + "/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            body = resp.read()
    except urllib.error.HTTPError as e:  # 400 bad_data / 422 execution errors carry JSON
        body = e.read()
        try:
            data = json.loads(body)
            return f"HTTP {e.code} {data.get('errorType')}: {data.get('error')}", []
        except ValueError:
            return f"HTTP {e.code}: {body[:200]!r}", []
    except (urllib.error.URLError, OSError) as e:
        raise SystemExit(f"check-promql: cannot reach Prometheus at {base}: {e}")
    try:
        data = json.loads(body)
    except ValueError:
        return f"invalid JSON answer: {body[:200]!r}", []
    if data.get("status") != "success":
        return f"{data.get('errorType')}: {data.get('error')}", []
    result = data.get("data", {})
    rtype, value = result.get("resultType"), result.get("result")
    if rtype in ("vector", "matrix"):
        return None, value or []
    return None, [value]  # scalar / string: never "empty"


def allowed_empty(expr: str, allow: list[tuple[str, str]] | None = None) -> str | None:
    flat = " ".join(expr.split())
    for pattern, reason in ALLOW_EMPTY if allow is None else allow:
        if re.search(pattern, flat):
            return reason
    return None


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prometheus", help="base URL of a Prometheus scraping dualprobe, e.g. http://127.0.0.1:9090")
    ap.add_argument("--dashboard", action="append", help=f"Grafana JSON (repeatable; default {DEFAULT_DASHBOARD})")
    ap.add_argument("--rules", action="append", help=f"Prometheus rule file (repeatable; default {DEFAULT_RULES})")
    ap.add_argument("--require-series", action="store_true",
                    help="an expression returning no series fails, unless allowlisted in ALLOW_EMPTY")
    ap.add_argument("--strict", action="store_true",
                    help="--require-series with ALLOW_EMPTY narrowed to STRICT_ALLOW_EMPTY (only absent())")
    ap.add_argument("--timeout", type=float, default=10.0, help="per-query timeout in seconds")
    ap.add_argument("--missing-metric", action="append", default=[], metavar="NAME",
                    help="the scraped binary predates metric NAME: expressions using it may be empty "
                         "(repeatable; reported on each such line)")
    ap.add_argument("--allow-empty", action="append", default=[], metavar="REGEX=REASON",
                    help="an expression matching REGEX may be empty, for REASON (repeatable; the caller "
                         "left out the scenario that feeds it; reported on each such line)")
    ap.add_argument("--list", action="store_true", help="print the extracted (substituted) expressions and exit")
    args = ap.parse_args(argv)

    exprs: list[Expr] = []
    try:
        for d in args.dashboard or [DEFAULT_DASHBOARD]:
            exprs += grafana_exprs(d)
        for r in args.rules or [DEFAULT_RULES]:
            exprs += rule_exprs(r)
    except (OSError, ValueError) as e:
        print(f"check-promql: {e}", file=sys.stderr)
        return 2
    if not exprs:
        print("check-promql: no expressions found", file=sys.stderr)
        return 2

    if args.list:
        for e in exprs:
            print(f"# {e.source}\n{e.query}\n")
        print(f"{len(exprs)} expressions")
        return 0
    if not args.prometheus:
        ap.error("--prometheus is required (or use --list)")
    allow = ALLOW_EMPTY
    if args.strict:
        args.require_series = True
        allow = STRICT_ALLOW_EMPTY
    try:
        allow = allow + [tuple(a.split("=", 1)) for a in args.allow_empty if re.compile(a.split("=", 1)[0])]
    except re.error as e:
        ap.error(f"--allow-empty: {e}")
    if any(len(a) != 2 for a in allow):
        ap.error("--allow-empty takes REGEX=REASON")

    failures: list[tuple[Expr, str]] = []
    passed = 0
    for e in exprs:
        err, result = query(args.prometheus, e.query, args.timeout)
        if err:
            failures.append((e, err))
            print(f"FAIL   {e.source}: {err}")
            continue
        if not result:
            reason = allowed_empty(e.query, allow)
            old = [m for m in args.missing_metric if re.search(r"\b" + re.escape(m) + r"\b", e.query)]
            if not reason and old:
                reason = f"the scraped dualprobe predates {', '.join(old)}"
            if args.require_series and not reason:
                failures.append((e, "no series returned"))
                print(f"FAIL   {e.source}: no series returned")
                continue
            note = f" (empty: {reason})" if reason else " (empty)"
            print(f"ok     {e.source}{note}")
        else:
            print(f"ok     {e.source} ({len(result)} series)")
        passed += 1

    if failures:
        print("\nFailing expressions:")
        for e, err in failures:
            print(f"- {e.source}\n    error: {err}\n    query: {' '.join(e.query.split())}")
    print(f"{passed} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
