#!/usr/bin/env bash
# Static checks of the deployment files (no Docker, no AWS, no network):
#   CloudFormation templates, the Dockerfile, Prometheus rules + their unit tests and
#   the Grafana dashboard. One line per check; exits non-zero if any check fails.
# Install the tools first with scripts/install-deploy-tools.sh (as root).
#
# Both NetworkModes (dualstack, ipv6only) are checked: the Python checks resolve the templates
# once per mode. Optional: DUALPROBE_BIN=/path/to/dualprobe also runs `dualprobe check-config`
# on each mode's DUALPROBE_CONFIG rendered from cloudformation/service.yml, and the binary's
# EMF lines (both configs) against the CloudWatch alarms.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
TOOLS_VENV="${TOOLS_VENV:-/opt/dualprobe-deploy-tools}"
LOG_DIR="$(mktemp -d)"
trap 'rm -rf "${LOG_DIR}"' EXIT

# find_tool NAME: $NAME from PATH, else the venv install-deploy-tools.sh creates.
find_tool() {
  if command -v "$1" >/dev/null 2>&1; then
    command -v "$1"
  elif [[ -x "${TOOLS_VENV}/bin/$1" ]]; then
    echo "${TOOLS_VENV}/bin/$1"
  else
    return 1
  fi
}

# A Python that can import cfn-lint (for scripts/check-cfn-embedded.py).
find_cfn_python() {
  local py
  for py in python3 "${TOOLS_VENV}/bin/python"; do
    if command -v "${py}" >/dev/null 2>&1 && "${py}" -c 'import cfnlint, yaml' >/dev/null 2>&1; then
      command -v "${py}"
      return 0
    fi
  done
  return 1
}

passed=0
failed=0
# check NAME CMD...: runs CMD, prints one PASS/FAIL line (output of failures follows).
check() {
  local name="$1"
  shift
  local log="${LOG_DIR}/${name//[^A-Za-z0-9_.-]/_}.log"
  if "$@" >"${log}" 2>&1; then
    printf 'PASS  %s\n' "${name}"
    passed=$((passed + 1))
  else
    printf 'FAIL  %s  (%s)\n' "${name}" "$*"
    sed 's/^/      /' "${log}"
    failed=$((failed + 1))
  fi
}
missing() {
  printf 'FAIL  %s  (%s not found: run scripts/install-deploy-tools.sh)\n' "$1" "$2"
  failed=$((failed + 1))
}

shopt -s nullglob
templates=(cloudformation/*.yml)
shopt -u nullglob

if cfn_lint="$(find_tool cfn-lint)"; then
  if (( ${#templates[@]} == 0 )); then
    missing cfn-lint "cloudformation/*.yml"
  else
    # zero errors and zero warnings: cfn-lint exits non-zero on either.
    check "cfn-lint cloudformation/*.yml" "${cfn_lint}" "${templates[@]}"
  fi
else
  missing "cfn-lint cloudformation/*.yml" cfn-lint
fi

if cfn_python="$(find_cfn_python)"; then
  check "cloudformation nesting + embedded config/dashboard" "${cfn_python}" scripts/check-cfn-embedded.py
  # alerts.yml == the AMP rules, runbook links, alert manager (amtool), alarms vs the config and,
  # with DUALPROBE_BIN, vs the EMF lines the binary writes
  check "shipped alerting (scripts/check-alerting.py)" "${cfn_python}" scripts/check-alerting.py
else
  missing "cloudformation nesting + embedded config/dashboard" "python with cfn-lint"
fi

# examples/ snippets (cfn-lint in a minimal template, botocore's ECS model, no drift from
# service.yml) and scripts/deploy.sh --dry-run's printed commands (no AWS call).
if cfn_python="$(find_cfn_python)"; then
  check "examples/ task-definition snippets (scripts/check-examples.py)" "${cfn_python}" scripts/check-examples.py
  check "deploy.sh --dry-run commands (scripts/check-deploy-dry-run.py)" "${cfn_python}" scripts/check-deploy-dry-run.py
else
  missing "examples/ task-definition snippets" "python with cfn-lint"
  missing "deploy.sh --dry-run commands" "python with cfn-lint"
fi
deploy_scripts=(scripts/deploy.sh scripts/preflight.sh)
# shellcheck disable=SC2016 # the loop runs in the inner shell
check "bash -n ${deploy_scripts[*]}" bash -c 'for f; do bash -n "$f" || exit 1; done' _ "${deploy_scripts[@]}"
if shellcheck="$(find_tool shellcheck)"; then
  check "shellcheck ${deploy_scripts[*]}" "${shellcheck}" "${deploy_scripts[@]}"
else
  missing "shellcheck ${deploy_scripts[*]}" shellcheck
fi
# SAM CLI's own validation (the SAM transform of parent.yml, and its bundled cfn-lint).
if sam="$(find_tool sam)"; then
  for t in "${templates[@]}"; do
    check "sam validate --lint ${t}" env SAM_CLI_TELEMETRY=0 AWS_EC2_METADATA_DISABLED=true \
      "${sam}" validate --lint --template-file "${t}" --region us-east-1
  done
else
  missing "sam validate --lint cloudformation/*.yml" sam
fi

if hadolint="$(find_tool hadolint)"; then
  check "hadolint Dockerfile" "${hadolint}" --failure-threshold style Dockerfile
else
  missing "hadolint Dockerfile" hadolint
fi

if promtool="$(find_tool promtool)"; then
  check "promtool check rules dashboards/alerts.yml" "${promtool}" check rules dashboards/alerts.yml
  check "promtool test rules dashboards/alerts_test.yml dashboards/alerts_stack_test.yml" \
    "${promtool}" test rules dashboards/alerts_test.yml dashboards/alerts_stack_test.yml
else
  missing "promtool check rules dashboards/alerts.yml" promtool
  missing "promtool test rules dashboards/alerts_test.yml dashboards/alerts_stack_test.yml" promtool
fi

check "json dashboards/grafana-dualprobe.json" python3 -m json.tool dashboards/grafana-dualprobe.json
check "promql extraction (scripts/check-promql.py --list)" python3 scripts/check-promql.py --list

echo "${passed} passed, ${failed} failed"
(( failed == 0 ))
