#!/usr/bin/env bash
# Static checks of the deployment files (no Docker, no AWS, no network):
#   CloudFormation templates, the Dockerfile, Prometheus rules + their unit tests and
#   the Grafana dashboard. One line per check; exits non-zero if any check fails.
# Install the tools first with scripts/install-deploy-tools.sh (as root).
#
# Optional: DUALPROBE_BIN=/path/to/dualprobe also runs `dualprobe check-config` on
# the DUALPROBE_CONFIG rendered from cloudformation/service.yml.
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
else
  missing "cloudformation nesting + embedded config/dashboard" "python with cfn-lint"
fi

if hadolint="$(find_tool hadolint)"; then
  check "hadolint Dockerfile" "${hadolint}" --failure-threshold style Dockerfile
else
  missing "hadolint Dockerfile" hadolint
fi

if promtool="$(find_tool promtool)"; then
  check "promtool check rules dashboards/alerts.yml" "${promtool}" check rules dashboards/alerts.yml
  check "promtool test rules dashboards/alerts_test.yml" "${promtool}" test rules dashboards/alerts_test.yml
else
  missing "promtool check rules dashboards/alerts.yml" promtool
  missing "promtool test rules dashboards/alerts_test.yml" promtool
fi

check "json dashboards/grafana-dualprobe.json" python3 -m json.tool dashboards/grafana-dualprobe.json
check "promql extraction (scripts/check-promql.py --list)" python3 scripts/check-promql.py --list

echo "${passed} passed, ${failed} failed"
(( failed == 0 ))
