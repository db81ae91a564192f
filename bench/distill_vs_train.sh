#!/usr/bin/env bash
# Step time of `retort distill` (offline k-top corpus, online teacher) vs `retort train` on the
# same student config: REPS runs each, interleaved, STEPS steps per run; the step time of a run
# is the median over its steps 3..STEPS of 1/tokens_per_s × tokens per step. Prints the
# median over runs and the ratios. Usage:
#   bench/distill_vs_train.sh CONFIG TOKENS_DIR CORPUS TEACHER [REPS=3] [STEPS=10]
set -euo pipefail
cfg=$1 tok=$2 corpus=$3 teacher=$4 reps=${5:-3} steps=${6:-10}
bin=${RETORT_BIN:-build/retort}
work=$(mktemp -d)
common=(--set "data.train=$tok/train.h5" --set "data.val=$tok/val.h5" --set train.steps=$steps
        --set train.log_every=1 --set eval.every=0 --set eval.max_windows=1 --set checkpoint.keep_last=1)
for r in $(seq "$reps"); do
  "$bin" train "$cfg" "${common[@]}" --set "run.dir=$work/train_$r" >/dev/null
  "$bin" distill "$cfg" "${common[@]}" --set "distill.corpus=$corpus" --set train.batch_tokens=4080 \
    --set "run.dir=$work/offline_$r" >/dev/null
  "$bin" distill "$cfg" "${common[@]}" --set "distill.teacher=$teacher" --set "run.dir=$work/online_$r" >/dev/null
done
/usr/bin/python3 - "$work" "$reps" <<'PY'
import json, statistics, sys
work, reps = sys.argv[1], int(sys.argv[2])
def step_ms(run):
    lines = [l for l in map(json.loads, open(f"{work}/{run}/metrics.jsonl")) if "tokens_per_s" in l]
    per_tok = [1.0 / l["tokens_per_s"] for l in lines[2:]]
    return statistics.median(per_tok) * 1e6  # µs per token
res = {m: statistics.median(step_ms(f"{m}_{r}") for r in range(1, reps + 1)) for m in ("train", "offline", "online")}
for m, v in res.items():
    print(f"{m:8s} {v:8.2f} us/token  ({4096 * v / 1e3:.0f} ms per 4096-token step)  x{v / res['train']:.2f}")
PY
rm -rf "$work"
