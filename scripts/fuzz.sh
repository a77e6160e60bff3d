#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser that takes outside input (issue 16): builds the fuzz
# targets of fuzz/ with AFL++ instrumentation on the parsing crates only (fuzz/instrument-rustc.sh
# as RUSTC_WRAPPER; Debian's afl++ supplies the runtime and afl-fuzz) and runs each for a bounded
# time from its seed corpus (fuzz/corpus/TARGET), with its dictionary of tokens (fuzz/dict).
# Fails, naming the input, on any crash or hang.
# Everything it writes stays under fuzz/: the build in fuzz/target, the runs in fuzz/out/TARGET.
#
# usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default: 20 s each, every target)
#        scripts/fuzz.sh --build-only
# CI runs it as the fuzz stage; bench/fuzz-long.sh runs 10 minutes per target.
# A crash is reproduced with: fuzz/target/release/TARGET < INPUT
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

all=(config probe_query host_guard cloudformation ec2_responses dns_answer task_metadata)
build_only=0
secs=20
if [[ "${1:-}" == --build-only ]]; then
  build_only=1
  shift
elif [[ "${1:-}" =~ ^[0-9]+$ ]]; then
  secs="$1"
  shift
fi
targets=("$@")
((${#targets[@]})) || targets=("${all[@]}")

if ! command -v afl-fuzz >/dev/null 2>&1 || [[ ! -f /usr/lib/afl/afl-compiler-rt.o ]]; then
  echo "fuzz: AFL++ is not installed (Debian's afl++; scripts/install-test-deps.sh installs it as root)" >&2
  exit 1
fi

# Instrumented: our crate, the targets, and the parsers outside bytes reach (YAML, DNS, URL and
# IDNA, JSON, XML, CIDRs). Everything else is built plain (see fuzz/instrument-rustc.sh for why).
# The wrapper's choice is invisible to cargo's fingerprints, so this build has its own target
# dir (fuzz/target) and the list is written next to it: a changed list rebuilds from scratch.
instrument="dualprobe ${all[*]} serde_saphyr granit_parser hickory_proto url idna form_urlencoded"
instrument+=" percent_encoding serde_json aws_smithy_xml xmlparser ipnet"
stamp=target/instrumented-crates
if [[ -f "$stamp" && "$(cat "$stamp")" != "$instrument" ]]; then
  echo "fuzz: the instrumented crate list changed; cleaning fuzz/target"
  cargo clean --release --quiet
fi
start=$SECONDS
echo "fuzz: building the targets (fuzz/target; instrumented: $instrument)"
RUSTC_WRAPPER="$PWD/instrument-rustc.sh" DUALPROBE_FUZZ_INSTRUMENT="$instrument" \
  cargo build --release --locked --bins --quiet
mkdir -p target && printf '%s' "$instrument" >"$stamp"
echo "fuzz: built in $((SECONDS - start)) s"
((build_only)) && exit 0

# No core dump handler check (a CI machine's core_pattern is not ours to change), no CPU
# binding on shared cores, the run ends after $secs or at the first crash; a memory limit
# turns an allocation bomb (a YAML alias bomb, say) into a crash instead of swapping the host.
export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1
export AFL_NO_UI=1 AFL_FAST_CAL=1 AFL_BENCH_UNTIL_CRASH=1 AFL_QUIET=1
failed=()
for t in "${targets[@]}"; do
  [[ -d "corpus/$t" ]] || { echo "fuzz: no target $t (known: ${all[*]})" >&2; exit 2; }
  rm -rf "out/$t"
  mkdir -p "out/$t"
  echo "fuzz: $t for ${secs} s"
  # -t: a single input taking over 2 s is a hang (the `+` skips slow seeds instead of failing).
  dict=()
  [[ -f "dict/$t.dict" ]] && dict=(-x "dict/$t.dict")
  afl-fuzz -V "$secs" -c 0 -t 2000+ -m 2048 "${dict[@]}" -i "corpus/$t" -o "out/$t" -- "target/release/$t" \
    >"out/$t/afl.log" 2>&1 || {
    echo "fuzz: afl-fuzz failed for $t:" >&2
    tail -n 30 "out/$t/afl.log" >&2
    failed+=("$t")
    continue
  }
  stats="out/$t/default/fuzzer_stats"
  get() { sed -n "s/^$1 *: *//p" "$stats"; }
  echo "fuzz: $t: $(get execs_done) execs, $(get execs_per_sec)/s, corpus $(get corpus_count)," \
    "edges $(get edges_found)/$(get total_edges) ($(get bitmap_cvg)), crashes $(get saved_crashes)," \
    "hangs $(get saved_hangs)"
  found=$(find "out/$t/default/crashes" "out/$t/default/hangs" -type f ! -name README.txt 2>/dev/null)
  if [[ -n "$found" ]]; then
    echo "fuzz: $t: FOUND (reproduce: fuzz/target/release/$t < INPUT):" >&2
    sed 's|^|  fuzz/|' <<<"$found" >&2
    failed+=("$t")
  fi
done
echo "fuzz: stage took $((SECONDS - start)) s"
if ((${#failed[@]})); then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: no crash or hang in ${targets[*]}"
