#!/usr/bin/env bash
# Preemption: SIGUSR1 during training (one process, and to mpirun for a dp2 job, which forwards
# it to every rank) makes the job checkpoint after its current step and exit 75; the same
# command with --resume then finishes bitwise identical to an uninterrupted run.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
ARGS=("$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5"
      --set train.log_every=1 --set train.steps=150 --set checkpoint.every=0 --set eval.every=0
      --set eval.max_windows=2)

# interrupt NAME LAUNCHER...: start the run, send SIGUSR1 to the launched process once 5 steps
# are logged, expect exit 75 with a checkpoint before the end and no summary; then resume.
interrupt() {
  local name=$1; shift
  "$@" "${ARGS[@]}" --set "run.dir=$WORK/$name" >"$WORK/$name.log" 2>&1 &
  local pid=$! rc=0
  for _ in $(seq 300); do
    [ "$(wc -l <"$WORK/$name/metrics.jsonl" 2>/dev/null || echo 0)" -ge 5 ] && break; sleep 0.1
  done
  kill -USR1 "$pid"
  wait "$pid" || rc=$?
  [ "$rc" = 75 ] || { cat "$WORK/$name.log" >&2; fail "$name: exit $rc after SIGUSR1, expected 75"; }
  grep -q "preempted (SIGUSR1\|preempted (a signal" "$WORK/$name.log" || fail "$name: no preemption message"
  [ ! -f "$WORK/$name/summary.json" ] || fail "$name: a preempted run wrote summary.json"
  local ck; ck=$(ls -d "$WORK/$name"/checkpoints/step_* | tail -1)
  [ -n "$ck" ] && [ "$ck" != "$WORK/$name/checkpoints/step_00000150" ] || fail "$name: no mid-run checkpoint"
  echo "ok: $name stopped at $(basename "$ck") with exit 75"
  "$@" "${ARGS[@]}" --set "run.dir=$WORK/$name" --resume >"$WORK/$name.resume.log" 2>&1 \
    || { cat "$WORK/$name.resume.log" >&2; fail "$name: resume failed"; }
}

retort train "${ARGS[@]}" --set "run.dir=$WORK/whole" >/dev/null
interrupt one "$RETORT_BIN" train
same_checkpoint "$WORK/whole/checkpoints/step_00000150" "$WORK/one/checkpoints/step_00000150" "preempted + resumed run"

OMP_NUM_THREADS=1 "${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" --set parallel.dp=2 \
  --set "run.dir=$WORK/whole_dp2" >/dev/null
OMP_NUM_THREADS=1 interrupt dp2 "${MPIRUN[@]}" -np 2 "$RETORT_BIN" train --set parallel.dp=2
same_checkpoint "$WORK/whole_dp2/checkpoints/step_00000150" "$WORK/dp2/checkpoints/step_00000150" "preempted + resumed dp2 run"
echo PASS
