#!/usr/bin/env bash
# The quickstart pipeline on tiny.yaml: tokenize → train → eval → summary, then rerun (stages
# skip), export, and eval of the export equals eval of the checkpoint.
source "$(dirname "$0")/lib.sh"
python3 "$SRC/tests/e2e/make_corpus.py" "$WORK/corpus" 40
"$SRC/launch/quickstart.sh" --config "$TINY" --text "$WORK/corpus" --run-dir "$WORK/run" --skip-deps \
  | tee "$WORK/qs.log"
grep -q "val loss" "$WORK/qs.log" || fail "no summary printed"

S=$WORK/run/train/summary.json
for key in final_val_loss params params_nonembedding tokens_seen flops tokens_per_s wall_s memory; do
  [ "$(json "$S" "'$key' in j")" = True ] || fail "summary.json lacks $key"
done
[ "$(json "$S" "j['tokens_seen']")" = 15360 ] || fail "tokens_seen != 30 steps x 512"
[ "$(json "$S" "j['final_val_loss'] < 4.5")" = True ] || fail "did not learn: $(cat "$S")"
[ "$(json "$S" "j['memory'][0]['params_bytes'] == 4*j['params']")" = True ] || fail "memory"

python3 - "$WORK/run/train/metrics.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
steps = [l for l in lines if "loss" in l]
evals = [l for l in lines if "val_loss" in l]
assert [l["step"] for l in steps] == list(range(5, 31, 5)), steps
for l in steps:
    assert all(k in l for k in ("step", "loss", "lr", "tokens", "tokens_per_s")), l
assert [l["step"] for l in evals] == [10, 20, 30], evals
assert steps[-1]["loss"] < steps[0]["loss"], "loss did not fall"
PY

# eval follows SPEC §3: W = min(max_windows, floor((n-1)/T)).
E=$WORK/run/eval.json
n=$(/usr/bin/python3 -c "import h5py,sys; print(h5py.File(sys.argv[1])['tokens'].shape[0])" "$WORK/run/tokens/val.h5")
W=$(( (n - 1) / 64 ))
[ "$(json "$E" "j['windows']")" = "$W" ] || fail "windows != $W"
[ "$(json "$E" "j['tokens']")" = "$((W * 64))" ] || fail "tokens != W*T"

# Rerun: every stage finds its outputs.
"$SRC/launch/quickstart.sh" --config "$TINY" --text "$WORK/corpus" --run-dir "$WORK/run" --skip-deps > "$WORK/qs2.log"
grep -q "found $WORK/run/train/summary.json" "$WORK/qs2.log" || fail "rerun retrained"

# Export, then eval of the export gives the same loss as eval of the run.
retort export "$WORK/run/train" --out "$WORK/export"
[ -f "$WORK/export/model.h5" ] && [ -f "$WORK/export/config.yaml" ] || fail "export incomplete"
[ ! -e "$WORK/export/state.json" ] || fail "export carries training state"
retort eval "$WORK/export" --tokens "$WORK/run/tokens/val.h5" --out "$WORK/eval_export.json" >/dev/null
[ "$(json "$E" "j['loss']")" = "$(json "$WORK/eval_export.json" "j['loss']")" ] || fail "export eval differs"
echo PASS
