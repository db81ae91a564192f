#!/usr/bin/env bash
# A failing rank ends the whole job promptly with a message, never a hang:
#  - a NaN (training diverges at a huge learning rate) under tp2: exit 1 naming the step;
#  - a NaN injected into a gradient under fsdp2, with train.nonfinite stop and skip;
#  - rank 1 killed with SIGKILL in the middle of a dp2 run: mpirun ends every rank within 30 s
#    with a non-zero exit, and the run resumes from its last checkpoint.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
ARGS=("$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5"
      --set train.log_every=1 --set eval.max_windows=2)

expect_fail 1 "non-finite loss" "${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" \
  --set parallel.tp=2 --set train.lr=1e30 --set train.warmup_steps=0 --set train.grad_clip=0 \
  --set "run.dir=$WORK/nan"

# A NaN injected into a gradient (RETORT_FAULT_NAN_GRAD_STEP, every rank) under fsdp2:
# train.nonfinite stop (default) names the step and the tensor; skip drops that update, counts
# it in metrics.jsonl and finishes.
expect_fail 1 "step 3: non-finite .*first bad gradient: model.embed_tokens.weight" \
  env RETORT_FAULT_NAN_GRAD_STEP=3 "${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" \
  --set parallel.fsdp=2 --set train.steps=6 --set "run.dir=$WORK/nan_stop"
RETORT_FAULT_NAN_GRAD_STEP=3 "${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" --set parallel.fsdp=2 \
  --set train.steps=6 --set train.nonfinite=skip --set "run.dir=$WORK/nan_skip" >"$WORK/nan_skip.log"
grep -q "step 3: non-finite .*update skipped (1 in a row, 1 in all)" "$WORK/nan_skip.log" || fail "no skip message"
/usr/bin/python3 - "$WORK/nan_skip" <<'PY'
import json, sys
lines = [l for l in map(json.loads, open(sys.argv[1] + "/metrics.jsonl")) if "loss" in l]
assert [l.get("skipped_steps", 0) for l in lines] == [0, 0, 1, 1, 1, 1], lines
assert json.load(open(sys.argv[1] + "/summary.json"))["status"] == "complete"
print("ok: the NaN step was skipped and counted")
PY

# A long dp2 run (checkpoint every 5 steps, all kept: tiny.yaml's keep_last 2 would delete
# step 5's at step 15, a fraction of a second later, before a loaded machine's poll sees it);
# kill rank 1 once the first checkpoint exists. Whatever happens, no rank outlives the test.
"${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" --set parallel.dp=2 --set train.steps=100000 \
  --set checkpoint.every=5 --set checkpoint.keep_last=0 --set "run.dir=$WORK/killed" \
  >"$WORK/killed.log" 2>&1 &
job=$!
trap 'kill -9 "$job" 2>/dev/null || true; pkill -9 -f "run.dir=$WORK/killed" || true' EXIT
for _ in $(seq 600); do [ -d "$WORK/killed/checkpoints/step_00000005" ] && break; sleep 0.1; done
[ -d "$WORK/killed/checkpoints/step_00000005" ] || fail "no checkpoint after 60 s"
victim=""
for pid in $(pgrep -f "run.dir=$WORK/killed" || true); do
  if tr '\0' '\n' < "/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1"; then victim=$pid; fi
done
[ -n "$victim" ] || fail "could not find rank 1"
kill -9 "$victim"
start=$SECONDS
rc=0
for _ in $(seq 300); do kill -0 "$job" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$job" 2>/dev/null; then kill -9 "$job"; fail "the job still runs 30 s after rank 1 died"; fi
wait "$job" || rc=$?
[ "$rc" != 0 ] || fail "the job exited 0 after rank 1 was killed"
echo "ok: the job ended $((SECONDS - start)) s after rank 1 was killed (exit $rc)"
pgrep -f "run.dir=$WORK/killed" >/dev/null && fail "ranks left running"
last=$(ls "$WORK/killed/checkpoints" | grep '^step_[0-9]*$' | sort | tail -1)
out=$(retort train "${ARGS[@]}" --set train.steps=$((10#${last#step_} + 5)) --set "run.dir=$WORK/killed" --resume)
grep -q "resuming from" <<<"$out" || fail "the killed run did not resume from its checkpoint"
echo PASS
