#!/usr/bin/env bash
# The long fuzz run (issue 16): every target of fuzz/ for 10 minutes (or SECONDS_PER_TARGET),
# the same build and crash/hang check as CI's bounded run. Findings land in fuzz/out/TARGET.
# usage: bench/fuzz-long.sh [SECONDS_PER_TARGET] [TARGET...]
set -euo pipefail
secs=600
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  secs="$1"
  shift
fi
exec "$(dirname "$0")/../scripts/fuzz.sh" "$secs" "$@"
