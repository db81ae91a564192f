#!/usr/bin/env bash
# A real single-node Slurm (Debian slurm-wlm + munge) runs a tiny IsoFLOP sweep: `retort sweep`
# plans configs/sweeps/isoflop-tiny.yaml, submit.sh submits its array, and after the jobs end
# `retort collect` must see every run complete; so must the same sweep with cooldown branches
# (each trunk's branches an array after that trunk's task). A distillation sweep whose one
# teacher fails still trains the other teacher's corpus and student (each run waits for the run
# it reads only), and the failed teacher's are cancelled, not left pending; submitted again
# after the fix, only those three run. Then launch/slurm/train.sbatch trains tiny.yaml on 2
# tasks (dp2, mpirun inside the allocation) to completion, and a preempted (SIGUSR1) run
# requeues itself and resumes; so does a preempted array task of a sweep (submit.sbatch).
# Everything lives in a temp dir (munge key and socket, slurm.conf with free non-default
# ports, state, logs); no system file changes. Daemons
# are stopped by the pids in their pid files, never by name. Needs root (as slurmd does).
# Setup follows /work/shared/notes/slurm-local.md.
source "$(dirname "$0")/lib.sh"

for tool in munged slurmctld slurmd sbatch squeue sinfo scontrol; do
  command -v "$tool" >/dev/null ||
    fail "'$tool' not found: install Debian slurm-wlm and munge (launch/install-deps.sh)"
done
[ "$(id -u)" = 0 ] || fail "needs root (slurmd runs jobs as their user; this test runs them as root)"

S=$(mktemp -d /tmp/retort-slurm.XXXXXX)   # short path: the munge socket must fit in sun_path
export SLURM_CONF=$S/slurm.conf
stop_daemons() {
  for pidfile in "$S/slurmd.pid" "$S/slurmctld.pid" "$S/munged.pid"; do
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  done
  rm -rf "$S"
}
trap stop_daemons EXIT

