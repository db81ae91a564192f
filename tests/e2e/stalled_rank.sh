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

# start NAME NP SETS...: the job in the background ($JOB), output in $WORK/NAME.log.
start() {
  local name=$1 np=$2; shift 2
  "${MPIRUN[@]}" -np "$np" "$RETORT_BIN" train "${ARGS[@]}" "$@" --set "run.dir=$WORK/$name" \
    >"$WORK/$name.log" 2>&1 &
  JOB=$!
}

# ends NAME WHAT: the job ends within TIMEOUT + MARGIN of WHAT with a non-zero exit ($RC), before
# finishing its run, and leaves no rank behind.
ends() {
  local name=$1 what=$2 t0=$SECONDS
  for _ in $(seq $((10 * (TIMEOUT + MARGIN)))); do kill -0 "$JOB" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$JOB" 2>/dev/null; then
    cat "$WORK/$name.log" >&2
    fail "$name: the job still runs $((TIMEOUT + MARGIN)) s after $what"
  fi
  RC=0
  wait "$JOB" || RC=$?
  [ "$RC" != 0 ] || fail "$name: exit 0 after $what"
  [ ! -f "$WORK/$name/summary.json" ] || fail "$name: the run finished before $what"
  ! pgrep -f "run.dir=$WORK/$name( |$)" >/dev/null || fail "$name: ranks left running"
  echo "ok: $name: the job ended $((SECONDS - t0)) s after $what (exit $RC)"
}

# signal_rank NAME SIGNAL RANK: send SIGNAL to RANK as soon as the step-5 checkpoint exists (the
# process is looked up first, so that little happens between the two).
signal_rank() {
  local dir=$WORK/$1 victim=""
  for _ in $(seq 600); do victim=$(rank_pid "$dir" "$3"); [ -n "$victim" ] && break; sleep 0.05; done
  [ -n "$victim" ] || { cat "$WORK/$1.log" >&2; fail "$1: could not find rank $3"; }
  VICTIMS+=("$victim")
  for _ in $(seq 600); do [ -d "$dir/checkpoints/step_00000005" ] && break; sleep 0.05; done
  [ -d "$dir/checkpoints/step_00000005" ] || { cat "$WORK/$1.log" >&2; fail "$1: no checkpoint after 30 s"; }
  kill "-$2" "$victim"
}

# one_line NAME PATTERN: the job exited 124 with exactly one error line, matching PATTERN.
one_line() {
  [ "$RC" = 124 ] || { cat "$WORK/$1.log" >&2; fail "$1: exit $RC, expected 124"; }
  grep -aoE "retort: error \(rank [0-9]+\): collective [a-z_]+ #[0-9]+ on axis [a-z]+ has waited [0-9.]+ s; $2" \
    "$WORK/$1.log" || { cat "$WORK/$1.log" >&2; fail "$1: no line matching /$2/"; }
  [ "$(grep -ao "retort: error" "$WORK/$1.log" | wc -l)" = 1 ] || { cat "$WORK/$1.log" >&2; fail "$1: more than one error line"; }
}

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
