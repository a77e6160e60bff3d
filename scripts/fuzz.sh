#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser that takes outside input (issue 16): builds the
# AFL++-instrumented targets of fuzz/ with cargo-afl (stable Rust) and runs each for a bounded
# time from its seed corpus (fuzz/corpus/TARGET), with its dictionary of tokens (fuzz/dict). Fails, naming the input, on any crash or hang.
# Everything it writes stays under fuzz/: the build in fuzz/target, the runs in fuzz/out/TARGET.
#
# usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default: 20 s each, every target)
#        scripts/fuzz.sh --build-only
# CI's budget for the whole stage (build included, 2 cores) is 6 minutes; bench/fuzz-long.sh runs
# 10 minutes per target. A crash is reproduced with: fuzz/target/release/TARGET < INPUT
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

if ! command -v cargo-afl >/dev/null 2>&1; then
  echo "fuzz: cargo-afl is not installed (scripts/install-test-deps.sh installs it as root)" >&2
  exit 1
fi

# cargo-afl's defaults are opt-level 3 and one codegen unit for every crate, which makes the
# AWS SDK alone take minutes to build; opt-level 1 and 16 units build in a fraction of that and
# still run tens of thousands of inputs a second. (Later -C flags win over cargo-afl's.)
start=$SECONDS
echo "fuzz: building instrumented targets (fuzz/target)"
AFL_OPT_LEVEL="${AFL_OPT_LEVEL:-1}" RUSTFLAGS="-C codegen-units=16 ${RUSTFLAGS:-}" \
  cargo afl build --release --locked --quiet
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
  cargo afl fuzz -V "$secs" -t 2000+ -m 2048 "${dict[@]}" -i "corpus/$t" -o "out/$t" -- "target/release/$t" \
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
