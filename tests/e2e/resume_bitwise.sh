#!/usr/bin/env bash
# --resume continues bitwise identically: run A trains 30 steps (checkpoints every 10); run B is
# a copy of A with its last checkpoint and summary removed, resumed from step 20. Losses of every
# step and the final model/optimizer files must be identical to A's. (And A says how many
# epochs of data.train it reads, warning when more than one.)
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok"
ARGS=("$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5"
      --set train.log_every=1 --set checkpoint.keep_last=0)
retort train "${ARGS[@]}" --set "run.dir=$WORK/A" > "$WORK/A.log" 2>"$WORK/A.err"
# 30 steps of 8 windows read the tiny corpus' windows more than once: said, and warned.
epochs=$(/usr/bin/python3 -c "import h5py, sys; n = h5py.File(sys.argv[1])['tokens'].shape[0]; print(f'{30 * 8 / ((n - 1) // 64):.3g}')" "$WORK/tok/train.h5")
grep -q "^data: .*train.h5: [0-9]* tokens (memory-mapped), [0-9]* windows of 64; 30 steps x 8 sequences = $epochs epochs" "$WORK/A.log" ||
  fail "no data line with $epochs epochs: $(head -2 "$WORK/A.log")"
grep -q "^retort: warning: the run reads its training data $epochs times (30 steps x 8 sequences over [0-9]* windows)" "$WORK/A.err" || fail "no repetition warning: $(cat "$WORK/A.err")"
[ "$(json "$WORK/A/summary.json" "f\"{j['data_epochs']:.3g}\"")" = "$epochs" ] || fail "summary.json lacks data_epochs $epochs"

cp -r "$WORK/A" "$WORK/B"
rm -rf "$WORK/B/checkpoints/step_00000030" "$WORK/B/summary.json"
# Without --resume a run dir with checkpoints is refused and left untouched.
expect_fail 2 "already holds checkpoints.*--resume" retort train "${ARGS[@]}" --set "run.dir=$WORK/B"
retort train "${ARGS[@]}" --set "run.dir=$WORK/B" --resume | tee "$WORK/B.log"
grep -q "resuming from .*step_00000020 (step 20)" "$WORK/B.log" || fail "did not resume from step 20"

for f in model.h5 optimizer.h5; do
  cmp "$WORK/A/checkpoints/step_00000030/$f" "$WORK/B/checkpoints/step_00000030/$f" \
    || fail "$f differs after resume"
done
python3 - "$WORK/A/metrics.jsonl" "$WORK/B/metrics.jsonl" <<'PY'
import json, sys
def losses(p):
    return [(l["step"], l.get("loss"), l.get("val_loss")) for l in map(json.loads, open(p))]
a, b = losses(sys.argv[1]), losses(sys.argv[2])
assert len(a) == 33, len(a)
assert a == b, [(x, y) for x, y in zip(a, b) if x != y][:3]
PY
[ "$(json "$WORK/A/summary.json" "j['final_val_loss']")" = "$(json "$WORK/B/summary.json" "j['final_val_loss']")" ] \
  || fail "final val loss differs"
echo PASS
