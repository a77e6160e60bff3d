#!/bin/sh
# RUSTC_WRAPPER for the fuzz build (scripts/fuzz.sh): adds AFL++'s coverage instrumentation
# (LLVM SanitizerCoverage: edges and comparisons, the flags cargo-afl passes) only to the crates
# named in DUALPROBE_FUZZ_INSTRUMENT, and links AFL++'s runtime into the fuzz target binaries.
#
# Why not `cargo afl build`: it instruments every crate through RUSTFLAGS, the AWS SDK included.
# Its cold build of the seven targets took 2,531 s on this 2-core machine (load 5-6); built
# this way, with the dependencies plain, see README "Fuzzing" for the measured figure. What is
# fuzzed is our parsing code and the parsers it hands outside bytes to (YAML, DNS, URL, JSON,
# XML): those are instrumented; the rest (tokio, rustls, the SDK's generated clients) only runs.
#
# Cargo calls: instrument-rustc.sh RUSTC ARGS... ; we find --crate-name and --crate-type.
set -eu
rustc="$1"
shift
crate=""
kind=""
prev=""
for arg in "$@"; do
  case "$prev" in
    --crate-name) crate="$arg" ;;
    --crate-type) kind="$arg" ;;
  esac
  prev="$arg"
done
case " ${DUALPROBE_FUZZ_INSTRUMENT:-} " in
  *" $crate "*) ;;
  *) exec "$rustc" "$@" ;;
esac
set -- "$@" \
  -C passes=sancov-module \
  -C llvm-args=-sanitizer-coverage-level=3 \
  -C llvm-args=-sanitizer-coverage-trace-pc-guard \
  -C llvm-args=-sanitizer-coverage-prune-blocks=0 \
  -C llvm-args=-sanitizer-coverage-trace-compares \
  --cfg fuzzing
if [ "$kind" = bin ]; then
  # The runtime (shared-memory map, fork server, persistent loop) from Debian's afl++ package,
  # the same AFL++ build as the afl-fuzz that drives it.
  set -- "$@" -C "link-arg=${DUALPROBE_FUZZ_RUNTIME:-/usr/lib/afl/afl-compiler-rt.o}"
fi
exec "$rustc" "$@"
