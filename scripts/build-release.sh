#!/usr/bin/env bash
# The one release build, shared by the Dockerfile and CI so both make the same binary: a static,
# position-independent Linux executable (glibc linked statically with crt-static, so rustc emits
# static-pie; rustls + ring, no OpenSSL), ready for a `scratch` image. Static-pie keeps ASLR for
# a process that parses untrusted `/probe` input; it needs no particular linker, so the same
# flags work with GNU ld on x86_64 and aarch64 (Graviton). An explicit --target keeps build
# scripts and proc-macros dynamic. Prints the binary's path on the last line.
#
#   TARGET=aarch64-unknown-linux-gnu   another target (default: the host's x86_64)
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${TARGET:-$(uname -m)-unknown-linux-gnu}"
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static"
cargo build --release --locked --target "$TARGET" --bin dualprobe "$@" >&2
out="target/$TARGET/release/dualprobe"
if readelf -d "$out" | grep -q NEEDED; then
  echo "build-release: $out is not static:" >&2
  readelf -d "$out" | grep NEEDED >&2
  exit 1
fi
if ! readelf -h "$out" | grep -q 'DYN'; then
  echo "build-release: $out is not position-independent (static-pie expected)" >&2
  exit 1
fi
echo "$out"
