#!/usr/bin/env bash
# The one release build, shared by the Dockerfile and CI so both make the same binary: a static
# x86_64 Linux executable (glibc linked statically with crt-static; rustls + ring, no OpenSSL),
# ready for a `scratch` image. An explicit --target keeps build scripts and proc-macros dynamic.
# Prints the binary's path on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${TARGET:-x86_64-unknown-linux-gnu}"
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
cargo build --release --locked --target "$TARGET" "$@" >&2
out="target/$TARGET/release/dualprobe"
if [ -f "$out" ]; then
  if readelf -d "$out" | grep -q NEEDED; then
    echo "build-release: $out is not static:" >&2
    readelf -d "$out" | grep NEEDED >&2
    exit 1
  fi
  echo "$out"
fi
