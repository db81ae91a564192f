#!/usr/bin/env bash
# Warmup–stable–decay and cooldown branches. LONG trains 40 steps under train.lr_schedule: wsd
# (decay over the last 25%: steps 30..39); SHORT trains 24 steps from step 0 (decay: steps
# 18..23). BRANCH starts from LONG's step-10 checkpoint (train.branch_from, before either
# decay) with train.steps 24: its model and AdamW state must be SHORT's, bit for bit, and so
# must its losses from step 11 on; the same for an online distillation student (teacher: SHORT).
# The logged learning rates follow the schedule (stable at the peak, then linear to
# min_lr_ratio at the last step). A branch under the cosine schedule is
# warned about (its rates before the branch point depend on train.steps); bad values fail with
# one line naming the key.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok" 100  # 40 steps of 8 windows, read once
ARGS=("$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5"
      --set train.log_every=1 --set checkpoint.every=10 --set checkpoint.keep_last=0 --set eval.every=10
      --set train.lr_schedule=wsd --set train.wsd_decay_fraction=0.25)
retort train "${ARGS[@]}" --set train.steps=40 --set "run.dir=$WORK/LONG" >/dev/null
retort train "${ARGS[@]}" --set train.steps=24 --set "run.dir=$WORK/SHORT" >/dev/null
retort train "${ARGS[@]}" --set train.steps=24 --set "train.branch_from=$WORK/LONG/checkpoints/step_00000010" \
  --set "run.dir=$WORK/BRANCH" > "$WORK/branch.log" 2> "$WORK/branch.err"
grep -q "^branching from .*LONG/checkpoints/step_00000010 (step 10)" "$WORK/branch.log" || fail "no branching line: $(cat "$WORK/branch.log")"
! grep -q "branch_from" "$WORK/branch.err" || fail "a wsd branch before the decay was warned about: $(cat "$WORK/branch.err")"
same_checkpoint "$WORK/SHORT/checkpoints/step_00000024" "$WORK/BRANCH/checkpoints/step_00000024" "the branch at step 24"

/usr/bin/python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
def lines(run):
    return [l for l in map(json.loads, open(f"{work}/{run}/metrics.jsonl")) if "loss" in l]
short, branch, long_ = lines("SHORT"), lines("BRANCH"), lines("LONG")
assert [l["step"] for l in branch] == list(range(11, 25)), [l["step"] for l in branch]
assert [(l["loss"], l["lr"]) for l in branch] == [(l["loss"], l["lr"]) for l in short[10:]], "branch differs from SHORT"
# The schedule (tiny.yaml: lr 3e-3, warmup 5, min_lr_ratio 0.1), logged step s = schedule step s-1.
lr = {l["step"]: l["lr"] for l in long_}
peak, floor = 3e-3, 3e-4
assert abs(lr[5] - peak) < 1e-12 and all(abs(lr[s] - peak) < 1e-12 for s in range(5, 31)), lr
for s in range(31, 41):
    p = (s - 30) / 10
    assert abs(lr[s] - (floor + (peak - floor) * (1 - p))) < 1e-12, (s, lr[s])
assert abs(lr[40] - floor) < 1e-12
print("ok: the branch is SHORT from step 11; LONG's rates: warmup, the peak at steps 5..30, linear decay to", lr[40])
PY

# A distilled student branches the same way (retort distill runs the same loop).
DIST=(--set "distill.teacher=$WORK/SHORT" --set train.steps=24)
retort distill "${ARGS[@]}" --set train.steps=40 --set "distill.teacher=$WORK/SHORT" --set "run.dir=$WORK/D_LONG" >/dev/null
retort distill "${ARGS[@]}" "${DIST[@]}" --set "run.dir=$WORK/D_SHORT" >/dev/null
retort distill "${ARGS[@]}" "${DIST[@]}" --set "train.branch_from=$WORK/D_LONG/checkpoints/step_00000010" \
  --set "run.dir=$WORK/D_BRANCH" >/dev/null
same_checkpoint "$WORK/D_SHORT/checkpoints/step_00000024" "$WORK/D_BRANCH/checkpoints/step_00000024" "the distilled branch at step 24"

# The sqrt shape: 1 - sqrt(p).
retort train "${ARGS[@]}" --set train.steps=20 --set train.wsd_decay_shape=sqrt --set "run.dir=$WORK/SQRT" >/dev/null
/usr/bin/python3 - "$WORK/SQRT/metrics.jsonl" <<'PY'
import json, math, sys
lr = {l["step"]: l["lr"] for l in map(json.loads, open(sys.argv[1])) if "loss" in l}
for s in range(16, 21):
    want = 3e-4 + 2.7e-3 * (1 - math.sqrt((s - 15) / 5))
    assert abs(lr[s] - want) < 1e-12, (s, lr[s], want)
print("ok: sqrt decay", [round(lr[s], 6) for s in range(15, 21)])
PY

# Under cosine the rates before the branch point depend on train.steps: warned, still runs.
COS=("$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5" --set checkpoint.every=10)
retort train "${COS[@]}" --set train.steps=20 --set "run.dir=$WORK/COS" >/dev/null
retort train "${COS[@]}" --set train.steps=15 --set "train.branch_from=$WORK/COS/checkpoints/step_00000010" \
  --set "run.dir=$WORK/COS_BRANCH" >/dev/null 2> "$WORK/cos.err"
grep -q "^retort: warning: train.branch_from: its learning rate at step [0-9][0-9]* was .*train.lr_schedule: wsd" "$WORK/cos.err" ||
  fail "no warning for a cosine branch: $(cat "$WORK/cos.err")"
[ -d "$WORK/COS_BRANCH/checkpoints/step_00000015" ] || fail "the cosine branch did not finish"

expect_fail 2 "train.branch_from.*is at step 20, not before train.steps 20" \
  retort train "${COS[@]}" --set train.steps=20 --set "train.branch_from=$WORK/COS" --set "run.dir=$WORK/bad1"
expect_fail 2 "'train.branch_from'.*no such checkpoint" \
  retort train "${COS[@]}" --set "train.branch_from=$WORK/nowhere" --set "run.dir=$WORK/bad2"
expect_fail 2 "'train.lr_schedule'.*cosine or wsd, got 'step'" \
  retort train "${COS[@]}" --set train.lr_schedule=step --set "run.dir=$WORK/bad3"
expect_fail 2 "'train.wsd_decay_fraction'.*\(0, 1\], got 0" \
  retort train "${ARGS[@]}" --set train.wsd_decay_fraction=0 --set "run.dir=$WORK/bad4"
expect_fail 2 "'train.wsd_decay_shape'.*linear or sqrt" \
  retort train "${ARGS[@]}" --set train.wsd_decay_shape=cosine --set "run.dir=$WORK/bad5"
expect_fail 2 "'train.warmup_steps'.*8 warmup steps run into wsd's decay, which starts at step 6 of 8" \
  retort train "${ARGS[@]}" --set train.steps=8 --set train.warmup_steps=8 --set "run.dir=$WORK/bad6"
expect_fail 2 "key 'checkpoint.keep_steps': 50 is not a step of this run \(1 to train.steps 40\)" \
  retort train "${ARGS[@]}" --set train.steps=40 --set "checkpoint.keep_steps=[10, 50]" --set "run.dir=$WORK/bad7"
expect_fail 2 "key 'checkpoint.keep_steps': expected a list of integers" \
  retort train "${ARGS[@]}" --set "checkpoint.keep_steps=[ten]" --set "run.dir=$WORK/bad8"
echo PASS
