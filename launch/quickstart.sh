#!/usr/bin/env bash
# The distillation workflow on an embedded default, as stages:
#   deps → build → data → tokenize → teacher → corpus → student (distilled) →
#   student (supervised, same tokens) → eval → summary (table, summary.json, losses.png)
#
# Usage: launch/quickstart.sh [--config FILE] [--student-config FILE] [--text DIR]
#                             [--run-dir DIR] [--skip-deps] [--set key=value]...
#   --config          teacher config, with its generate: section (default configs/quickstart.yaml)
#   --student-config  student config, with its distill: section (default configs/quickstart-student.yaml)
#   --text            train on this folder of text/JSONL instead of the Brown corpus
#   --run-dir         where everything goes (default: the teacher config's run.dir, runs/quickstart)
#   --set             overrides for the teacher config
# Each stage skips work whose outputs already exist, so rerunning continues.
# RETORT_BIN=path uses an existing binary instead of building (the tests do).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

CONFIG=configs/quickstart.yaml
STUDENT=configs/quickstart-student.yaml
TEXT=""
RUN_DIR=""
SKIP_DEPS=0
SETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --config) CONFIG=$2; shift 2 ;;
    --student-config) STUDENT=$2; shift 2 ;;
    --text) TEXT=$2; shift 2 ;;
    --run-dir) RUN_DIR=$2; shift 2 ;;
    --skip-deps) SKIP_DEPS=1; shift ;;
    --set) SETS+=(--set "$2"); shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "quickstart: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

N=10
stage() { printf '\n== [%s/%s] %s\n' "$1" "$N" "$2"; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}

stage 1 "dependencies"
if [ "$SKIP_DEPS" = 1 ]; then echo "skipped (--skip-deps)"; else launch/install-deps.sh; fi

stage 2 "build (Release)"
if [ -n "${RETORT_BIN:-}" ]; then
  echo "using $RETORT_BIN (RETORT_BIN)"
  RETORT="$RETORT_BIN"
else
  launch/build.sh
  RETORT="$ROOT/build/retort"
fi

# cfg_get FILE SECTION KEY [--set ...]: a value of the resolved config.
cfg_get() {
  local file=$1 section=$2 key=$3; shift 3
  "$RETORT" config "$file" "$@" | awk -v s="$section:" -v k="  $key:" \
    '$0 == s {r = 1; next} /^[^ ]/ {r = 0} r && index($0, k) == 1 {sub(/^[^:]*: */, ""); gsub(/"/, ""); print; exit}'
}
[ -n "$RUN_DIR" ] || RUN_DIR=$(cfg_get "$CONFIG" run dir "${SETS[@]}")
mkdir -p "$RUN_DIR"
TOKENS="$RUN_DIR/tokens"
DATA=(--set "data.train=$TOKENS/train.h5" --set "data.val=$TOKENS/val.h5" --set "data.tokenizer=$TOKENS/tokenizer.model")

stage 3 "data"
if [ -z "$TEXT" ]; then
  launch/get-data.sh
  TEXT="$ROOT/data-cache/brown/text"
fi
echo "text: $TEXT"

stage 4 "tokenize"
if [ -f "$TOKENS/val.h5" ]; then
  echo "found $TOKENS (delete it to retokenize)"
else
  "$RETORT" tokenize "$CONFIG" "${SETS[@]}" --set "tokenize.inputs=[$TEXT]" --set "tokenize.out=$TOKENS"
fi

# timed NAME CMD...: runs CMD, recording its wall time in $RUN_DIR/wall/NAME.
timed() {
  local name=$1; shift
  local t0=$SECONDS
  "$@"
  mkdir -p "$RUN_DIR/wall" && echo $((SECONDS - t0)) >"$RUN_DIR/wall/$name"
}
# train_stage NAME CMD CONFIG ARGS...: `retort CMD` into $RUN_DIR/NAME, resuming when interrupted.
train_stage() {
  local name=$1 cmd=$2; shift 2
  local dir="$RUN_DIR/$name" resume=()
  if [ -f "$dir/summary.json" ]; then
    echo "found $dir/summary.json (delete the run dir to retrain)"; return
  fi
  [ -d "$dir/checkpoints" ] && ls "$dir/checkpoints" | grep -q '^step_' && resume=(--resume)
  timed "$name" "$RETORT" "$cmd" "$@" --set "run.dir=$dir" "${resume[@]}"
}

stage 5 "teacher"
train_stage teacher train "$CONFIG" "${SETS[@]}" "${DATA[@]}"

stage 6 "distillation corpus (teacher top-k over the training text)"
# As many sequences as the student trains on: steps · batch_tokens / seq_len, each seq_len + 1
# tokens long (seq_len targets).
S_STEPS=$(cfg_get "$STUDENT" train steps)
S_BATCH=$(cfg_get "$STUDENT" train batch_tokens)
S_T=$(cfg_get "$STUDENT" model seq_len)
N_SEQ=$((S_STEPS * S_BATCH / S_T))
if [ -f "$RUN_DIR/corpus/manifest.json" ]; then
  echo "found $RUN_DIR/corpus/manifest.json (delete it to regenerate)"
else
  timed corpus "$RETORT" generate "$CONFIG" "${SETS[@]}" --set "generate.teacher=$RUN_DIR/teacher" \
    --set "generate.data=$TOKENS/train.h5" --set "generate.out=$RUN_DIR/corpus" \
    --set "generate.num_sequences=$N_SEQ" --set "generate.seq_len=$((S_T + 1))"
fi

stage 7 "student, distilled from the corpus"
train_stage student_distilled distill "$STUDENT" "${DATA[@]}" --set "distill.corpus=$RUN_DIR/corpus"

stage 8 "student, supervised on the same number of tokens"
train_stage student_supervised train "$STUDENT" "${DATA[@]}"

stage 9 "eval (validation loss, KL to the teacher)"
mkdir -p "$RUN_DIR/eval"
"$RETORT" eval "$RUN_DIR/teacher" --tokens "$TOKENS/val.h5" --out "$RUN_DIR/eval/teacher.json"
for s in student_distilled student_supervised; do
  "$RETORT" eval "$RUN_DIR/$s" --tokens "$TOKENS/val.h5" --teacher "$RUN_DIR/teacher" \
    --out "$RUN_DIR/eval/$s.json"
done

stage 10 "summary"
# Debian's python3-matplotlib lives in the system Python (PYTHON overrides).
PYTHON=${PYTHON:-$( [ -x /usr/bin/python3 ] && echo /usr/bin/python3 || echo python3 )}
"$PYTHON" "$ROOT/launch/quickstart_summary.py" "$RUN_DIR"
