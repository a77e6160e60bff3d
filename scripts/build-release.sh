#!/usr/bin/env bash
# The one release build, shared by the Dockerfile and CI so both make the same binary: a static
# x86_64 Linux executable (glibc linked statically with crt-static; rustls + ring, no OpenSSL),
# ready for a `scratch` image. An explicit --target keeps build scripts and proc-macros dynamic.
# Position-dependent (not static-pie), as Go builds blackbox_exporter: a static-pie binary
# relocates itself at start, reading 0.7 MiB of relocations and dirtying 0.5 MiB of pointers,
# about 1 MiB of the idle RSS (docs/benchmarks.md); the cost is no ASLR for the image's own code.
# Prints the binary's path on the last line.
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${TARGET:-x86_64-unknown-linux-gnu}"
# keep-text-section-prefix: cold code (.text.unlikely) is laid out apart from the code that runs.
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static -C link-arg=-Wl,-z,keep-text-section-prefix"
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
