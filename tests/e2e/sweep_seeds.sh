#!/usr/bin/env bash
# Seed replicates (seeds: [1, 2]): a tiny IsoFLOP grid (2 budgets × 2 sizes) and a fixed-teacher
# protocol (teacher, corpus, student) are planned once per seed, every name ending -s1 / -s2,
# each replicate reading only its own teacher and corpus. run_local.sh runs all 14; collect
# writes seed and point columns and prints the spread of final_val_loss across seeds. Seed 1's
# replicate must be bitwise the sweep planned without seeds (train.seed defaults to 1): same
# final checkpoints and losses; seed 2's must differ at every point. A train.seed in --set is
# refused. Then student_seeds: [1, 2] on the fixed-teacher protocol alone: one teacher and one
# corpus, the student twice (-s1 bitwise the plan's student without seeds, -s2 different).
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok" 300

tiny_sweep "$WORK/plain.yaml"
{ echo "seeds: [1, 2]"; cat "$WORK/plain.yaml"; } >"$WORK/seeded.yaml"
DATA=(--set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5")
expect_fail 2 "^retort: config error: --set train.seed=3: 'train.seed' is set per replicate from the sweep's seeds: list" \
  retort sweep "$WORK/seeded.yaml" --out "$WORK/bad" --set train.seed=3 "${DATA[@]}"
[ ! -e "$WORK/bad" ] || fail "a refused plan wrote $WORK/bad"

for s in plain seeded; do
  retort sweep "$WORK/$s.yaml" --out "$WORK/$s" "${DATA[@]}" >"$WORK/plan-$s.log"
  "$WORK/$s/run_local.sh" >"$WORK/run-$s.log" 2>&1 || { tail -30 "$WORK/run-$s.log"; fail "$s: run_local.sh failed"; }
  retort collect "$WORK/$s" >"$WORK/collect-$s.log"
  cat "$WORK/collect-$s.log"
done
grep -q "^planned 14 runs (10 train, 2 corpus, 2 student)" "$WORK/plan-seeded.log" || fail "plan: $(cat "$WORK/plan-seeded.log")"
grep -q "^seeds: 2 replicates of 7 runs (train.seed 1, 2; " "$WORK/plan-seeded.log" || fail "no seeds line"
grep -q "12 runs: 12 complete" "$WORK/collect-seeded.log" || fail "not every seeded run completed"
grep -Eq "^seeds: 6 points with 2 complete seeds; final_val_loss std across seeds: median [0-9.e-]+, largest [0-9.e-]+ \(" \
  "$WORK/collect-seeded.log" || fail "no seed spread line"
! grep -q "^seeds:" "$WORK/collect-plain.log" || fail "a plan without seeds printed a seed spread"

# Replicate 2 reads its own teacher's corpus.
grep -q "corpus: $WORK/seeded/runs/corpus-teacher-L1-M4-s2$" "$WORK/seeded/configs/student-ftis-teacher-L1-M4-s2-6e9-L1.yaml" ||
  fail "the seed-2 student does not read the seed-2 corpus"
grep -q "teacher: $WORK/seeded/runs/teacher-L1-M4-s2$" "$WORK/seeded/configs/corpus-teacher-L1-M4-s2.yaml" ||
  fail "the seed-2 corpus is not scored by the seed-2 teacher"

# Seed 1 = the plan without seeds, bitwise; seed 2 differs at every point.
for run in "$WORK"/plain/runs/*; do
  name=$(basename "$run")
  [ -d "$run/checkpoints" ] || continue  # the corpus: its students' equality covers it
  seeded=$(echo "$name" | sed -E 's/^(sup-[^-]+-L[0-9]+|teacher-L[0-9]+-M[^-]+)/\1-s1/; s/^(student-ftis-teacher-L[0-9]+-M[^-]+)/\1-s1/')
  last=$(basename "$(ls -d "$run"/checkpoints/step_* | tail -1)")
  same_checkpoint "$run/checkpoints/$last" "$WORK/seeded/runs/$seeded/checkpoints/$last" "$seeded against $name"
done
/usr/bin/python3 - "$WORK/plain/results.csv" "$WORK/seeded/results.csv" <<'PY'
import csv, sys
plain = {r["name"]: r for r in csv.DictReader(open(sys.argv[1]))}
seeded = list(csv.DictReader(open(sys.argv[2])))
assert {r["seed"] for r in seeded} == {"1", "2"}, {r["seed"] for r in seeded}
by_point = {}
for r in seeded:
    assert r["status"] == "complete", r
    by_point.setdefault(r["point"], {})[r["seed"]] = float(r["final_val_loss"])
assert sorted(by_point) == sorted(plain), (sorted(by_point), sorted(plain))
for point, loss in by_point.items():
    assert loss["1"] == float(plain[point]["final_val_loss"]), (point, loss, plain[point]["final_val_loss"])
    assert loss["2"] != loss["1"], (point, loss)
    assert plain[point]["point"] == point and plain[point]["seed"] == "1", plain[point]
print(f"ok: {len(by_point)} points: seed 1 = the plan without seeds, seed 2 differs")
PY

# student_seeds: the teacher and its corpus once, the student once per seed.
{ echo "student_seeds: [1, 2]"; grep -v "^supervised:" "$WORK/plain.yaml"; } >"$WORK/students.yaml"
retort sweep "$WORK/students.yaml" --out "$WORK/students" "${DATA[@]}" >"$WORK/plan-students.log"
grep -q "^planned 4 runs (1 train, 1 corpus, 2 student)" "$WORK/plan-students.log" || fail "plan: $(cat "$WORK/plan-students.log")"
grep -q "^student_seeds: 1 students × 2 seeds (train.seed 1, 2; " "$WORK/plan-students.log" ||
  fail "no student_seeds line: $(cat "$WORK/plan-students.log")"
"$WORK/students/run_local.sh" >"$WORK/run-students.log" 2>&1 || { tail -30 "$WORK/run-students.log"; fail "student_seeds: run_local.sh failed"; }
retort collect "$WORK/students" | tee "$WORK/collect-students.log"
grep -q "^seeds: 1 points with 2 complete seeds" "$WORK/collect-students.log" || fail "no student seed spread line"
student=student-ftis-teacher-L1-M4-6e9-L1
for s in 1 2; do
  grep -q "corpus: $WORK/students/runs/corpus-teacher-L1-M4$" "$WORK/students/configs/$student-s$s.yaml" ||
    fail "student seed $s does not read the one corpus"
done
last=$(basename "$(ls -d "$WORK/plain/runs/$student"/checkpoints/step_* | tail -1)")
same_checkpoint "$WORK/plain/runs/$student/checkpoints/$last" "$WORK/students/runs/$student-s1/checkpoints/$last" \
  "$student-s1 (student_seeds) against $student"
loss() { json "$WORK/students/runs/$1/summary.json" 'j["final_val_loss"]'; }
[ "$(loss $student-s1)" != "$(loss $student-s2)" ] || fail "student seeds 1 and 2 ended at the same loss"
echo "ok: student_seeds: one teacher and corpus, seed 1 = the student without seeds, seed 2 differs"
echo PASS
