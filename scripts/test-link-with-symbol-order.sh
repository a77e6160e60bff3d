#!/usr/bin/env bash
# Tests scripts/link-with-symbol-order.sh: that it finds each ordering-file name in the objects
# being linked, exactly or (another toolchain's build) by the name without its hash, keeps C
# names, drops what is gone, passes the result to the linker in order, and links plainly
# without an ordering file. Uses the host's cc and nm on a small C object whose function names
# are Rust-mangled; the real linker's result is checked too (the layout follows the order).
set -euo pipefail
cd "$(dirname "$0")/.."
wrapper="$PWD/scripts/link-with-symbol-order.sh"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "test-link-with-symbol-order: FAIL: $*" >&2; exit 1; }

# Legacy names (_ZN..17h<hash>E; two instances of one generic), a ThinLTO-promoted local, v0
# names (std's), and main. The hashes differ from the ordering file's below, as after a
# toolchain change, except for `exact`.
cat >"$work/objs.c" <<'EOF'
void _ZN3app5exact17h00000000000000aaE(void) {}
void _ZN3app4cold17h00000000000000bbE(void) {}
void _ZN3app7generic17h1111111111111111E(void) {}
void _ZN3app7generic17h2222222222222222E(void) {}
void _ZN3app8promoted17h3333333333333333E_llvm(void) {}
void _RNvCs9abcDEF_3std4init(void) {}
void _RNvNtCs9abcDEF_3std2rt4main(void) {}
int main(void) { return 0; }
EOF
cc -c -ffunction-sections -o "$work/objs.o" "$work/objs.c"
# A ThinLTO suffix cannot be written in C; rename the symbol in the object instead.
objcopy --redefine-sym _ZN3app8promoted17h3333333333333333E_llvm=_ZN3app8promoted17h3333333333333333E.llvm.42 \
  "$work/objs.o"

cat >"$work/order.txt" <<'EOF'
# comment lines and blank lines are ignored

_RNvNtCsZZZ_3std2rt4main
_ZN3app7generic17hffffffffffffffffE
_ZN3app5exact17h00000000000000aaE
_ZN3app8promoted17h4444444444444444E.llvm.7
_ZN3app4gone17h5555555555555555E
memcpy
_RNvCsQQQ_3std4init
EOF

# A stand-in for cc that keeps the ordering file it was given and then links for real.
cat >"$work/cc" <<EOF
#!/bin/sh
for a in "\$@"; do
  case "\$a" in -Wl,--symbol-ordering-file=*) cp "\${a#-Wl,--symbol-ordering-file=}" "$work/seen-order" ;; esac
done
exec cc "\$@"
EOF
chmod +x "$work/cc"

# lld as rustc runs it: the toolchain's own, through cc.
gcc_ld="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/gcc-ld"
DUALPROBE_CC="$work/cc" DUALPROBE_SYMBOL_ORDER="$work/order.txt" DUALPROBE_SYMBOL_ORDER_STATS="$work/stats" \
  "$wrapper" -B "$gcc_ld" -fuse-ld=lld -o "$work/a.out" "$work/objs.o" || fail "the link failed"

expected='_RNvNtCs9abcDEF_3std2rt4main
_ZN3app7generic17h1111111111111111E
_ZN3app7generic17h2222222222222222E
_ZN3app5exact17h00000000000000aaE
_ZN3app8promoted17h3333333333333333E.llvm.42
memcpy
_RNvCs9abcDEF_3std4init'
[[ "$(cat "$work/seen-order")" == "$expected" ]] ||
  fail "ordering passed to the linker:"$'\n'"$(cat "$work/seen-order")"$'\n'"expected:"$'\n'"$expected"
[[ "$(cat "$work/stats")" == "entries 7 exact 1 by_name 4 plain 1 missing 1 order $(cksum <"$work/order.txt" | cut -d' ' -f1)" ]] ||
  fail "stats: $(cat "$work/stats")"

# lld honoured it: the functions sit in .text in that order (cold, not listed, comes after).
layout="$(nm -n "$work/a.out" | awk '$2 ~ /^[Tt]$/ && $3 ~ /^_(ZN3app|R)/ { print $3 }')"
[[ "$layout" == "$(grep -v memcpy <<<"$expected")"$'\n''_ZN3app4cold17h00000000000000bbE' ]] ||
  fail "layout in the linked binary:"$'\n'"$layout"

# No ordering file: a plain link, said so in the stats.
DUALPROBE_CC="$work/cc" DUALPROBE_SYMBOL_ORDER="$work/none.txt" DUALPROBE_SYMBOL_ORDER_STATS="$work/stats" \
  "$wrapper" -o "$work/b.out" "$work/objs.o" || fail "plain link failed"
grep -q '^no ordering file' "$work/stats" || fail "stats without a file: $(cat "$work/stats")"

# A failed link fails the wrapper too (here: an undefined function).
echo 'void undefined_here(void); int main(void) { undefined_here(); return 0; }' >"$work/bad.c"
cc -c -o "$work/bad.o" "$work/bad.c"
if DUALPROBE_SYMBOL_ORDER="$work/order.txt" DUALPROBE_SYMBOL_ORDER_STATS="$work/stats" \
  "$wrapper" -o "$work/c.out" "$work/bad.o" 2>/dev/null; then
  fail "a failed link exited 0"
fi

echo "test-link-with-symbol-order: ok"
