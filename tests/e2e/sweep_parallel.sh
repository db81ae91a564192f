#!/usr/bin/env bash
# run_local.sh with JOBS=2 (several runs of a stage at once) and GPUS_PER_RUN, with real runs:
#   1. a sweep of 4 IsoFLOP runs and a fixed-teacher protocol (teacher, corpus, student): two
#      runs overlap in time, each slot has its own CUDA_VISIBLE_DEVICES ("0,1" and "2,3"), no run
#      starts before the run it reads (runs.tsv's last column) has ended, runs that may overlap
#      share the cores (OMP_NUM_THREADS, as the start line says), and every run's final loss
#      equals the same sweep's under JOBS=1 (the runs do not disturb each other); the
#      fixed-teacher protocol alone, where each run waits for the one before, gets all cores;
#   2. a run that fails: the run beside it still finishes, no other run starts, and the script
#      exits 1 naming it;
#   3. SIGTERM to run_local.sh while two runs train: both checkpoint, the script exits 75, and
#      a rerun resumes both and finishes; a second run_local.sh while it runs exits 1 at once;
#      so with `pkill -f run_local.sh`, which also reaches its run jobs;
#   4. GPUS_PER_RUN within a CUDA_VISIBLE_DEVICES given to run_local.sh: slots take its entries;
#      too few of them, or JOBS that is not a whole number ≥ 1: exit 2, one line.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok" 300
DATA=(--set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5")

tiny_sweep "$WORK/sweep.yaml"
# The binary behind a wrapper that logs each call: its run, start and end times, and environment.
cat >"$WORK/logging-retort" <<EOF
#!/usr/bin/env bash
start=\$(date +%s.%N)
rc=0
"$RETORT_BIN" "\$@" || rc=\$?
echo "\$(basename "\$2" .yaml) \$start \$(date +%s.%N) \${CUDA_VISIBLE_DEVICES:-none} \$OMP_NUM_THREADS" >>"$WORK/calls.log"
exit \$rc
EOF
chmod +x "$WORK/logging-retort"

# 1. JOBS=2 (which sets each run's OMP_NUM_THREADS) against JOBS=1 with half the cores.
cores=$(env -u OMP_NUM_THREADS nproc)  # as run_local.sh counts them (nproc heeds OMP_NUM_THREADS)
half=$(( cores / 2 > 0 ? cores / 2 : 1 ))
for jobs in 1 2; do
  retort sweep "$WORK/sweep.yaml" --out "$WORK/jobs$jobs" "${DATA[@]}" >/dev/null 2>&1
  rm -f "$WORK/calls.log"
  threads=(OMP_NUM_THREADS=$half)
  [ "$jobs" = 1 ] || threads=(-u OMP_NUM_THREADS)
  env "${threads[@]}" JOBS=$jobs GPUS_PER_RUN=2 RETORT=$WORK/logging-retort "$WORK/jobs$jobs/run_local.sh" >"$WORK/run$jobs.log" 2>&1 ||
    { tail -30 "$WORK/run$jobs.log"; fail "JOBS=$jobs: run_local.sh failed"; }
  mv "$WORK/calls.log" "$WORK/calls$jobs.log"
  retort collect "$WORK/jobs$jobs" | grep -q "6 runs: 6 complete" || fail "JOBS=$jobs: not every run completed"
done
cat "$WORK/calls2.log"
grep -q "^\[sweep\] sup-1.2e10-L1: started (slot 0, OMP_NUM_THREADS=$half; log: .*/logs/sup-1.2e10-L1.log)$" "$WORK/run2.log" ||
  fail "no start line: $(head "$WORK/run2.log")"
grep -q "^\[sweep\] sup-1.2e10-L1: done$" "$WORK/run2.log" || fail "no done line"
! grep -q "^step " "$WORK/run2.log" || fail "JOBS=2 printed a run's output (it belongs in its log)"
/usr/bin/python3 - "$WORK/calls2.log" "$WORK/jobs2/runs.tsv" "$cores" "$WORK/run2.log" <<'PY'
import re, sys
calls = [l.split() for l in open(sys.argv[1])]
calls = {c[0]: (float(c[1]), float(c[2]), c[3], c[4]) for c in calls}
after = {row[0]: row[4] for row in (l.rstrip("\n").split("\t") for l in open(sys.argv[2]))}
assert sorted(calls) == sorted(after), (sorted(calls), sorted(after))
assert after["corpus-teacher-L1-M4"] == "teacher-L1-M4", after
for run, a in after.items():
    if a:
        assert calls[run][0] >= calls[a][1], f"{run} started before {a}, which it reads, ended"
overlaps = [(a, b) for a in calls for b in calls if a < b and calls[a][0] < calls[b][1] and calls[b][0] < calls[a][1]]
assert overlaps, "no two runs overlapped"
for a, b in overlaps:
    assert {calls[a][2], calls[b][2]} == {"0,1", "2,3"}, (a, b, calls[a][2], calls[b][2])
assert all(c[2] in ("0,1", "2,3") for c in calls.values()), calls
said = dict(re.findall(r"^\[sweep\] (\S+): started \(slot \d, OMP_NUM_THREADS=(\d+);", open(sys.argv[4]).read(), re.M))
assert said == {run: c[3] for run, c in calls.items()}, (said, calls)
cores, half = int(sys.argv[3]), str(max(1, int(sys.argv[3]) // 2))
assert all(calls[f"sup-{b}-L{s}"][3] == half for b in ("1.2e10", "2.4e10") for s in (1, 2)), calls
for a, b in overlaps:
    assert int(calls[a][3]) + int(calls[b][3]) <= max(cores, 2), (a, b, calls)
print(f"ok: JOBS=2: {len(overlaps)} overlapping pairs, none before what it reads ended, on GPUs 0,1 and 2,3, "
      f"threads {sorted(said.items())} of {cores} cores")
PY
/usr/bin/python3 - "$WORK/jobs1/results.csv" "$WORK/jobs2/results.csv" <<'PY'
import csv, sys
one, two = ({r["name"]: r["final_val_loss"] for r in csv.DictReader(open(f))} for f in sys.argv[1:])
assert one == two, (one, two)
print(f"ok: JOBS=2 gives JOBS=1's final losses for all {len(one)} runs")
PY
sed '/^supervised:/d' "$WORK/sweep.yaml" >"$WORK/chain.yaml"
retort sweep "$WORK/chain.yaml" --out "$WORK/chain" "${DATA[@]}" >/dev/null 2>&1
rm -f "$WORK/calls.log"
env -u OMP_NUM_THREADS JOBS=2 RETORT=$WORK/logging-retort "$WORK/chain/run_local.sh" >"$WORK/chain.log" 2>&1 ||
  { tail -30 "$WORK/chain.log"; fail "the teacher → corpus → student chain failed"; }
[ "$(cut -d' ' -f5 "$WORK/calls.log" | tr '\n' ' ')" = "$cores $cores $cores " ] ||
  fail "a chain's runs, each alone, did not get all $cores cores: $(cat "$WORK/calls.log")"
echo "ok: JOBS=2 on a chain (teacher → corpus → student): each run alone gets all $cores cores"

# 2. A failing run (the second of the first two): the first finishes, no other run starts.
retort sweep "$WORK/sweep.yaml" --out "$WORK/fail" "${DATA[@]}" >/dev/null 2>&1
cat >"$WORK/failing-retort" <<EOF
#!/usr/bin/env bash
case "\$2" in */sup-1.2e10-L2.yaml) echo "simulated failure" >&2; exit 3 ;; esac
exec "$RETORT_BIN" "\$@"
EOF
chmod +x "$WORK/failing-retort"
rc=0
JOBS=2 RETORT=$WORK/failing-retort "$WORK/fail/run_local.sh" >"$WORK/fail.log" 2>&1 || rc=$?
[ "$rc" = 1 ] || { cat "$WORK/fail.log"; fail "a failed run: exit $rc, expected 1"; }
grep -q "^\[sweep\] sup-1.2e10-L2 failed (exit 3; log: .*/logs/sup-1.2e10-L2.log); rerun run_local.sh to continue$" \
  "$WORK/fail.log" || { cat "$WORK/fail.log"; fail "no failure line"; }
[ -f "$WORK/fail/runs/sup-1.2e10-L1/summary.json" ] || fail "the run beside the failed one did not finish"
retort collect "$WORK/fail" | grep -q "6 runs: 1 complete, 0 incomplete, 5 missing" ||
  fail "after the failure: $(retort collect "$WORK/fail")"
echo "ok: a failed run: the running one finishes, nothing else starts, exit 1"

# 3. SIGTERM to run_local.sh with two runs training: both checkpoint, exit 75, a rerun finishes.
cat >"$WORK/long.yaml" <<EOF
base: $SRC/configs/tiny.yaml
set: {train.batch_tokens: 256, train.micro_batch: 0, train.log_every: 10, eval.max_windows: 2}
family: {aspect: 32, head_dim: 16, seq_len: 64}
evals_per_run: 1
checkpoints_per_run: 1
supervised: {budgets: [1.2e11], sizes: [1, 2]}
EOF
retort sweep "$WORK/long.yaml" --out "$WORK/long" "${DATA[@]}" >/dev/null 2>&1
# both_logging DIR: until both runs of the sweep in DIR have logged a step (at most 30 s)
both_logging() {
  local n r
  for _ in $(seq 600); do
    n=0
    for r in "$1"/runs/*/metrics.jsonl; do [ -s "$r" ] && n=$((n + 1)); done
    [ "$n" = 2 ] && return
    sleep 0.05
  done
  fail "the two runs of $1 did not both start logging within 30 s"
}
JOBS=2 "$WORK/long/run_local.sh" >"$WORK/long1.log" 2>&1 &
runner=$!
both_logging "$WORK/long"
expect_fail 1 "^run_local.sh: another run_local.sh is running this sweep \(pid $runner on host [^ ]+ since [0-9T:-]+Z\); wait for it to end$" \
  env JOBS=2 "$WORK/long/run_local.sh"
kill -TERM "$runner"
rc=0
wait "$runner" || rc=$?
[ "$rc" = 75 ] || { cat "$WORK/long1.log"; fail "SIGTERM: exit $rc, expected 75"; }
grep -q "^\[sweep\] stopped on request (in sup-1.2e11-L[12]); rerun run_local.sh to continue$" "$WORK/long1.log" ||
  { cat "$WORK/long1.log"; fail "no stop line"; }
for name in sup-1.2e11-L1 sup-1.2e11-L2; do
  grep -q "^preempted (SIGUSR1) after step" "$WORK/long/logs/$name.log" || fail "$name did not checkpoint on the stop"
  [ ! -f "$WORK/long/runs/$name/summary.json" ] || fail "$name finished before the signal: make it longer"
done
JOBS=2 "$WORK/long/run_local.sh" >"$WORK/long2.log" 2>&1 || { cat "$WORK/long2.log"; fail "the rerun failed"; }
for name in sup-1.2e11-L1 sup-1.2e11-L2; do
  grep -q "resuming from .*/runs/$name/checkpoints/step_" "$WORK/long/logs/$name.log" || fail "$name did not resume"
done
retort collect "$WORK/long" | grep -q "2 runs: 2 complete" || fail "after the rerun: $(retort collect "$WORK/long")"
echo "ok: SIGTERM stops both runs at a checkpoint (exit 75); the rerun resumes and finishes them"

# 3b. `pkill -f run_local.sh`: SIGTERM to the script and to its run jobs (subshells of it, the
# same command line) but not to the runs. The run jobs used to die at once, leaving the runs
# training and the script spinning forever on jobs bash no longer knew; now the runs checkpoint,
# the script exits 75 and nothing is left running.
retort sweep "$WORK/long.yaml" --out "$WORK/byname" "${DATA[@]}" >/dev/null 2>&1
JOBS=2 "$WORK/byname/run_local.sh" >"$WORK/byname1.log" 2>&1 &
runner=$!
both_logging "$WORK/byname"
[ "$(pgrep -cf "$WORK/byname/run_local.sh")" = 3 ] || fail "expected the script and its 2 run jobs: $(pgrep -af "$WORK/byname/")"
pkill -TERM -f "$WORK/byname/run_local.sh"
for _ in $(seq 300); do kill -0 "$runner" 2>/dev/null || break; sleep 0.1; done
! kill -0 "$runner" 2>/dev/null || { kill -KILL $(pgrep -f "$WORK/byname/"); fail "pkill -f run_local.sh: still running after 30 s"; }
rc=0
wait "$runner" || rc=$?
[ "$rc" = 75 ] || { cat "$WORK/byname1.log"; fail "pkill -f run_local.sh: exit $rc, expected 75"; }
! pgrep -f "$WORK/byname/" >/dev/null || fail "pkill -f run_local.sh left processes: $(pgrep -af "$WORK/byname/")"
for name in sup-1.2e11-L1 sup-1.2e11-L2; do
  grep -q "^preempted (SIGUSR1) after step" "$WORK/byname/logs/$name.log" || fail "$name did not checkpoint on pkill"
done
JOBS=2 "$WORK/byname/run_local.sh" >"$WORK/byname2.log" 2>&1 || { cat "$WORK/byname2.log"; fail "the rerun after pkill failed"; }
retort collect "$WORK/byname" | grep -q "2 runs: 2 complete" || fail "after pkill and the rerun: $(retort collect "$WORK/byname")"
echo "ok: pkill -f run_local.sh: both runs checkpoint, exit 75, nothing left running; the rerun finishes"

# 4. Slots take their GPUs from a CUDA_VISIBLE_DEVICES given to run_local.sh (two runs at once).
sed 's/^supervised: .*/supervised: {budgets: [1.2e10], sizes: [1, 2]}/; /^distillation:/,$d' "$WORK/sweep.yaml" >"$WORK/two.yaml"
retort sweep "$WORK/two.yaml" --out "$WORK/given" "${DATA[@]}" >/dev/null 2>&1
rm -f "$WORK/calls.log"
CUDA_VISIBLE_DEVICES=GPU-a,GPU-b,GPU-c,GPU-d JOBS=2 GPUS_PER_RUN=2 RETORT=$WORK/logging-retort \
  "$WORK/given/run_local.sh" >"$WORK/given.log" 2>&1 || { cat "$WORK/given.log"; fail "given GPUs: run_local.sh failed"; }
[ "$(cut -d' ' -f4 "$WORK/calls.log" | sort | tr '\n' ' ')" = "GPU-a,GPU-b GPU-c,GPU-d " ] ||
  fail "the slots did not take the given GPUs: $(cat "$WORK/calls.log")"
echo "ok: slots take their GPUs from the CUDA_VISIBLE_DEVICES given"
expect_fail 2 "^run_local.sh: JOBS·GPUS_PER_RUN = 4 GPUs, but CUDA_VISIBLE_DEVICES lists 3 \(0,1,2\)$" \
  env CUDA_VISIBLE_DEVICES=0,1,2 JOBS=2 GPUS_PER_RUN=2 "$WORK/long/run_local.sh"
for bad in 0 two; do
  expect_fail 2 "^run_local.sh: JOBS must be" env JOBS=$bad "$WORK/long/run_local.sh"
done
echo PASS
