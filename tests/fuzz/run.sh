#!/usr/bin/env bash
# Runs the libFuzzer targets of tests/fuzz (see tests/fuzz/CMakeLists.txt).
#   tests/fuzz/run.sh TARGET SECONDS [libFuzzer flags...]  fuzz one target for SECONDS
#   tests/fuzz/run.sh all SECONDS                           every target, SECONDS each
#   tests/fuzz/run.sh --smoke TARGET RUNS                   (ctest) replay the seeds, then RUNS
#                                                           fixed-seed mutations, 4 s at most
# Targets: token_dataset distill_corpus checkpoint sharded_checkpoint config hf_checkpoint
# hf_tokenizer.
# Binaries: $FUZZ_BIN_DIR, else build-fuzz/fuzz or build/fuzz (a build with RETORT_FUZZ on).
# New inputs go to $FUZZ_WORK (default /tmp/retort-fuzz/TARGET)/corpus, a failing input to
# $FUZZ_WORK/crash-* with libFuzzer's report; the checked-in seeds in tests/fuzz/corpus/TARGET
# are only read. Reproduce a failure: $FUZZ_BIN_DIR/fuzz_TARGET CRASH_FILE. Fold new inputs
# into the seeds: $FUZZ_BIN_DIR/fuzz_TARGET -merge=1 tests/fuzz/corpus/TARGET $FUZZ_WORK/corpus
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
ALL=(token_dataset distill_corpus checkpoint sharded_checkpoint config hf_checkpoint hf_tokenizer)

smoke=0
if [ "${1:-}" = "--smoke" ]; then smoke=1; shift; fi
[ $# -ge 2 ] || { sed -n '2,15p' "$0"; exit 2; }
target=$1 amount=$2
shift 2
if [ "$target" = all ]; then
  for t in "${ALL[@]}"; do FUZZ_WORK= "$0" "$t" "$amount" "$@"; done
  exit 0
fi

bin_dir=${FUZZ_BIN_DIR:-}
if [ -z "$bin_dir" ]; then
  for d in "$ROOT/build-fuzz/fuzz" "$ROOT/build/fuzz"; do [ -x "$d/fuzz_$target" ] && bin_dir=$d && break; done
fi
bin=${bin_dir:-?}/fuzz_$target
[ -x "$bin" ] || { echo "run.sh: no fuzz_$target binary (set FUZZ_BIN_DIR, build with RETORT_FUZZ=ON)" >&2; exit 2; }
work=${FUZZ_WORK:-/tmp/retort-fuzz/$target}
seeds=$HERE/corpus/$target
mkdir -p "$work/corpus" "$seeds"
export TMPDIR=$work  # the targets write their hostile files there

# -timeout: one input running longer is a hang; -malloc_limit_mb: one allocation larger is a
# giant allocation (readers must refuse sizes the file cannot back); both are failures.
flags=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 -artifact_prefix="$work/" -print_final_stats=1)
if [ $smoke = 1 ]; then
  rm -rf "$work/corpus" && mkdir -p "$work/corpus"
  exec "$bin" "${flags[@]}" -seed=1 -runs="$amount" -max_total_time=4 "$work/corpus" "$seeds" "$@"
fi
echo "fuzz_$target for ${amount}s: corpus $work/corpus (+ seeds $seeds), failures in $work/"
"$bin" "${flags[@]}" -max_total_time="$amount" "$work/corpus" "$seeds" "$@"
