#!/usr/bin/env bash
# A rank that stalls or dies ends the job within parallel.timeout_s (the collective watchdog,
# parallel/collective_watchdog.h), never a hang:
#  - dp2, rank 1 stopped (SIGSTOP) after the first checkpoint: the job exits 124 within the
#    timeout plus a margin, with one line naming rank 1 as not responding; --resume then finishes
#    bitwise identical to an uninterrupted run (losses and final checkpoint);
#  - dp2 x fsdp2 (4 ranks), rank 3 stopped: the same, naming rank 3;
#  - 4 ranks, rank 2 killed (SIGKILL): the job ends within the timeout with a non-zero exit.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
TIMEOUT=4    # parallel.timeout_s under test
MARGIN=6     # diagnosis (1 s probe at this timeout), MPI_Abort and mpirun's teardown, slow CI
ARGS=("$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5"
      --set train.log_every=1 --set train.steps=40 --set checkpoint.every=5
      --set checkpoint.keep_last=0 --set eval.every=0 --set eval.max_windows=2
      --set parallel.timeout_s=$TIMEOUT)

# Stopped ranks are never left behind, whatever happens (only our own: the pid may be reused).
VICTIMS=()
cleanup() {
  local p
  for p in "${VICTIMS[@]}"; do
    if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "run.dir=$WORK/"; then
      kill -CONT "$p" 2>/dev/null || true
      kill -KILL "$p" 2>/dev/null || true
    fi
  done
}
trap cleanup EXIT

# rank_pid RUN_DIR RANK: the process of world rank RANK in the job writing RUN_DIR.
rank_pid() {
  local pid
  for pid in $(pgrep -f "run.dir=$1( |$)" || true); do
    if tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$2"; then
      echo "$pid"; return
    fi
  done
}

# fault NAME SIGNAL RANK NP SETS...: start the job, send SIGNAL to RANK once the step-5
# checkpoint exists, and expect the job to end within TIMEOUT + MARGIN with a non-zero exit
# (code in $FAULT_RC, output in $WORK/NAME.log).
fault() {
  local name=$1 sig=$2 rank=$3 np=$4; shift 4
  local dir=$WORK/$name
  "${MPIRUN[@]}" -np "$np" "$RETORT_BIN" train "${ARGS[@]}" "$@" --set "run.dir=$dir" >"$WORK/$name.log" 2>&1 &
  local job=$! victim=""
  for _ in $(seq 600); do [ -d "$dir/checkpoints/step_00000005" ] && break; sleep 0.05; done
  [ -d "$dir/checkpoints/step_00000005" ] || { cat "$WORK/$name.log" >&2; fail "$name: no checkpoint after 30 s"; }
  victim=$(rank_pid "$dir" "$rank")
  [ -n "$victim" ] || fail "$name: could not find rank $rank"
  VICTIMS+=("$victim")
  kill "-$sig" "$victim"
  local start=$SECONDS
  FAULT_RC=0
  for _ in $(seq $((10 * (TIMEOUT + MARGIN)))); do kill -0 "$job" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$job" 2>/dev/null; then
    cat "$WORK/$name.log" >&2
    fail "$name: the job still runs $((TIMEOUT + MARGIN)) s after rank $rank got SIG$sig"
  fi
  wait "$job" || FAULT_RC=$?
  [ "$FAULT_RC" != 0 ] || fail "$name: exit 0 after rank $rank got SIG$sig"
  [ ! -f "$dir/summary.json" ] || fail "$name: the run finished before SIG$sig reached rank $rank"
  ! pgrep -f "run.dir=$dir( |$)" >/dev/null || fail "$name: ranks left running"
  echo "ok: $name: the job ended $((SECONDS - start)) s after rank $rank got SIG$sig (exit $FAULT_RC)"
}

# stalled NAME RANK NP SETS...: fault with SIGSTOP; exit 124 and one watchdog line naming RANK;
# then --resume reproduces the uninterrupted run NAME_whole.
stalled() {
  local name=$1 rank=$2 np=$3; shift 3
  "${MPIRUN[@]}" -np "$np" "$RETORT_BIN" train "${ARGS[@]}" "$@" --set "run.dir=$WORK/${name}_whole" >/dev/null
  fault "$name" STOP "$rank" "$np" "$@"
  [ "$FAULT_RC" = 124 ] || { cat "$WORK/$name.log" >&2; fail "$name: exit $FAULT_RC, expected 124"; }
  local pattern="retort: error \(rank [0-9]+\): collective [a-z_]+ #[0-9]+ on axis [a-z]+ has waited [0-9.]+ s; rank $rank does not respond \(stopped, stuck in I/O or dead\)"
  grep -oE "$pattern" "$WORK/$name.log" || { cat "$WORK/$name.log" >&2; fail "$name: no line naming rank $rank"; }
  [ "$(grep -o "retort: error" "$WORK/$name.log" | wc -l)" = 1 ] || { cat "$WORK/$name.log" >&2; fail "$name: more than one error line"; }
  "${MPIRUN[@]}" -np "$np" "$RETORT_BIN" train "${ARGS[@]}" "$@" --set "run.dir=$WORK/$name" --resume \
    >"$WORK/$name.resume.log" 2>&1 || { cat "$WORK/$name.resume.log" >&2; fail "$name: resume failed"; }
  grep -q "resuming from" "$WORK/$name.resume.log" || fail "$name: did not resume from a checkpoint"
  same_checkpoint "$WORK/${name}_whole/checkpoints/step_00000040" "$WORK/$name/checkpoints/step_00000040" \
    "$name: stalled + resumed run"
  cmp <(python3 -c "$LOSSES" <"$WORK/${name}_whole/metrics.jsonl") \
      <(python3 -c "$LOSSES" <"$WORK/$name/metrics.jsonl") \
    || fail "$name: the resumed losses differ from the uninterrupted run"
  echo "ok: $name: resumed run reproduces the uninterrupted losses"
}
LOSSES='import json, sys
for l in map(json.loads, sys.stdin): print(l["step"], l.get("loss"), l.get("val_loss"))'

stalled dp2 1 2 --set parallel.dp=2
stalled dp2fsdp2 3 4 --set parallel.dp=2 --set parallel.fsdp=2 --set train.micro_batch=2

fault killed4 KILL 2 4 --set parallel.dp=2 --set parallel.tp=2
echo PASS
