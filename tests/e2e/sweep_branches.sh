#!/usr/bin/env bash
# Sweep-planned cooldown branches (cooldown_branches: true, train.lr_schedule: wsd). A tiny
# IsoFLOP grid (3 budgets × 2 sizes) plus one distillation protocol (a size-1 teacher, 2
# student budgets) is planned: per size the longest run is the trunk and keeps a checkpoint
# where each shorter run's decay begins (despite checkpoint.keep_last 1); the shorter runs (the
# teacher among them) start there and train only their decay, and so does the shorter student
# from the longer one. run_local.sh runs trunks, branches, the corpus, students and student
# branches in that order. Every branch must be bitwise the run trained from step 0 (its planned
# config without train.branch_from): same final checkpoint files, same losses; no branch is
# warned about. A cosine base is refused, and replanning over a trunk that lacks a branch
# point warns.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok" 300

cat >"$WORK/sweep.yaml" <<EOF
base: $SRC/configs/tiny.yaml
set: {train.lr_schedule: wsd, train.batch_tokens: 256, train.micro_batch: 0, train.log_every: 1,
      eval.max_windows: 4, checkpoint.keep_last: 1}
family: {aspect: 32, head_dim: 16, seq_len: 64}
warmup_fraction: 0.1
evals_per_run: 2
checkpoints_per_run: 2
cooldown_branches: true
supervised: {budgets: [1.2e10, 1.8e10, 2.4e10], sizes: [1, 2]}
distillation:
  - protocol: fixed_teacher_isoflop_students
    teachers: {sizes: [1], tokens_per_param: 4}
    students: {budgets: [6e9, 1.2e10], sizes: [1]}
EOF
DATA=(--set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5")
expect_fail 2 "sweep.yaml: key 'cooldown_branches': needs train.lr_schedule: wsd" \
  retort sweep "$WORK/sweep.yaml" --out "$WORK/bad" --set train.lr_schedule=cosine "${DATA[@]}"
[ ! -e "$WORK/bad" ] || fail "a refused plan wrote $WORK/bad"

retort sweep "$WORK/sweep.yaml" --out "$WORK/sweep" "${DATA[@]}" >"$WORK/plan.log"
cat "$WORK/plan.log"
D=$WORK/sweep
grep -Eq "^cooldown branches: 6 runs start from 3 trunks at their decay; training takes .* FLOPs instead of .* \([0-9]+% less" \
  "$WORK/plan.log" || fail "no cooldown-branches line"
for list in train train_branch corpus student student_branch; do echo "$list: $(tr '\n' ' ' <"$D/stages/$list.txt")"; done
[ "$(cat "$D/stages/train.txt" | tr '\n' ' ')" = "sup-2.4e10-L1 sup-2.4e10-L2 " ] ||
  fail "trunks: $(cat "$D/stages/train.txt")"
[ "$(grep -c . "$D/stages/train_branch.txt")" = 5 ] || fail "train branches: $(cat "$D/stages/train_branch.txt")"
[ "$(cat "$D/stages/student_branch.txt")" = "student-ftis-teacher-L1-M4-6e9-L1" ] ||
  fail "student branches: $(cat "$D/stages/student_branch.txt")"

"$D/run_local.sh" >"$WORK/run.log" 2>&1 || { tail -30 "$WORK/run.log"; fail "run_local.sh failed"; }
retort collect "$D" | grep -q "9 runs: 9 complete, 0 incomplete, 0 missing" || fail "collect: $(retort collect "$D")"
! grep -q "warning: train.branch_from" "$WORK/run.log" || fail "a planned branch was warned about: $(grep branch_from "$WORK/run.log")"
# Order: every branch after its trunk, the student branch after the student trunk.
order=$(grep -E "^\[sweep\] [^ :]*: .*retort (train|generate|distill)" "$WORK/run.log" | sed 's/^\[sweep\] //; s/: .*//' | tr '\n' ' ')
echo "order: $order"
case "$order" in
  "sup-2.4e10-L1 sup-2.4e10-L2 sup-"*" teacher-L1-M4 corpus-teacher-L1-M4 student-ftis-teacher-L1-M4-1.2e10-L1 student-ftis-teacher-L1-M4-6e9-L1 ") ;;
  *) fail "run order" ;;
