#!/usr/bin/env bash
# The one release build, shared by the Dockerfile and CI so both make the same binary: a static
# x86_64 Linux executable (glibc linked statically with crt-static; rustls + ring, no OpenSSL),
# ready for a `scratch` image. An explicit --target keeps build scripts and proc-macros dynamic.
# Position-dependent (not static-pie), as Go builds blackbox_exporter: a static-pie binary
# relocates itself at start, reading 0.7 MiB of relocations and dirtying 0.5 MiB of pointers,
# about 1 MiB of the idle RSS (docs/benchmarks.md); the cost is no ASLR for the image's own code.
# Linked through scripts/link-with-symbol-order.sh with scripts/symbol-order.txt: the code an
# agent runs is laid out together (idle RSS 7.0 -> 2.8 MiB, docs/benchmarks.md "Code layout").
# Prints the binary's path on the last line.
#
#   DUALPROBE_UNSTRIPPED=1   keep the symbol table (for bench/symbol_order.py); only the final
#                            link is redone, with the same code
#   CI=true                  fail when the ordering file no longer matches the code (below 90 %
#                            of its names found); elsewhere that is a warning
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET="${TARGET:-x86_64-unknown-linux-gnu}"
export DUALPROBE_SYMBOL_ORDER="${DUALPROBE_SYMBOL_ORDER:-$PWD/scripts/symbol-order.txt}"
export DUALPROBE_SYMBOL_ORDER_STATS="$PWD/target/$TARGET/release/symbol-order.stats"
# keep-text-section-prefix: cold code (.text.unlikely) is laid out apart from the code that runs.
export RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static -C relocation-model=static -C link-arg=-Wl,-z,keep-text-section-prefix -C linker=$PWD/scripts/link-with-symbol-order.sh"
build() {
  if [[ "${DUALPROBE_UNSTRIPPED:-}" == 1 ]]; then
    cargo rustc --release --locked --target "$TARGET" --bin dualprobe "$@" -- -C strip=none >&2
  else
    cargo build --release --locked --target "$TARGET" "$@" >&2
  fi
}
build "$@"
out="target/$TARGET/release/dualprobe"
# Cargo does not know about the ordering file: relink when it changed since the last link.
if [ -f "$out" ] && [ -r "$DUALPROBE_SYMBOL_ORDER" ] &&
   [[ "$(sed -n 's/.* order \([0-9]*\)$/\1/p' "$DUALPROBE_SYMBOL_ORDER_STATS" 2>/dev/null)" != \
      "$(cksum <"$DUALPROBE_SYMBOL_ORDER" | cut -d' ' -f1)" ]]; then
  echo "build-release: relinking: the ordering file changed since the last link" >&2
  touch src/main.rs
  build "$@"
fi
if [ -f "$out" ]; then
  if readelf -d "$out" | grep -q NEEDED; then
    echo "build-release: $out is not static:" >&2
    readelf -d "$out" | grep NEEDED >&2
    exit 1
  fi
  # "entries N exact E by_name B plain P missing M order CKSUM", written by the linker wrapper.
  if read -r _ entries _ exact _ by_name _ plain _ missing _ _ <"$DUALPROBE_SYMBOL_ORDER_STATS" 2>/dev/null &&
     [[ "$entries" =~ ^[0-9]+$ && "$entries" -gt 0 ]]; then
    found=$((exact + by_name + plain))
    echo "build-release: symbol order: $found of $entries names found ($exact exact, $by_name by name without hash, $plain C)" >&2
    if ((found * 100 < entries * 90)); then
      echo "build-release: scripts/symbol-order.txt is stale; regenerate it: python3 bench/symbol_order.py" >&2
      [[ "${CI:-}" == true ]] && exit 1
    fi
  else
    echo "build-release: no symbol order was applied ($(cat "$DUALPROBE_SYMBOL_ORDER_STATS" 2>/dev/null || echo 'no stats'))" >&2
    [[ "${CI:-}" == true ]] && exit 1
  fi
  echo "$out"
fi
