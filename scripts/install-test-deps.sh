#!/usr/bin/env bash
# Installs every peer the test suite uses, on a fresh Debian 12 machine, as root. Idempotent:
# what is already there is left alone. Needs only the package registries (apt, PyPI).
#
#   prometheus, promtool      Debian "prometheus": /metrics lint, rule tests, dashboard queries
#   blackbox_exporter         Debian "prometheus-blackbox-exporter": the benchmark's baseline
#   dnsmasq                   Debian "dnsmasq-base": DNS in the network-namespace suite, bench, IAM check
#   nft, ip                   Debian "nftables", "iproute2": the network-namespace suite
#   tayga                     Debian "tayga": the NAT64 of the netns NAT64 suite (tests/netns/nat64.py)
#   unbound                   Debian "unbound": the DNS64 resolver of the same suite (run in the
#                             foreground from a temp config; the package's service is not used)
#   chromium                  Debian "chromium": the status page in a real headless browser
#   wrk                       Debian "wrk": burst load on /probe
#   moto_server               PyPI "moto[server]": a real S3/EC2/IAM API peer (scripts/check-iam.py
#                             also runs its server app, boto3 and cryptography from it)
#   buildah, podman, runc     the image test (scripts/check-image.sh): build and run the image
#   tini-static               Debian "tini": the init podman runs for InitProcessEnabled
#   busybox (static)          Debian "busybox-static": real writes inside the scratch image
#   afl-fuzz                  Debian "afl++": the fuzz stage (scripts/fuzz.sh): afl-fuzz and the
#                             runtime (/usr/lib/afl/afl-compiler-rt.o) linked into the targets
#   cfn-lint, hadolint, sam,  scripts/install-deploy-tools.sh (with ShellCheck and botocore)
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ "$(id -u)" != 0 ]]; then
  echo "install-test-deps: not root; skipping installs (tests that need a missing peer will say so)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive

need=()
for pair in prometheus:prometheus promtool:prometheus prometheus-blackbox-exporter:prometheus-blackbox-exporter \
            dnsmasq:dnsmasq-base nft:nftables ip:iproute2 chromium:chromium wrk:wrk curl:curl \
            readelf:binutils openssl:openssl buildah:buildah podman:podman runc:runc \
            tini-static:tini pgrep:procps tayga:tayga unbound:unbound afl-fuzz:afl++; do
  cmd="${pair%%:*}" pkg="${pair#*:}"
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
# The image test bind-mounts /bin/busybox into a scratch container: it must be the static one.
dpkg-query -W -f '${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' || need+=(busybox-static)
if ((${#need[@]})); then
  echo "install-test-deps: apt-get install ${need[*]}"
  # The tests run every peer themselves: no package's service is started by this install
  # (unbound's would also point the machine's resolv.conf at itself). A policy-rc.d that denies
  # starts, for the install only, where the machine has none of its own.
  policy=/usr/sbin/policy-rc.d
  made_policy=""
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
    trap 'rm -f "$policy"' EXIT
  fi
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need[@]}"
  if [[ -n "$made_policy" ]]; then
    rm -f "$policy"
    trap - EXIT
  fi
fi

if ! command -v moto_server >/dev/null 2>&1; then
  echo "install-test-deps: pip install moto[server]"
  python3 -m pip install -q 'moto[server]>=5,<6'
fi

# PyYAML: the scripts that read CloudFormation templates (moto[server] brings it too).
if ! python3 -c 'import yaml' 2>/dev/null; then
  echo "install-test-deps: pip install pyyaml"
  python3 -m pip install -q 'pyyaml>=6'
fi

scripts/install-deploy-tools.sh
echo "install-test-deps: done"