# Shows what the daemons and jobs said, then fails.
slurm_fail() {
  echo "---- squeue" >&2; squeue -a 2>&1 | tail -20 >&2 || true
  echo "---- sinfo" >&2; sinfo 2>&1 | tail -5 >&2 || true
  echo "---- scontrol show job" >&2; scontrol show job 2>&1 | tail -40 >&2 || true
  for log in "$S"/*.log "$WORK"/sweep/logs/*; do
    [ -f "$log" ] && { echo "---- $log" >&2; tail -15 "$log" >&2; }
  done
  fail "$*"
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("", 0)); print(s.getsockname()[1])'; }
HOST=$(hostname -s)
CTLD_PORT=$(free_port)
SLURMD_PORT=$(free_port)
[ "$CTLD_PORT" != "$SLURMD_PORT" ] || SLURMD_PORT=$((CTLD_PORT + 1))

# 1. munge with a private key and socket.
dd if=/dev/urandom of="$S/munge.key" bs=1024 count=1 status=none
chmod 0400 "$S/munge.key"
munged --key-file="$S/munge.key" --socket="$S/munge.socket" --pid-file="$S/munged.pid" \
  --log-file="$S/munged.log" --seed-file="$S/munged.seed" -f ||
  slurm_fail "munged did not start (log: $S/munged.log)"

# 2. slurm.conf in the temp dir.
mkdir -p "$S/state" "$S/spool"
cat >"$SLURM_CONF" <<EOF
ClusterName=retort-test
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
AuthInfo=socket=$S/munge.socket
CredType=cred/munge
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/slurmctld.log
SlurmdLogFile=$S/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=$HOST CPUs=$(nproc --all) RealMemory=8000 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

# 3. The daemons; wait (bounded) for the node to come up idle.
slurmctld -f "$SLURM_CONF" || slurm_fail "slurmctld did not start"
slurmd -f "$SLURM_CONF" || slurm_fail "slurmd did not start"
for i in $(seq 60); do
  sinfo -h -o %T 2>/dev/null | grep -q idle && break
  [ "$i" = 60 ] && slurm_fail "the Slurm node did not become idle within 30 s"
  sleep 0.5
done
echo "ok: slurm up on $HOST (ports $CTLD_PORT/$SLURMD_PORT)"

# 4. Plan the tiny sweep and submit its array.
tiny_tokens "$WORK/tok"
retort sweep "$SRC/configs/sweeps/isoflop-tiny.yaml" --out "$WORK/sweep" \
  --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5" >"$WORK/plan.log"
n_runs=$(grep -c . "$WORK/sweep/stages/train.txt")
[ "$n_runs" = 4 ] || fail "expected 4 planned runs, got $n_runs"
"$WORK/sweep/submit.sh" >"$WORK/submit.log" 2>&1 || { cat "$WORK/submit.log" >&2; slurm_fail "submit.sh failed"; }
cat "$WORK/submit.log"
read -r stage jobid tasks <"$WORK/submit.log"
[ "$stage $tasks" = "train 4" ] || fail "submit.sh should submit one array of 4 tasks: $(cat "$WORK/submit.log")"

# 5. Wait (at most 5 minutes) for the array to leave the queue.
for i in $(seq 300); do
  [ -z "$(squeue -h -j "$jobid" 2>/dev/null)" ] && break
  [ "$i" = 300 ] && slurm_fail "job $jobid still queued or running after 5 minutes"
  sleep 1
done

# 6. collect sees every run complete.
retort collect "$WORK/sweep" | tee "$WORK/collect.log"
grep -q "4 runs: 4 complete, 0 incomplete, 0 missing" "$WORK/collect.log" ||
  slurm_fail "not every run completed under Slurm"
n_logs=$(ls "$WORK"/sweep/logs/slurm-"$jobid"_*.out | wc -l)
[ "$n_logs" = 4 ] || slurm_fail "expected 4 task logs for job $jobid, found $n_logs"
python3 - "$WORK/sweep/results.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 4 and all(r["status"] == "complete" for r in rows), rows
for r in rows:
    assert abs(float(r["C"]) / float(r["budget"]) - 1) <= 0.01, r
    assert float(r["final_val_loss"]) > 0, r
PY

# 6b. The same sweep with cooldown branches under wsd: submit.sh chains each trunk's branches,
#     an array per trunk, on that trunk's task (afterok:JOB_TASK); a branch started early would
#     find no checkpoint at its branch point and fail.
sed -e "s#^base: ../tiny.yaml#base: $SRC/configs/tiny.yaml#" -e 's/^supervised:/cooldown_branches: true\nsupervised:/' \
  "$SRC/configs/sweeps/isoflop-tiny.yaml" >"$WORK/isoflop-branches.yaml"
retort sweep "$WORK/isoflop-branches.yaml" --out "$WORK/sweep_branches" --set train.lr_schedule=wsd \
  --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5" >"$WORK/plan-branches.log"
"$WORK/sweep_branches/submit.sh" >"$WORK/submit-branches.log" 2>&1 ||
  { cat "$WORK/submit-branches.log" >&2; slurm_fail "submit.sh (cooldown branches) failed"; }
cat "$WORK/submit-branches.log"
trunks=($(cat "$WORK/sweep_branches/stages/train.txt"))
[ "$(cut -d' ' -f1,3- "$WORK/submit-branches.log" | tr '\n' ';')" = \
  "train 2;train_branch 1 after ${trunks[0]};train_branch 1 after ${trunks[1]};" ] ||
  fail "submit.sh should submit the trunks, then each trunk's branches: $(cat "$WORK/submit-branches.log")"
wait_queue_empty() {  # wait_queue_empty WHAT: at most 5 minutes for every job to leave the queue
  for i in $(seq 300); do
    [ -z "$(squeue -h 2>/dev/null)" ] && return 0
    [ "$i" = 300 ] && slurm_fail "$1: jobs still queued or running after 5 minutes"
    sleep 1
  done
}
wait_queue_empty "the branched sweep"
retort collect "$WORK/sweep_branches" | grep -q "4 runs: 4 complete, 0 incomplete, 0 missing" ||
  slurm_fail "not every run of the branched sweep completed: $(retort collect "$WORK/sweep_branches")"
for job in $(awk '$1 == "train_branch" {print $2}' "$WORK/submit-branches.log"); do
  grep -q "^branching from .*/checkpoints/step_" "$WORK"/sweep_branches/logs/slurm-"$job"_*.out ||
    slurm_fail "the branch task of job $job did not start from its trunk's checkpoint"
done
echo "ok: cooldown branches under Slurm (each trunk's branches afterok on its task)"

# 6c. Per-run dependencies: two teachers, each with its corpus and student; teacher-L2's config
#     is broken after planning, so its task fails at once. teacher-L1's corpus and student still
#     run (each waits for its own run only; stage-wide afterok would have held them forever),
#     and teacher-L2's corpus and student are cancelled rather than left pending.
tiny_tokens "$WORK/tok300" 300  # enough windows for the students' corpora
tiny_sweep "$WORK/sweep-deps.yaml"
sed -i -e '/^supervised:/d' -e 's/teachers: {sizes: \[1\]/teachers: {sizes: [1, 2]/' "$WORK/sweep-deps.yaml"
retort sweep "$WORK/sweep-deps.yaml" --out "$WORK/sweep_deps" \
  --set "data.train=$WORK/tok300/train.h5" --set "data.val=$WORK/tok300/val.h5" >"$WORK/plan-deps.log"
echo "not_a_key: 1" >>"$WORK/sweep_deps/configs/teacher-L2-M4.yaml"
"$WORK/sweep_deps/submit.sh" >"$WORK/submit-deps.log" 2>&1 ||
  { cat "$WORK/submit-deps.log" >&2; slurm_fail "submit.sh (per-run dependencies) failed"; }
cat "$WORK/submit-deps.log"
[ "$(cut -d' ' -f1,3- "$WORK/submit-deps.log" | tr '\n' ';')" = "train 2;corpus 1 after teacher-L1-M4;\
corpus 1 after teacher-L2-M4;student 1 after corpus-teacher-L1-M4;student 1 after corpus-teacher-L2-M4;" ] ||
  fail "submit.sh should submit each corpus after its teacher and each student after its corpus"
[ "$(wc -l <"$WORK/sweep_deps/jobs.tsv")" = 6 ] || fail "jobs.tsv should list 6 runs: $(cat "$WORK/sweep_deps/jobs.tsv")"
wait_queue_empty "the sweep with a failing teacher"
retort collect "$WORK/sweep_deps" >"$WORK/collect-deps.log" || true
python3 - "$WORK/sweep_deps/results.csv" <<'PY' || { cat "$WORK/collect-deps.log" >&2; slurm_fail "per-run dependencies"; }
import csv, sys
status = {r["name"]: r["status"] for r in csv.DictReader(open(sys.argv[1]))}
assert status["teacher-L1-M4"] == "complete" and status["student-ftis-teacher-L1-M4-6e9-L1"] == "complete", status
assert status["teacher-L2-M4"] != "complete" and status["student-ftis-teacher-L2-M4-6e9-L1"] == "missing", status
PY
[ -f "$WORK/sweep_deps/runs/corpus-teacher-L1-M4/manifest.json" ] || slurm_fail "teacher-L1-M4's corpus was not written"
[ ! -e "$WORK/sweep_deps/runs/corpus-teacher-L2-M4" ] || slurm_fail "teacher-L2-M4's corpus ran after its teacher failed"
for run in corpus-teacher-L2-M4 student-ftis-teacher-L2-M4-6e9-L1; do
  task=$(awk -v n="$run" '$1 == n {print $2}' "$WORK/sweep_deps/jobs.tsv")
  scontrol show job "$task" | grep -q "JobState=CANCELLED" ||
    slurm_fail "$run ($task) should be cancelled once its dependency failed: $(scontrol show job "$task" | grep -o 'JobState=[A-Z_]*')"
done
echo "ok: per-run dependencies under Slurm (a failed teacher cancels only its own corpus and student)"
# Fixed and submitted again: only the three runs that did not complete, the corpus after the
# teacher and the student after the corpus.
sed -i '/^not_a_key: 1$/d' "$WORK/sweep_deps/configs/teacher-L2-M4.yaml"
"$WORK/sweep_deps/submit.sh" >"$WORK/resubmit-deps.log" 2>&1 ||
  { cat "$WORK/resubmit-deps.log" >&2; slurm_fail "submit.sh again (per-run dependencies) failed"; }
cat "$WORK/resubmit-deps.log"
[ "$(cut -d' ' -f1,3- "$WORK/resubmit-deps.log" | tr '\n' ';')" = "submit.sh: complete runs left out;train 1;\
corpus 1 after teacher-L2-M4;student 1 after corpus-teacher-L2-M4;" ] &&
  grep -q "^submit.sh: 3 complete runs left out$" "$WORK/resubmit-deps.log" ||
  fail "the resubmission should submit only the 3 incomplete runs"
wait_queue_empty "the resubmitted sweep"
retort collect "$WORK/sweep_deps" | grep -q "4 runs: 4 complete, 0 incomplete, 0 missing" ||
  slurm_fail "the resubmitted sweep did not complete: $(retort collect "$WORK/sweep_deps")"
"$WORK/sweep_deps/submit.sh" | grep -q "^submit.sh: every run is complete, nothing to submit" ||
  fail "a complete sweep should submit nothing"
echo "ok: submit.sh again after the fix: only the incomplete runs, in order; then nothing"

# 7. launch/slurm/train.sbatch: 2 tasks, dp2, submitted from the source dir (its default
#    binary path is relative to the submit dir; the test's binary is given by RETORT).
train_job=$(cd "$SRC" && sbatch --parsable --ntasks-per-node=2 --cpus-per-task=1 --time=00:10:00 \
  --output="$WORK/train-%j.out" \
  --export=ALL,RETORT="$RETORT_BIN",OMPI_ALLOW_RUN_AS_ROOT=1,OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
  launch/slurm/train.sbatch "$TINY" --set "data.train=$WORK/tok/train.h5" \
  --set "data.val=$WORK/tok/val.h5" --set parallel.dp=2 --set train.steps=20 \
  --set "run.dir=$WORK/slurm_train") || slurm_fail "sbatch train.sbatch failed"
for i in $(seq 300); do
  [ -z "$(squeue -h -j "$train_job" 2>/dev/null)" ] && break
  [ "$i" = 300 ] && slurm_fail "train job $train_job still queued or running after 5 minutes"
  sleep 1
done
[ -f "$WORK/slurm_train/summary.json" ] || { cat "$WORK/train-$train_job.out" >&2; slurm_fail "train.sbatch did not finish its run"; }
[ "$(json "$WORK/slurm_train/summary.json" 'len(j["memory"])')" = 2 ] || slurm_fail "train.sbatch did not run 2 ranks"
grep -q "2 ranks on 1 node" "$WORK/train-$train_job.out" || slurm_fail "train.sbatch log lacks its header"
echo "ok: train.sbatch ran dp2 under Slurm (job $train_job)"

# 8. Preemption under Slurm: SIGUSR1 to the batch script of a long run (as --signal=B:USR1 or
#    `scancel --signal=USR1 --batch` deliver it) → the ranks checkpoint and exit 75 → the
#    script requeues the job → it resumes from that checkpoint and finishes.
pre_job=$(cd "$SRC" && sbatch --parsable --ntasks-per-node=2 --cpus-per-task=1 --time=00:10:00 \
  --output="$WORK/preempt-%j.out" --open-mode=append \
  --export=ALL,RETORT="$RETORT_BIN",OMPI_ALLOW_RUN_AS_ROOT=1,OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
  launch/slurm/train.sbatch "$TINY" --set "data.train=$WORK/tok/train.h5" \
  --set "data.val=$WORK/tok/val.h5" --set parallel.dp=2 --set train.steps=400 \
  --set checkpoint.every=0 --set eval.every=0 --set train.log_every=1 \
  --set "run.dir=$WORK/slurm_preempt") || slurm_fail "sbatch (preemption) failed"
for i in $(seq 600); do
  [ "$({ wc -l <"$WORK/slurm_preempt/metrics.jsonl"; } 2>/dev/null || echo 0)" -ge 5 ] && break
  [ "$i" = 600 ] && slurm_fail "the preemption job did not start training within 60 s"
  sleep 0.1
done
scancel --signal=USR1 --batch "$pre_job" || slurm_fail "scancel --signal=USR1 failed"

# 9. The same for a sweep's array task (submit.sbatch), while job 8 waits to start again (a
#    requeued job waits a while; the two waits overlap): a two-run sweep whose task 0 is long
#    enough to be caught mid-run; it checkpoints, requeues itself (only itself: task 1 runs
#    once) and resumes, and a job that depends on the array (afterok) runs after it. While it
#    runs, submit.sh again is refused (its runs would run twice).
cat >"$WORK/sweep-pre.yaml" <<EOF
name: pre
base: $SRC/configs/tiny.yaml
set: {train.batch_tokens: 256, train.micro_batch: 0, train.log_every: 10, eval.max_windows: 2}
family: {aspect: 32, head_dim: 16, seq_len: 64}
evals_per_run: 1
checkpoints_per_run: 1
supervised: {budgets: [1.2e11, 1.2e10], sizes: [1]}
slurm: {nodes: 1, cpus_per_task: 1, time: "00:10:00"}
EOF
retort sweep "$WORK/sweep-pre.yaml" --out "$WORK/sweep_pre" \
  --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5" >"$WORK/plan-pre.log"
"$WORK/sweep_pre/submit.sh" >"$WORK/submit-pre.log" 2>&1 ||
  { cat "$WORK/submit-pre.log" >&2; slurm_fail "submit.sh (preemption sweep) failed"; }
read -r _ sweep_job _ <"$WORK/submit-pre.log"
# a next run as submit.sh chains it (afterok on the task, cancelled if that can never hold): it
# must still run after the requeue
next_job=$(sbatch --parsable --dependency=afterok:"${sweep_job}_0" --kill-on-invalid-dep=yes --output="$WORK/next-%j.out" \
  --wrap "echo next stage ran") || slurm_fail "sbatch of the dependent job failed"
pre_run=$WORK/sweep_pre/runs/$(head -1 "$WORK/sweep_pre/stages/train.txt")
for i in $(seq 900); do
  [ "$({ wc -l <"$pre_run/metrics.jsonl"; } 2>/dev/null || echo 0)" -ge 2 ] && break
  [ "$i" = 900 ] && slurm_fail "the sweep's task did not start training within 90 s"
  sleep 0.1
done
# submit.sh again while that array runs would run its runs twice: refused, jobs.tsv kept
cp "$WORK/sweep_pre/jobs.tsv" "$WORK/jobs-pre.tsv"
expect_fail 1 "^submit.sh: jobs $sweep_job of this sweep's last submission \(jobs.tsv\) are still queued or running; wait for them or scancel them, then submit again$" \
  "$WORK/sweep_pre/submit.sh"
cmp -s "$WORK/jobs-pre.tsv" "$WORK/sweep_pre/jobs.tsv" || fail "the refused submit.sh changed jobs.tsv"
scancel --signal=USR1 --batch "${sweep_job}_0" || slurm_fail "scancel --signal=USR1 ${sweep_job}_0 failed"

for i in $(seq 300); do
  [ -f "$WORK/slurm_preempt/summary.json" ] && [ -z "$(squeue -h -j "$pre_job" 2>/dev/null)" ] && break
  [ "$i" = 300 ] && { cat "$WORK"/preempt-*.out >&2; slurm_fail "the preempted job did not requeue and finish within 5 minutes"; }
  sleep 1
done
grep -q "preempted and checkpointed; requeueing" "$WORK/preempt-$pre_job.out" || slurm_fail "no requeue in the job log"
grep -q "resuming from .*step_" "$WORK/preempt-$pre_job.out" || slurm_fail "the requeued job did not resume"
echo "ok: SIGUSR1 under Slurm → checkpoint, exit 75, requeue, resume, done (job $pre_job)"

for i in $(seq 300); do
  [ -z "$(squeue -h -j "$sweep_job" 2>/dev/null)" ] && break
  [ "$i" = 300 ] && slurm_fail "the preempted sweep task did not requeue and finish within 5 minutes"
  sleep 1
done
for i in $(seq 60); do
  [ -z "$(squeue -h -j "$next_job" 2>/dev/null)" ] && break
  squeue -h -o %r -j "$next_job" | grep -q DependencyNeverSatisfied &&
    slurm_fail "the requeue broke the next stage's afterok dependency"
  [ "$i" = 60 ] && slurm_fail "the dependent job did not run within 60 s"
  sleep 1
done
grep -q "next stage ran" "$WORK/next-$next_job.out" || slurm_fail "the dependent job did not run"
log=$WORK/sweep_pre/logs/slurm-${sweep_job}_0.out
grep -q "preempted (SIGUSR1) after step" "$log" || slurm_fail "the sweep task did not stop on SIGUSR1"
grep -q "preempted and checkpointed; requeueing job ${sweep_job}_0" "$log" || slurm_fail "the sweep task did not requeue itself"
grep -q "(start 1)" "$log" || slurm_fail "the sweep task did not start a second time"
grep -q "resuming from .*step_" "$log" || slurm_fail "the requeued sweep task did not resume"
grep -q "(start 1)" "$WORK/sweep_pre/logs/slurm-${sweep_job}_1.out" && slurm_fail "task 1 was requeued with task 0"
retort collect "$WORK/sweep_pre" | grep -q "2 runs: 2 complete, 0 incomplete, 0 missing" ||
  slurm_fail "the preempted sweep run is not complete: $(retort collect "$WORK/sweep_pre")"
echo "ok: sweep array task: SIGUSR1 → checkpoint, exit 75, scontrol requeue, resume, done (job ${sweep_job}_0)"
echo PASS
