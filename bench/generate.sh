#!/usr/bin/env bash
# `retort generate` throughput on one device: score mode (teacher-forced top-k over fixed windows)
# and sample mode (KV-cache decoding), with a teacher of CONFIG's shape trained for one step.
#
#   bench/generate.sh [--config configs/gpu-125m.yaml] [--device cuda|cpu] [--sequences N]
#                     [--seq-len L] [--out DIR] [--set KEY=VALUE ...]  (to retort generate;
#                     generate.batch is set per run)
#
# Steps: a synthetic text corpus (tests/e2e/make_corpus.py) tokenized with CONFIG's tokenizer
# settings; `retort train CONFIG` for one step (the teacher: its shape, not its quality, sets the
# speed); then score mode over N windows of L tokens (default 128 of CONFIG's seq_len + 1) at
# batch 8, and sample mode (16-token prompts, top_p 0.95) for N/8 sequences at batch 8 and N/2
# at batch 64 (a decode step's kernels are the same at any batch: how far it scales), all at
# generate.k 32 and generate.precision bf16 on a GPU. Prints one JSON line per run: mode, batch,
# tokens, seconds and tok/s (wall time of the command, loading the teacher and writing the
# corpus included).
# RETORT_BIN overrides build/retort; PYTHON overrides python3.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CONFIG=$ROOT/configs/gpu-125m.yaml DEVICE=cuda N=128 L="" OUT=$ROOT/runs/bench-generate
SETS=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --config) CONFIG=$2; shift 2 ;;
    --device) DEVICE=$2; shift 2 ;;
    --sequences) N=$2; shift 2 ;;
    --seq-len) L=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --set) SETS+=(--set "$2"); shift 2 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "generate.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
RETORT=${RETORT_BIN:-$ROOT/build/retort}
PYTHON=${PYTHON:-python3}
[[ -x "$RETORT" ]] || { echo "generate.sh: $RETORT missing (launch/build.sh)" >&2; exit 1; }
[[ -n "$L" ]] || L=$(( $("$RETORT" config "$CONFIG" | awk '/^model:/ {m = 1; next} /^[^ ]/ {m = 0}
                          m && $1 == "seq_len:" {print $2; exit}') + 1 ))
rm -rf "$OUT" && mkdir -p "$OUT"
ON=(--set "parallel.device=$DEVICE")
[[ "$DEVICE" = cpu ]] || ON+=(--set generate.precision=bf16)

# Tokens for N windows of L (score mode reads N·L of them), with a margin.
docs=$(( N * L / 250 + 50 ))
"$PYTHON" "$ROOT/tests/e2e/make_corpus.py" "$OUT/text" "$docs" >/dev/null
"$RETORT" tokenize "$CONFIG" --set "tokenize.inputs=[$OUT/text]" --set "tokenize.out=$OUT/tok" \
  --set tokenize.vocab_size=512 --set tokenize.val_fraction=0.01 >/dev/null
DATA=(--set "data.train=$OUT/tok/train.h5" --set "data.val=$OUT/tok/val.h5"
      --set "data.tokenizer=$OUT/tok/tokenizer.model")
"$RETORT" train "$CONFIG" "${DATA[@]}" "${ON[@]}" --set train.steps=1 --set eval.max_windows=1 \
  --set "run.dir=$OUT/teacher" >/dev/null

G=("$CONFIG" "${ON[@]}" --set "generate.teacher=$OUT/teacher"
   --set "generate.data=$OUT/tok/train.h5" --set generate.k=32 --set "generate.seq_len=$L"
   "${SETS[@]}")
run() {  # run MODE SEQUENCES BATCH ARGS...: one JSON line
  local mode=$1 n=$2 batch=$3; shift 3
  local t0=$(date +%s.%N)
  "$RETORT" generate "${G[@]}" --set "generate.mode=$mode" --set "generate.num_sequences=$n" \
    --set "generate.shard_sequences=$n" --set "generate.batch=$batch" \
    --set "generate.out=$OUT/$mode-$batch" "$@" >/dev/null
  "$PYTHON" - "$mode" "$n" "$batch" "$L" "$t0" "$DEVICE" "$(basename "$CONFIG")" <<'PY'
import json, sys, time
mode, n, batch, L, t0, device, config = sys.argv[1:]
s, tokens = time.time() - float(t0), int(n) * int(L)
print(json.dumps({"mode": mode, "batch": int(batch), "device": device, "config": config,
                  "tokens": tokens, "seconds": round(s, 2), "tok_per_s": round(tokens / s)}))
PY
}
SAMPLE=(--set generate.prompt_len=16 --set generate.top_p=0.95)
run score "$N" 8
run sample "$(( (N + 7) / 8 ))" 8 "${SAMPLE[@]}"
run sample "$(( (N + 1) / 2 ))" 64 "${SAMPLE[@]}"
