#!/usr/bin/env bash
# A local sweep (run_local.sh) and preemption, with real signals on a one-run sweep:
#   1. SIGUSR1 to the run's retort process: it checkpoints and exits 75, and run_local.sh
#      resumes it at once (--resume) instead of failing;
#   2. SIGTERM to run_local.sh itself: the run checkpoints, run_local.sh stops with exit 75;
#   3. run_local.sh again: resumes and finishes; collect sees the run complete.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok"
cat >"$WORK/sweep.yaml" <<EOF2
name: preempt
base: $SRC/configs/tiny.yaml
set: {train.batch_tokens: 256, train.micro_batch: 0, train.log_every: 10, eval.max_windows: 2}
family: {aspect: 32, head_dim: 16, seq_len: 64}
evals_per_run: 1
checkpoints_per_run: 1
supervised: {budgets: [1.2e11], sizes: [1]}
EOF2
retort sweep "$WORK/sweep.yaml" --out "$WORK/sweep" \
  --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5" >"$WORK/plan.log"
D=$WORK/sweep
name=$(cat "$D/stages/train.txt")
RUN=$D/runs/$name
# The binary behind a wrapper that records the pid of each retort process it starts.
cat >"$WORK/retort-pid" <<EOF2
#!/usr/bin/env bash
echo \$\$ >"$WORK/retort.pid"
exec "$RETORT_BIN" "\$@"
EOF2
chmod +x "$WORK/retort-pid"

# wait_lines N: until the run's metrics.jsonl has at least N lines
wait_lines() {
  for _ in $(seq 600); do
    [ "$(wc -l <"$RUN/metrics.jsonl" 2>/dev/null || echo 0)" -ge "$1" ] && return; sleep 0.05
  done
  fail "the run did not log $1 lines within 30 s"
}

RETORT=$WORK/retort-pid "$D/run_local.sh" >"$WORK/pass1.log" 2>&1 &
runner=$!
wait_lines 2
kill -USR1 "$(cat "$WORK/retort.pid")"
for _ in $(seq 600); do grep -q "resuming from" "$WORK/pass1.log" && break; sleep 0.05; done
wait_lines 2   # (the resumed run keeps the lines up to its checkpoint)
first=$(grep -o "preempted (SIGUSR1) after step [0-9]*" "$WORK/pass1.log" | head -1)
[ -n "$first" ] || { cat "$WORK/pass1.log" >&2; fail "the run did not stop on SIGUSR1"; }
kill -TERM "$runner"
rc=0
wait "$runner" || rc=$?
[ "$rc" = 75 ] || { cat "$WORK/pass1.log" >&2; fail "run_local.sh: exit $rc after SIGTERM, expected 75"; }
grep -q "\[sweep\] $name: preempted (exit 75); resuming it (1 of at most 10)" "$WORK/pass1.log" ||
  { cat "$WORK/pass1.log" >&2; fail "run_local.sh did not resume the preempted run"; }
grep -q "\[sweep\] stopped on request (in $name); rerun run_local.sh to continue" "$WORK/pass1.log" ||
  { cat "$WORK/pass1.log" >&2; fail "run_local.sh did not stop on SIGTERM"; }
[ "$(grep -c "^preempted (SIGUSR1) after step" "$WORK/pass1.log")" = 2 ] || fail "expected two checkpointed stops"
[ ! -f "$RUN/summary.json" ] || fail "the run finished before the second signal: make it longer"
echo "ok: $first -> resumed by run_local.sh; SIGTERM to run_local.sh -> checkpoint, exit 75"

"$D/run_local.sh" >"$WORK/pass2.log" 2>&1 || { cat "$WORK/pass2.log" >&2; fail "second pass failed"; }
grep -q "resuming from .*/runs/$name/checkpoints/step_" "$WORK/pass2.log" || fail "second pass did not resume"
retort collect "$D" | grep -q "1 runs: 1 complete, 0 incomplete, 0 missing" || fail "collect: $(retort collect "$D")"
echo "ok: rerun resumed and finished"
echo PASS
