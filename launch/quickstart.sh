#!/usr/bin/env bash
# The main job on an embedded default, as stages:
#   deps → build → data → tokenize → train → eval → summary
# Later issues add: teacher → corpus → students.
#
# Usage: launch/quickstart.sh [--config FILE] [--text DIR] [--run-dir DIR] [--skip-deps]
#                             [--set key=value]...
#   --config   training config (default configs/quickstart.yaml)
#   --text     train on this folder of text/JSONL instead of the Brown corpus
#   --run-dir  where everything goes (default: the config's run.dir, runs/quickstart)
# Each stage skips work whose outputs already exist, so rerunning continues.
# RETORT_BIN=path uses an existing binary instead of building (the tests do).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

CONFIG=configs/quickstart.yaml
TEXT=""
RUN_DIR=""
SKIP_DEPS=0
SETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --config) CONFIG=$2; shift 2 ;;
    --text) TEXT=$2; shift 2 ;;
    --run-dir) RUN_DIR=$2; shift 2 ;;
    --skip-deps) SKIP_DEPS=1; shift ;;
    --set) SETS+=(--set "$2"); shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "quickstart: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

stage() { printf '\n== [%s] %s\n' "$1" "$2"; }
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}

stage 1/7 "dependencies"
if [ "$SKIP_DEPS" = 1 ]; then echo "skipped (--skip-deps)"; else launch/install-deps.sh; fi

stage 2/7 "build (Release)"
if [ -n "${RETORT_BIN:-}" ]; then
  echo "using $RETORT_BIN (RETORT_BIN)"
  RETORT="$RETORT_BIN"
else
  launch/build.sh
  RETORT="$ROOT/build/retort"
fi

[ -n "$RUN_DIR" ] || RUN_DIR=$("$RETORT" config "$CONFIG" "${SETS[@]}" | awk '/^run:/{r=1;next} r&&/^  dir:/{print $2; exit}')
RUN_DIR=${RUN_DIR//\"/}
mkdir -p "$RUN_DIR"

stage 3/7 "data"
if [ -z "$TEXT" ]; then
  launch/get-data.sh
  TEXT="$ROOT/data-cache/brown/text"
fi
echo "text: $TEXT"

stage 4/7 "tokenize"
TOKENS="$RUN_DIR/tokens"
if [ -f "$TOKENS/val.h5" ]; then
  echo "found $TOKENS (delete it to retokenize)"
else
  "$RETORT" tokenize "$CONFIG" "${SETS[@]}" --set "tokenize.inputs=[$TEXT]" --set "tokenize.out=$TOKENS"
fi

stage 5/7 "train"
TRAIN_ARGS=("$CONFIG" "${SETS[@]}" --set "run.dir=$RUN_DIR/train" --set "data.train=$TOKENS/train.h5"
            --set "data.val=$TOKENS/val.h5" --set "data.tokenizer=$TOKENS/tokenizer.model")
if [ -f "$RUN_DIR/train/summary.json" ]; then
  echo "found $RUN_DIR/train/summary.json (delete the run dir to retrain)"
elif [ -d "$RUN_DIR/train/checkpoints" ] && ls "$RUN_DIR/train/checkpoints" | grep -q '^step_'; then
  "$RETORT" train "${TRAIN_ARGS[@]}" --resume
else
  "$RETORT" train "${TRAIN_ARGS[@]}"
fi

stage 6/7 "eval"
"$RETORT" eval "$RUN_DIR/train" --tokens "$TOKENS/val.h5" --out "$RUN_DIR/eval.json"

stage 7/7 "summary"
python3 - "$RUN_DIR" <<'PY'
import json, sys, os
run = sys.argv[1]
s = json.load(open(os.path.join(run, "train", "summary.json")))
e = json.load(open(os.path.join(run, "eval.json")))
rows = [
    ("parameters", f"{s['params']:,} ({s['params_nonembedding']:,} non-embedding)"),
    ("tokens seen", f"{s['tokens_seen']:,}"),
    ("throughput", f"{s['tokens_per_s']:,.0f} tokens/s"),
    ("wall time", f"{s['wall_s']:.1f} s"),
    ("val loss", f"{e['loss']:.4f} over {e['tokens']:,} tokens"),
    ("run dir", os.path.abspath(run)),
]
for k, v in rows:
    print(f"  {k:<12} {v}")
PY
