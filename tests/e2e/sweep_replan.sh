#!/usr/bin/env bash
# Replanning into a sweep directory that holds outputs (launch/sweep_replan.h). After the tiny
# sweep (4 IsoFLOP runs, a teacher, its corpus, a student) has run:
#   1. the same plan again, and one that changes only keys that do not change results
#      (evals_per_run → eval.every, checkpoint.keep_last, train.log_every), are accepted, and
#      run_local.sh then has nothing to run;
#   2. a changed train.lr, generate.k (the corpus's) or distill.lambda (the student's) is refused:
#      exit 2, one line naming the runs (with those that read a changed run: the corpus reads
#      no train.lr but its teacher's output) and the first key, old → new; nothing in the
#      directory changes;
#   3. with the runs it names moved away, the new plan is accepted and run_local.sh runs just them.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok" 300
DATA=(--set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5")
tiny_sweep "$WORK/sweep.yaml"
retort sweep "$WORK/sweep.yaml" --out "$WORK/s" "${DATA[@]}" >/dev/null
"$WORK/s/run_local.sh" >"$WORK/run1.log" 2>&1 || { tail -20 "$WORK/run1.log"; fail "the first pass failed"; }

# 1. Accepted: the same plan, and result-neutral changes.
retort sweep "$WORK/sweep.yaml" --out "$WORK/s" "${DATA[@]}" >/dev/null || fail "the same plan again was refused"
sed 's/^evals_per_run: 1/evals_per_run: 2/; s/checkpoint.keep_last: 1}/checkpoint.keep_last: 3, train.log_every: 2}/' \
  "$WORK/sweep.yaml" >"$WORK/neutral.yaml"
! cmp -s "$WORK/sweep.yaml" "$WORK/neutral.yaml" || fail "the neutral edit changed nothing"
retort sweep "$WORK/neutral.yaml" --out "$WORK/s" "${DATA[@]}" >/dev/null || fail "a result-neutral replan was refused"
grep -q "keep_last: 3" "$WORK/s/configs/teacher-L1-M4.yaml" || fail "the neutral replan did not rewrite the configs"
"$WORK/s/run_local.sh" >"$WORK/run2.log" 2>&1 || fail "run_local.sh after the neutral replan"
[ "$(grep -c ": complete, skipping" "$WORK/run2.log")" = 7 ] || fail "after the neutral replan, not every run was skipped"
echo "ok: the same plan and result-neutral changes are accepted; every run stays complete"

# 2. Refused: a change of what runs compute; nothing in the directory changes.
snapshot() { (cd "$WORK/s" && find . -path ./logs -prune -o -type f -print0 | sort -z | xargs -0 sha256sum); }
before=$(snapshot)
sed 's/train.micro_batch: 0,/train.micro_batch: 0, train.lr: 1.0e-3,/' "$WORK/neutral.yaml" >"$WORK/lr.yaml"
expect_fail 2 "^retort: config error: retort sweep: $WORK/s/runs holds outputs that this plan changes, of 7 runs: sup-1.2e10-L1, sup-1.2e10-L2, sup-2.4e10-L1 and 4 more \(sup-1.2e10-L1: train.lr 0.003 → 0.001; a run that read a changed run's output changes with it\); the scripts would keep or continue them as they are: plan into another --out, or move those run directories away to run them again$" \
  retort sweep "$WORK/lr.yaml" --out "$WORK/s" "${DATA[@]}"
[ "$(grep -c error "$WORK/err.txt")" = 1 ] || fail "more than one error line: $(cat "$WORK/err.txt")"
{ cat "$WORK/neutral.yaml"; echo "generate: {k: 8}"; } >"$WORK/k.yaml"
expect_fail 2 "of 2 runs: corpus-teacher-L1-M4, student-ftis-teacher-L1-M4-6e9-L1 \(corpus-teacher-L1-M4: generate.k 32 → 8;" \
  retort sweep "$WORK/k.yaml" --out "$WORK/s" "${DATA[@]}"
{ cat "$WORK/neutral.yaml"; echo "distill: {lambda: 1}"; } >"$WORK/lambda.yaml"
expect_fail 2 "of run student-ftis-teacher-L1-M4-6e9-L1 \(student-ftis-teacher-L1-M4-6e9-L1: distill.lambda 0.5 → 1.0;" \
  retort sweep "$WORK/lambda.yaml" --out "$WORK/s" "${DATA[@]}"
[ "$(snapshot)" = "$before" ] || fail "a refused replan changed the sweep directory"
echo "ok: replans that change what runs compute are refused; the directory is unchanged"

# 3. The named runs moved away: accepted, and only they run again.
mkdir "$WORK/old"
mv "$WORK/s/runs/corpus-teacher-L1-M4" "$WORK/s/runs/student-ftis-teacher-L1-M4-6e9-L1" "$WORK/old/"
retort sweep "$WORK/k.yaml" --out "$WORK/s" "${DATA[@]}" >/dev/null || fail "the replan after moving the runs away"
"$WORK/s/run_local.sh" >"$WORK/run3.log" 2>&1 || { tail -20 "$WORK/run3.log"; fail "run_local.sh after the replan"; }
[ "$(grep -c ": complete, skipping" "$WORK/run3.log")" = 5 ] || fail "the 5 unchanged runs were not skipped"
[ "$(json "$WORK/s/runs/corpus-teacher-L1-M4/manifest.json" "j['k']")" = 8 ] || fail "the new corpus is not top-8"
retort collect "$WORK/s" | grep -q "6 runs: 6 complete" || fail "after the replan: $(retort collect "$WORK/s")"
echo "ok: with the changed runs moved away the replan runs just them"
echo PASS