esac

# Each branch against its run from step 0: the branch's own config without train.branch_from.
for name in $(cat "$D/stages/train_branch.txt" "$D/stages/student_branch.txt"); do
  cfg=$D/configs/$name.yaml
  from=$(grep -o "branch_from: .*" "$cfg" | sed 's/branch_from: //; s/"//g')
  [ -f "$from/state.json" ] || fail "$name: its branch point $from was not kept"
  grep -q "^branching from $from (step [0-9]*)" "$D/logs/$name.log" || fail "$name did not branch: $(head "$D/logs/$name.log")"
  cmd=$(awk -F'\t' -v n="$name" '$1 == n {print $2}' "$D/runs.tsv")
  retort "$cmd" "$cfg" --set train.branch_from= --set "run.dir=$WORK/scratch/$name" >"$WORK/scratch-$name.log" 2>&1 ||
    { cat "$WORK/scratch-$name.log"; fail "$name from step 0 failed"; }
  last=$(basename "$(ls -d "$D/runs/$name"/checkpoints/step_* | tail -1)")
  same_checkpoint "$WORK/scratch/$name/checkpoints/$last" "$D/runs/$name/checkpoints/$last" "$name ($cmd) at its end"
  /usr/bin/python3 - "$WORK/scratch/$name" "$D/runs/$name" <<'PY'
import json, sys
def losses(run):
    return {(l["step"], k): l[k] for l in map(json.loads, open(run + "/metrics.jsonl")) for k in ("loss", "val_loss") if k in l}
scratch, branch = losses(sys.argv[1]), losses(sys.argv[2])
assert branch and all(scratch[k] == v for k, v in branch.items()), "the branch's losses differ"
PY
done
# Trunks keep their branch points and, of the rest, only the last (checkpoint.keep_last 1);
# plan.csv names each branch's trunk and charges it only its decay.
python3 - "$D/plan.csv" <<'PY'
import csv, os, re, sys
rows = {r["name"]: r for r in csv.DictReader(open(sys.argv[1])) if not r["name"].startswith("total:")}
for r in rows.values():
    if r["branch_from"]:
        trunk = rows[r["branch_from"]]
        assert int(r["branch_step"]) < int(r["steps"]) < int(trunk["steps"]), r
        share = (int(r["steps"]) - int(r["branch_step"])) / int(r["steps"])
        assert abs(float(r["c_spent"]) / float(r["C"]) - share) < 1e-9, r
    elif r["stage"] != "corpus":
        assert float(r["c_spent"]) == float(r["C"]), r
        keep = re.search(r"keep_steps: \[(.*)\]", open(r["config"]).read()).group(1)
        keep = {int(k) for k in keep.split(",") if k.strip()}
        kept = {int(d[5:]) for d in os.listdir(r["run_dir"] + "/checkpoints")}
        assert kept == keep | {int(r["steps"])}, (r["name"], kept, keep)
PY
# Replanning over a trunk that finished without a branch point (as one planned before
# cooldown_branches has) warns that its branches would fail.
rm -rf "$(ls -d "$D/runs/sup-2.4e10-L2/checkpoints/step_"* | head -1)"
retort sweep "$WORK/sweep.yaml" --out "$D" "${DATA[@]}" >/dev/null 2>"$WORK/replan.err"
grep -q "^warning: sup-2.4e10-L2 already finished without the checkpoints its branches start from" "$WORK/replan.err" ||
  fail "no warning for a trunk without its branch points: $(cat "$WORK/replan.err")"
! grep -q "sup-2.4e10-L1 already finished" "$WORK/replan.err" || fail "a trunk with its branch points was warned about"
echo PASS
