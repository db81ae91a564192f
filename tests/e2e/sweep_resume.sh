#!/usr/bin/env bash
# A sweep's run_local.sh resumes after an interruption. The tiny IsoFLOP sweep plus one
# distillation protocol is planned; the first pass goes through a wrapper binary that
# "crashes" the third run after its mid-run checkpoint (its final checkpoint and summary are
# removed, exit 137), so run_local.sh stops. The second pass must skip the complete runs,
# resume the interrupted one from its checkpoint (same final loss as uninterrupted), finish
# the rest, then generate the teacher's corpus and distill the student from it. collect then
# reports every run's status, the student with its teacher's loss.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok" 300   # enough text for the student's corpus (~900 windows of 65 tokens)

cat >"$WORK/sweep.yaml" <<EOF
base: $SRC/configs/tiny.yaml
set: {train.batch_tokens: 256, train.micro_batch: 0, eval.max_windows: 4, checkpoint.keep_last: 2}
family: {aspect: 32, head_dim: 16, seq_len: 64}
warmup_fraction: 0.1
evals_per_run: 2
checkpoints_per_run: 2
supervised: {budgets: [1.2e10, 2.4e10], sizes: [1, 2]}
distillation:
  - protocol: fixed_teacher_isoflop_students
    teachers: {sizes: [2], tokens_per_param: 1}
    students: {budgets: [1.2e10], sizes: [1]}
EOF
# Bad input: a malformed sweep file is a config error (exit 2) naming file and key, and
# collect on a directory that is not a sweep is a runtime error (exit 1).
sed 's/^warmup_fraction: 0.1/warmup_fraction: 0.1\nflops: 7N/' "$WORK/sweep.yaml" >"$WORK/bad.yaml"
expect_fail 2 "bad.yaml: key 'flops': must be 'exact' or '6N'" retort sweep "$WORK/bad.yaml" --out "$WORK/bad"
[ ! -e "$WORK/bad" ] || fail "a failed plan wrote $WORK/bad"
expect_fail 1 "plan.csv: not found" retort collect "$WORK/tok"
# data.train too short for the teacher's corpus: refused when planning, not after the teacher
# trained; a data.train that is not a token dataset is a runtime error naming the key.
python3 "$SRC/tests/e2e/make_corpus.py" "$WORK/corpus-short" 40 >/dev/null
retort tokenize "$TINY" --set "tokenize.inputs=[$WORK/corpus-short]" --set "tokenize.out=$WORK/tok-short" >/dev/null
expect_fail 2 "sweep.yaml: corpus-teacher-L2-M1 needs 896 windows of 65 tokens from data.train" \
  retort sweep "$WORK/sweep.yaml" --out "$WORK/short" --set "data.train=$WORK/tok-short/train.h5"
echo "not hdf5" >"$WORK/junk.h5"
expect_fail 1 "data.train: .*junk.h5" retort sweep "$WORK/sweep.yaml" --out "$WORK/short" --set "data.train=$WORK/junk.h5"
[ ! -e "$WORK/short" ] || fail "a refused plan wrote $WORK/short"

retort sweep "$WORK/sweep.yaml" --out "$WORK/sweep" \
  --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5" >"$WORK/plan.log" 2>"$WORK/plan.err"
D=$WORK/sweep
# The plan counts how often each run reads data.train: the two largest runs repeat it.
grep -q "^data: $WORK/tok/train.h5: [0-9]* tokens; the runs read it up to 1.39 times" "$WORK/plan.log" \
  || fail "no data line: $(cat "$WORK/plan.log")"
grep -q "warning: 2 runs read data.train more than once (sup-2.4e10-L1 1.39x, teacher-L2-M1 1.29x)" "$WORK/plan.err" \
  || fail "no repeated-data warning: $(cat "$WORK/plan.err")"
[ "$(cat "$D/stages/train.txt" | wc -l)" = 5 ] || fail "expected 5 training runs: $(cat "$D/stages/train.txt")"
victim=$(sed -n 3p "$D/stages/train.txt")

