#!/usr/bin/env bash
# Dashboards and alerts against a real Prometheus scraping live dualprobes with passing and
# failing families (loopback only: dnsmasq, HTTP/TLS peers, ECS task metadata, two dualprobes as
# two tasks, a dead scrape target, Prometheus), in a private network namespace of its own
# (unshare --net; a 64:ff9b::/96 address on lo stands in for a NAT64 translator; --no-netns runs
# without it and without the NAT64 scenarios, which CI refuses). Every PromQL expression of
# dashboards/grafana-dualprobe.json and dashboards/alerts.yml must evaluate and return series
# (scripts/check-promql.py --strict), every rule must be healthy and every alert must be pending
# for the task/target meant to trigger it. Details: scripts/check_dashboards_live.py.
#
#   scripts/check-dashboards-live.sh target/debug/dualprobe [--keep] [--no-netns]
set -euo pipefail
BIN="${1:?usage: $0 path/to/dualprobe [--keep]}"
shift
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
exec python3 "${ROOT}/scripts/check_dashboards_live.py" --bin "${BIN}" "$@"
