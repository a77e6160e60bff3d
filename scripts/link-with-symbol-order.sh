#!/bin/sh
# The release build's linker (scripts/build-release.sh passes it as `-C linker=`): runs `cc`
# exactly as rustc asked, plus an lld symbol-ordering file, so the functions an agent runs at
# start, while idle and on its probe path sit together at the front of .text instead of spread
# over the whole binary. The kernel maps code in 64 KiB+ windows, so this is what keeps an idle
# agent's resident code small (docs/benchmarks.md, "Code layout").
#
# DUALPROBE_SYMBOL_ORDER names the ordering file (scripts/symbol-order.txt, made by
# bench/symbol_order.py from a profiled run). Its names carry rustc's symbol hashes, which
# change with the compiler version and the dependency tree; a name not found as is is matched
# by its path without the hash (every instance of that function is placed), so a build with
# another toolchain still gets most of the layout. What was found, and the ordering file's
# checksum, are written to DUALPROBE_SYMBOL_ORDER_STATS, if set. Without an ordering file this
# is plain `cc`.
set -u
cc="${DUALPROBE_CC:-cc}"
order="${DUALPROBE_SYMBOL_ORDER:-}"
stats="${DUALPROBE_SYMBOL_ORDER_STATS:-/dev/null}"
if [ -z "$order" ] || [ ! -r "$order" ]; then
  echo "no ordering file (DUALPROBE_SYMBOL_ORDER='$order')" >"$stats"
  exec "$cc" "$@"
fi

work="$(mktemp -d)" || exec "$cc" "$@"
trap 'rm -rf "$work"' EXIT

# The objects and archives rustc links (a response file, used for very long command lines,
# holds one argument per line).
for arg in "$@"; do
  case "$arg" in
    @*) [ -r "${arg#@}" ] && cat "${arg#@}" ;;
    *) printf '%s\n' "$arg" ;;
  esac
done | while IFS= read -r arg; do
  case "$arg" in
    *.o | *.rlib | *.a) [ -f "$arg" ] && printf '%s\n' "$arg" ;;
  esac
done >"$work/inputs"

# Every function those inputs define (archive members nm cannot read, like .rmeta, are skipped).
tr '\n' '\0' <"$work/inputs" | xargs -0 -r nm --defined-only 2>/dev/null |
  awk 'NF >= 3 && $2 ~ /^[TtWw]$/ { print $3 }' >"$work/defined"
if [ ! -s "$work/defined" ]; then
  echo "no functions found in the linker's inputs (is nm installed?)" >"$stats"
  "$cc" "$@"
  exit
fi

awk -v stats="$stats" '
  # A Rust name without what changes between builds: the hash of a legacy name, the crate
  # disambiguators and back-references of a v0 name (std uses v0), ThinLTO'"'"'s ".llvm.N" suffix.
  function stem(s) {
    sub(/\.llvm\.[0-9]+$/, "", s)
    if (s ~ /^_ZN/) sub(/17h[0-9a-f]+E$/, "E", s)
    else if (s ~ /^_R/) { gsub(/Cs[0-9A-Za-z]+_/, "Cs_", s); gsub(/B[0-9A-Za-z]*_/, "B_", s) }
    return s
  }
  function emit(s) { if (!(s in done)) { done[s] = 1; print s } }
  FNR == NR {
    have[$0] = 1
    s = stem($0)
    if (s == $0) next
    if (s in same) same[s] = same[s] "\n" $0   # (not a ?: : mawk creates same[s] first)
    else same[s] = $0
    next
  }
  NF == 0 || $1 ~ /^#/ { next }
  {
    entries++
    if ($1 in have) { exact++; emit($1); next }
    s = stem($1)
    if ($1 !~ /^_(ZN|R)/) { plain++; emit($1); next }   # a C symbol (libc); lld finds it or not
    if (s in same) {
      byname++
      n = split(same[s], all, "\n")
      for (i = 1; i <= n; i++) emit(all[i])
      next
    }
    missing++
  }
  END {
    printf "entries %d exact %d by_name %d plain %d missing %d order %s\n",
      entries, exact, byname, plain, missing, sum > stats
  }
' sum="$(cksum <"$order" | cut -d' ' -f1)" "$work/defined" "$order" >"$work/order"

"$cc" "$@" -Wl,--symbol-ordering-file="$work/order" -Wl,--no-warn-symbol-ordering
exit  # with cc's status