# First pass: the wrapper lets the victim train to the end, then rolls it back to its mid-run
# checkpoint as a crash after that checkpoint would have left it.
cat >"$WORK/crashing-retort" <<EOF
#!/usr/bin/env bash
"$RETORT_BIN" "\$@" || exit \$?
case "\${2:-}" in
  */$victim.yaml)
    run=$D/runs/$victim
    cp "\$run/summary.json" "$WORK/reference-summary.json"
    rm -rf "\$run/summary.json" "\$(ls -d "\$run"/checkpoints/step_* | tail -1)"
    echo "crashing-retort: killed $victim" >&2
    exit 137 ;;
esac
EOF
chmod +x "$WORK/crashing-retort"
rc=0
RETORT=$WORK/crashing-retort "$D/run_local.sh" >"$WORK/pass1.log" 2>&1 || rc=$?
[ "$rc" != 0 ] || fail "run_local.sh should fail when a run fails"
grep -q "\[sweep\] $victim failed .*rerun run_local.sh" "$WORK/pass1.log" || { cat "$WORK/pass1.log"; fail "no failure message"; }
[ ! -e "$D/runs/$(sed -n 4p "$D/stages/train.txt")" ] || fail "run_local.sh went on after a failure"
retort collect "$D" >"$WORK/collect1.log"
grep -q "6 runs: 2 complete, 1 incomplete, 3 missing" "$WORK/collect1.log" || fail "collect after pass 1: $(cat "$WORK/collect1.log")"
# the incomplete run with the checkpoint a resume starts from (its mid-run one), and how far it logged
steps=$(awk -F, -v n="$victim" '$1 == n {print $12}' "$D/plan.csv")
grep -Eq "^  $victim: checkpoint at step $(( (steps + 1) / 2 )) of $steps \(logged to step $steps\)$" "$WORK/collect1.log" ||
  fail "no progress line for $victim: $(cat "$WORK/collect1.log")"

# Second pass: skip, resume, finish; then the corpus and the distilled student.
"$D/run_local.sh" >"$WORK/pass2.log" 2>&1 || { cat "$WORK/pass2.log"; fail "second pass failed"; }
for n in $(sed -n 1,2p "$D/stages/train.txt"); do
  grep -q "\[sweep\] $n: complete, skipping" "$WORK/pass2.log" || fail "$n was not skipped"
done
grep -q "resuming from .*/runs/$victim/checkpoints/step_" "$WORK/pass2.log" || fail "$victim did not resume"
grep -Eq "\[sweep\] corpus-.*: retort generate" "$WORK/pass2.log" || fail "the corpus was not generated"
grep -Eq "\[sweep\] student-.*: retort distill" "$WORK/pass2.log" || fail "the student was not distilled"
[ "$(json "$D/runs/$victim/summary.json" "j['final_val_loss']")" = \
  "$(json "$WORK/reference-summary.json" "j['final_val_loss']")" ] || fail "resumed run's final loss differs"

# Third pass: nothing left to do.
"$D/run_local.sh" >"$WORK/pass3.log" 2>&1 || fail "third pass failed"
[ "$(grep -c 'complete, skipping' "$WORK/pass3.log")" = 7 ] || { cat "$WORK/pass3.log"; fail "third pass re-ran something"; }
retort collect "$D" | tee "$WORK/collect.log"
grep -q "6 runs: 6 complete, 0 incomplete, 0 missing" "$WORK/collect.log" || fail "collect after pass 2"
python3 - "$D/results.csv" <<'PY'
import csv, sys
rows = {r["name"]: r for r in csv.DictReader(open(sys.argv[1]))}
student = [r for r in rows.values() if r["stage"] == "student"][0]
assert student["status"] == "complete" and student["teacher"] in rows, student
assert float(student["final_val_loss"]) > 0, student
assert student["teacher_loss"] == rows[student["teacher"]]["final_val_loss"] != "", student
# data_epochs as each run counted it (summary.json) = as the plan counted it from the file's shape
plan = {r["name"]: r for r in csv.DictReader(open(sys.argv[1].replace("results.csv", "plan.csv")))}
for name, r in rows.items():
    got, planned = float(r["data_epochs"]), float(plan[name]["data_epochs"])
    assert abs(got / planned - 1) < 1e-5, (name, got, planned)
assert float(student["data_epochs"]) == 1.0, student  # the hungriest student reads its whole corpus
assert all(r["step"] == r["steps"] == plan[n]["steps"] for n, r in rows.items()), rows  # complete: every step
PY
echo PASS
