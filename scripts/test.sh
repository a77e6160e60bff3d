#!/usr/bin/env bash
# Every test dualprobe has, in the order CI runs them. Installs missing peers first when run as
# root (scripts/install-test-deps.sh). Stages:
#   lint      module layers and file sizes (scripts/check-structure.py), cargo fmt --check,
#             cargo clippy -D warnings
#   unit      cargo test: unit tests and the one integration crate tests/it (checks, config,
#             scheduler, binary end to end, /probe, the HTTP server's limits, AWS on moto,
#             discovery, the guard table, the SSRF table in a network namespace)
#   fuzz      the AFL++ fuzz targets of fuzz/ (Debian's afl++, parsing crates instrumented),
#             20 s each from their seed corpus; fails on any crash or hang (scripts/fuzz.sh)
#   metrics   promtool check metrics on a live /metrics
#   release   the static-pie release binary (scripts/build-release.sh), the same the image ships
#   image     the image built around that binary (buildah), run as the task definition runs it
#             (podman, in a network namespace; scripts/check-image.sh; root only, skipped loudly)
#   deploy    cfn-lint, hadolint, promtool rule tests, dashboard/alert PromQL against a real
#             Prometheus scraping a live dualprobe, the task role's dualprobe policy held to the
#             binary's AWS calls on moto with IAM enforced (scripts/check-iam.py --mutants, ~20 s)
#   netns     the dual-stack VPC fault suite, the NAT64 + DNS64 suite (tests/netns/nat64.py:
#             tayga, unbound), then a 2-minute soak in the dual-stack topology
#             (tests/netns/soak.py; root only; skipped loudly otherwise)
#   bench     the benchmark in --quick mode (runs and produces numbers; no thresholds)
# Pick stages: scripts/test.sh lint unit   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
stages=("$@")
((${#stages[@]})) || stages=(lint unit fuzz metrics release image deploy netns bench)
want() { [[ " ${stages[*]} " == *" $1 "* ]]; }
step() { printf '\n=== %s\n' "$*"; }

DUALPROBE_STAGES="${stages[*]}" scripts/install-test-deps.sh

if want lint; then
  step "structure: layer order, import cycles, files over 700 lines (scripts/check-structure.py)"
  python3 scripts/check-structure.py
  step "cargo fmt --check"
  cargo fmt --all -- --check
  step "cargo clippy --all-targets -- -D warnings"
  cargo clippy --all-targets --locked -- -D warnings
  # fuzz/ has its own lock file: a dependency added to the main crate must be in it too, or the
  # fuzz stage's `--locked` build fails (cheap to check here, without building anything).
  step "fuzz/Cargo.lock is current (cargo metadata --locked)"
  cargo metadata --locked --manifest-path fuzz/Cargo.toml --format-version 1 >/dev/null
fi

if want unit; then
  step "cargo test"
  # The abuse and reload-load tests open tens of thousands of connections: alone, after the
  # rest, so they neither disturb timing-sensitive tests nor are disturbed by them.
  cargo test --locked --lib --bins --tests -- --skip abuse:: --skip reload_load::
  cargo test --locked --benches
  step "cargo test: abuse and reload under load, one at a time"
  cargo test --locked --test it -- --test-threads=1 abuse:: reload_load::
fi

if want fuzz; then
  step "fuzz: every outside-input parser under AFL++ for a bounded time (scripts/fuzz.sh)"
  scripts/fuzz.sh
fi

if want metrics; then
  step "promtool check metrics on a live /metrics"
  cargo build --locked --quiet
  scripts/check-live-metrics.sh target/debug/dualprobe
fi

release_bin=""
if want release || want image || want netns || want bench || want deploy; then
  step "static release build (scripts/build-release.sh)"
  release_bin="$(scripts/build-release.sh | tail -n 1)"
  "$release_bin" --version
  "$release_bin" check-config tests/data/valid-full.yaml
fi

if want image; then
  if [[ "$(id -u)" == 0 ]]; then
    step "image: Dockerfile around the release binary, run as the task definition runs it"
    scripts/check-image.sh "$release_bin"
  else
    step "image: SKIPPED, needs root (network namespaces, rootful podman)"
  fi
fi

if want deploy; then
  step "deployment checks"
  DUALPROBE_BIN="$release_bin" scripts/check-deploy.sh
  step "IAM: the dualprobe-probes policy against the binary's AWS calls (moto, IAM enforced)"
  python3 scripts/check-iam.py --mutants "$release_bin"
  step "dashboards and alerts against a real Prometheus"
  scripts/check-dashboards-live.sh "$release_bin"
fi

if want netns; then
  step "network-namespace fault suite"
  python3 tests/netns/run.py --bin "$release_bin"
  step "NAT64 + DNS64 suite: an IPv6-only task behind tayga and unbound's dns64 (tests/netns/nat64.py)"
  python3 tests/netns/nat64.py --bin "$release_bin"
  # The 2-minute soak (200 targets, reloads, IPv6 route flap, dnsmasq restart, a refused config;
  # RSS/fds/no stuck pair): root only, skipped loudly otherwise, like the suite; about 3 minutes.
  step "soak in the netns topology, 2 minutes (tests/netns/soak.py; docs/benchmarks.md, Soak)"
  python3 tests/netns/soak.py --bin "$release_bin" --minutes 2 --out target/soak-ci
fi

if want bench; then
  step "benchmark (quick)"
  python3 bench/run.py --bin "$release_bin" --quick
fi
step "all stages passed: ${stages[*]}"
