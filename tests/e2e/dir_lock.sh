#!/usr/bin/env bash
# One job per output directory (core/dir_lock.h):
#   1. `retort train --resume` on a run directory that a training job is writing (the same
#      command twice), in one process and as an mpirun dp2 job: exit 1 at once with one line
#      naming the first job's pid and host, and the first job ends exactly as a run alone does
#      (its metrics and checkpoints untouched); once it has ended the same command runs;
#   2. a job killed with SIGKILL leaves no lock behind: --resume continues it;
#   3. `retort generate` into a corpus directory whose lock is held: exit 1, the corpus's files
#      unchanged; released, the same command keeps every shard.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok"
ARGS=("$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5"
      --set train.log_every=1 --set train.steps=1500 --set checkpoint.every=100 --set eval.every=0
      --set eval.max_windows=2)
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
# wait_logged DIR N: until DIR/metrics.jsonl has N lines (at most 30 s)
wait_logged() {
  for _ in $(seq 300); do
    [ "$(wc -l 2>/dev/null <"$1/metrics.jsonl" || echo 0)" -ge "$2" ] && return
    sleep 0.1
  done
  fail "$1: fewer than $2 metrics lines after 30 s"
}

# 1. A second job on a run directory in use.
retort train "${ARGS[@]}" --set "run.dir=$WORK/alone" >/dev/null
"$RETORT_BIN" train "${ARGS[@]}" --set "run.dir=$WORK/first" >"$WORK/first.log" 2>&1 &
first=$!
wait_logged "$WORK/first" 3
in_use="$WORK/first is in use by another job \(pid $first on host [^ ]+ since [0-9T:-]+Z; its lock: $WORK/first/.lock\); wait for it to end or choose another run.dir$"
expect_fail 1 "^retort: error: $in_use" retort train "${ARGS[@]}" --set "run.dir=$WORK/first" --resume
[ "$(grep -c "error" "$WORK/err.txt")" = 1 ] || fail "more than one error line: $(cat "$WORK/err.txt")"
OMP_NUM_THREADS=1 expect_fail 1 "^retort: error \(rank 0\): $in_use" \
  "${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" --set parallel.dp=2 --set "run.dir=$WORK/first" --resume
kill -0 "$first" 2>/dev/null || fail "the first job ended before the second ones ran: make it longer"
wait "$first" || { cat "$WORK/first.log" >&2; fail "the first job failed after the refused ones"; }
same_checkpoint "$WORK/alone/checkpoints/step_00001500" "$WORK/first/checkpoints/step_00001500" "the first job"
cmp -s <(grep -o '"step":[0-9]*' "$WORK/first/metrics.jsonl") <(grep -o '"step":[0-9]*' "$WORK/alone/metrics.jsonl") ||
  fail "the first job's metrics.jsonl differs from a run alone's in its steps"
retort train "${ARGS[@]}" --set "run.dir=$WORK/first" --resume >/dev/null ||
  fail "the same command after the first job ended"
echo "ok: a second job on a run directory in use is refused; the first ends as a run alone"

# 2. SIGKILL leaves no lock.
"$RETORT_BIN" train "${ARGS[@]}" --set "run.dir=$WORK/killed" >/dev/null 2>&1 &
killed=$!
for _ in $(seq 300); do [ -d "$WORK/killed/checkpoints/step_00000100" ] && break; sleep 0.1; done
kill -KILL "$killed"
wait "$killed" 2>/dev/null || true
retort train "${ARGS[@]}" --set "run.dir=$WORK/killed" --resume >"$WORK/killed.log" 2>&1 ||
  { cat "$WORK/killed.log" >&2; fail "--resume after SIGKILL"; }
grep -q "^resuming from $WORK/killed/checkpoints/step_" "$WORK/killed.log" || fail "did not resume after SIGKILL"
echo "ok: a job killed with SIGKILL leaves no lock; --resume continues it"

# 3. generate into a corpus whose lock is held.
GEN=("$TINY" --set "generate.teacher=$WORK/alone" --set "generate.data=$WORK/tok/train.h5"
     --set "generate.out=$WORK/corpus" --set generate.k=4 --set generate.num_sequences=24
     --set generate.shard_sequences=8)
retort generate "${GEN[@]}" >/dev/null
sums() { (cd "$WORK/corpus" && sha256sum manifest.json shard-*.h5); }
before=$(sums)
(exec 9>>"$WORK/corpus/.lock" && flock 9 && exec sleep 60) &  # a holder that ends with its pid
holder=$!
for _ in $(seq 100); do flock -n "$WORK/corpus/.lock" true || break; sleep 0.05; done  # until it holds it
expect_fail 1 "^retort: error: $WORK/corpus is in use by another job \(.*; its lock: $WORK/corpus/.lock\); wait for it to end or choose another generate.out$" \
  retort generate "${GEN[@]}"
[ "$(sums)" = "$before" ] || fail "a refused generate changed the corpus"
kill "$holder"
wait "$holder" 2>/dev/null || true
retort generate "${GEN[@]}" >"$WORK/regen.log" 2>&1 || { cat "$WORK/regen.log" >&2; fail "generate after the lock's release"; }
grep -q "3 kept" "$WORK/regen.log" || fail "the shards were not kept: $(cat "$WORK/regen.log")"
[ "$(sums)" = "$before" ] || fail "generate after the release changed the corpus"
echo "ok: generate into a corpus in use is refused, the corpus unchanged; released, every shard kept"
echo PASS
