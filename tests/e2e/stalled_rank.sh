#!/usr/bin/env bash
# A rank that stalls or dies ends the job within parallel.timeout_s (the collective watchdog,
# parallel/collective_watchdog.h), never a hang:
#  - dp2, rank 1 stopped (SIGSTOP) after the first checkpoint: the job exits 124 within the
#    timeout plus a margin, with one line naming rank 1 as not responding; --resume then finishes
#    bitwise identical to an uninterrupted run (losses and final checkpoint);
#  - dp2 x fsdp2 (4 ranks), rank 3 stopped: the same, naming rank 3;
#  - tp2, rank 1 stuck in I/O (blocked opening a FIFO, RETORT_FAULT_STUCK_IO): exit 124, rank 1
#    named as outside collectives;
#  - dp2 x tp2 (4 ranks), rank 2 killed (SIGKILL): the job ends within the timeout, non-zero;
#  - a negative timeout is a config error.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
TIMEOUT=4    # parallel.timeout_s under test
MARGIN=6     # diagnosis (1 s probe at this timeout), MPI_Abort and mpirun's teardown, slow CI
ARGS=("$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5"
      --set train.log_every=1 --set train.steps=40 --set checkpoint.every=5
      --set checkpoint.keep_last=0 --set eval.every=0 --set eval.max_windows=2
      --set parallel.timeout_s=$TIMEOUT)

trap cleanup_victims EXIT

LOSSES='import json, sys
for l in map(json.loads, sys.stdin): print(l["step"], l.get("loss"), l.get("val_loss"))'

# stopped NAME RANK NP SETS...: RANK stopped after the step-5 checkpoint: exit 124 naming it;
# then --resume reproduces the uninterrupted run NAME_whole bitwise.
stopped() {
  local name=$1 rank=$2 np=$3; shift 3
  "${MPIRUN[@]}" -np "$np" "$RETORT_BIN" train "${ARGS[@]}" "$@" --set "run.dir=$WORK/${name}_whole" >/dev/null
  start "$name" "$np" "$@"
  signal_rank "$name" STOP "$rank"
  ends "$name" "rank $rank got SIGSTOP"
  one_line "$name" "rank $rank does not respond \(stopped, dead or its node hangs\)"
  "${MPIRUN[@]}" -np "$np" "$RETORT_BIN" train "${ARGS[@]}" "$@" --set "run.dir=$WORK/$name" --resume \
    >"$WORK/$name.resume.log" 2>&1 || { cat "$WORK/$name.resume.log" >&2; fail "$name: resume failed"; }
  grep -q "resuming from" "$WORK/$name.resume.log" || fail "$name: did not resume from a checkpoint"
  same_checkpoint "$WORK/${name}_whole/checkpoints/step_00000040" "$WORK/$name/checkpoints/step_00000040" \
    "$name: stopped + resumed run"
  cmp <(python3 -c "$LOSSES" <"$WORK/${name}_whole/metrics.jsonl") \
      <(python3 -c "$LOSSES" <"$WORK/$name/metrics.jsonl") \
    || fail "$name: the resumed losses differ from the uninterrupted run"
  echo "ok: $name: resumed run reproduces the uninterrupted losses"
}

expect_fail 2 "key 'parallel.timeout_s': must be a number of seconds >= 0" \
  retort train "${ARGS[@]}" --set parallel.timeout_s=-1 --set "run.dir=$WORK/bad_timeout"

stopped dp2 1 2 --set parallel.dp=2
stopped dp2fsdp2 3 4 --set parallel.dp=2 --set parallel.fsdp=2 --set train.micro_batch=2

# tp2, rank 1 blocks opening a FIFO before step 7; timed from rank 0's step-6 metrics line.
mkfifo "$WORK/stuck.fifo"
RETORT_FAULT_STUCK_IO=1:7:$WORK/stuck.fifo start stuck_io 2 --set parallel.tp=2
for _ in $(seq 600); do [ "$(wc -l <"$WORK/stuck_io/metrics.jsonl" 2>/dev/null || echo 0)" -ge 6 ] && break; sleep 0.05; done
ends stuck_io "step 6 (rank 1 then blocks in I/O)"
one_line stuck_io "rank 1 has been outside collectives for [0-9.]+ s since [a-z_]+ #[0-9]+ on axis [a-z]+ \(stuck in I/O or computing\)"

start killed4 4 --set parallel.dp=2 --set parallel.tp=2 --set train.steps=400
signal_rank killed4 KILL 2
ends killed4 "rank 2 got SIGKILL"
echo PASS
