// retort sweep SWEEP.yaml --out DIR [--set k=v]... [--shapes]
// Plans a sweep (scaling/sweep_plan.h) and writes it out (docs/SWEEPS.md):
//   configs/NAME.yaml   one retort config per run       plan.csv   every run and its compute
//   runs.tsv, stages/   run lists for the scripts       run_one.sh runs one run by name
//   run_local.sh        everything in order, resumable  submit.sh + submit.sbatch  Slurm arrays
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include "core/check.h"
#include "core/checkpoint.h"
#include "core/fs.h"
#include "core/hdf5.h"
#include "launch/commands.h"
#include "launch/sweep_replan.h"
#include "scaling/sweep_plan.h"

namespace retort {

namespace {

namespace stdfs = std::filesystem;

std::string num(double v, const char* fmt = "%.10g") {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

// A CSV field, quoted when it holds a comma, quote or newline.
std::string csv(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string sh_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string plan_csv(const SweepSpec& spec, const SweepPlan& plan) {
  std::string out =
      "name,stage,protocol,size,d_model,n_heads,N,N_nonemb,budget,tokens_per_param,D,steps,"
      "batch_tokens,warmup_steps,flops_per_token,C,budget_error,teacher,corpus,c_student,"
      "c_teacher_logits,c_teacher_pretrain,c_eq9,flops_mode,config,run_dir,data_epochs,branch_from,"
      "branch_step,c_spent,seed,point\n";
  const int64_t batch = spec.base.get_int("train.batch_tokens");
  const std::string mode = flops_mode_name(spec.flops);
  for (const PlannedRun& r : plan.runs) {
    const bool corpus = r.stage == Stage::Corpus;
    std::string err;
    if (r.budget > 0) err = num(r.compute / r.budget - 1, "%.6f");
    else if (r.tokens_per_param > 0) err = num(r.tokens / (r.tokens_per_param * r.model.n_params_nonemb()) - 1, "%.6f");
    out += str_cat(csv(r.name), ",", stage_name(r.stage), ",", r.protocol, ",", r.size, ",",
                   r.model.d_model, ",", r.model.n_heads, ",", r.model.n_params(), ",",
                   r.model.n_params_nonemb(), ",", r.budget > 0 ? num(r.budget) : "", ",",
                   r.tokens_per_param > 0 ? num(r.tokens_per_param) : "", ",", r.tokens, ",",
                   corpus ? "" : std::to_string(r.steps), ",", corpus ? "" : std::to_string(batch), ",",
                   corpus ? "" : std::to_string(r.warmup_steps), ",", num(r.flops_per_token), ",",
                   num(r.compute), ",", err, ",", r.teacher, ",", r.corpus, ",", num(r.c_student), ",",
                   num(r.c_teacher_logits), ",", num(r.c_teacher_pretrain), ",", num(r.c_eq9()), ",",
                   mode, ",", csv(r.config_path), ",", csv(r.run_dir), ",",
                   r.data_epochs >= 0 ? num(r.data_epochs, "%.6g") : "", ",", r.branch_of, ",",
                   r.branch_of.empty() ? "" : std::to_string(r.branch_step), ",", num(r.c_spent()), ",", r.seed,
                   ",", csv(r.point), "\n");
  }
  // One row per protocol: the compute of every distinct run it needs (Eq. 9 terms summed).
  for (const ProtocolTotal& t : plan.totals)
    out += str_cat("total:", t.protocol, ",total,", t.protocol, ",,,,,,,,,,,,,",
                   num(t.total()), ",,,,", num(t.c_student), ",", num(t.c_teacher_logits), ",",
                   num(t.c_teacher_pretrain), ",", num(t.total()), ",", mode, ",,,,,,,,\n");
  return out;
}

// Runs one planned run by name; shared by run_local.sh and submit.sbatch.
std::string run_one_sh(const SweepSpec& spec, const std::string& retort_bin) {
  return str_cat(R"SH(#!/usr/bin/env bash
# Runs one run of this sweep by name (written by `retort sweep`; see docs/SWEEPS.md).
# Skips it when already complete and continues it when interrupted (train/distill --resume;
# generate keeps the shards it finished).
# Preemption: SIGUSR1, SIGTERM or SIGINT to this script is passed on to the run as SIGUSR1
# (mpirun forwards SIGUSR1 to every rank, but kills them on SIGTERM): the run stops after its
# current step or shard, keeps a checkpoint (or its finished shards) and exits 75, and so does
# this script; running it again resumes. Exit codes: the run's (0 done, 75 preempted, 1 failed).
# Usage: run_one.sh NAME     env: RETORT (binary), RANKS (processes per run)
#        run_one.sh --complete NAME   exit 0 when the run is complete, else 1; runs nothing
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
RETORT=${RETORT:-)SH", sh_quote(retort_bin), R"SH(}
RANKS=${RANKS:-)SH", spec.ranks, R"SH(}
check_only=
[ "${1:-}" != --complete ] || { check_only=1; shift; }
name=${1:?usage: run_one.sh [--complete] NAME}
row=$(awk -F'\t' -v n="$name" '$1 == n' "$HERE/runs.tsv")
[ -n "$row" ] || { echo "run_one.sh: no run named '$name' in $HERE/runs.tsv" >&2; exit 1; }
IFS=$'\t' read -r _ cmd config rundir _ <<<"$row"

complete=
if [ "$cmd" = generate ]; then
  [ ! -f "$rundir/manifest.json" ] || complete=1
elif [ -f "$rundir/summary.json" ] && grep -Eq '"status": *"complete"' "$rundir/summary.json"; then
  complete=1
fi
[ -z "$check_only" ] || { [ -n "$complete" ]; exit; }
[ -z "$complete" ] || { echo "[sweep] $name: complete, skipping"; exit 0; }
args=("$cmd" "$config")
[ "$cmd" = generate ] || args+=(--resume)
launch=()
if [ "$RANKS" -gt 1 ]; then launch=(mpirun --allow-run-as-root --oversubscribe -np "$RANKS"); fi
echo "[sweep] $name: ${launch[*]:+${launch[*]} }retort ${args[*]}"
"${launch[@]}" "$RETORT" "${args[@]}" &
run=$!
trap 'kill -USR1 $run 2>/dev/null || true' USR1 TERM INT
while :; do  # wait returns early when a trap fires; wait again until the run has ended
  wait $run || true
  kill -0 $run 2>/dev/null || break
done
rc=0
wait $run || rc=$?
[ "$rc" != 75 ] || echo "[sweep] $name: preempted (exit 75); its checkpoint or finished shards are kept"
exit $rc
)SH");
}

// kStageLists as the scripts loop over them: "train train_branch corpus ...".
std::string stage_lists_words() {
  std::string words;
  for (const char* list : kStageLists) {
    if (!words.empty()) words += ' ';
    words += list;
  }
  return words;
}

std::string run_local_sh(const SweepSpec& spec) {
  return str_cat(R"SH(#!/usr/bin/env bash
# Runs every run of this sweep on this machine, list after list (train → train_branch →
# corpus → student → student_branch). Complete runs are skipped and interrupted ones resumed,
# so after an interruption just run it again. Logs: logs/NAME.log. Then: retort collect <this
# directory>.
# JOBS=N (default 1) runs up to N runs at once, each as soon as the run it reads has ended (a
# corpus its teacher, a student its corpus, a branch its trunk), each with OMP_NUM_THREADS =
# cores / (S · RANKS) unless OMP_NUM_THREADS is set, S being how many runs may run beside it
# from its start to its end, itself included, at most N (a teacher that every other run reads
# through its corpus gets all cores), and with GPUS_PER_RUN=G, its slot's G
# GPUs as CUDA_VISIBLE_DEVICES (slot k: entries k·G … k·G + G − 1 of the CUDA_VISIBLE_DEVICES
# this script was given, else of GPUs 0, 1, …). With N > 1 a run's output goes to its log only
# and a line marks its start and end.
# A run that exits 75 (preempted: its retort process got SIGUSR1/SIGTERM) is resumed at once,
# at most MAX_RESUMES times (default 10). SIGUSR1/SIGTERM/SIGINT to this script instead stops
# the sweep cleanly: the current runs checkpoint, and the script exits 75. After a failed run
# no other run starts; those running end, then the script exits 1. One run_local.sh per sweep:
# a second one exits 1 while this one runs.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MAX_RESUMES=${MAX_RESUMES:-10}
JOBS=${JOBS:-1}
GPUS_PER_RUN=${GPUS_PER_RUN:-0}
for v in JOBS GPUS_PER_RUN; do
  [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "run_local.sh: $v must be a whole number, got '${!v}'" >&2; exit 2; }
done
[ "$JOBS" -ge 1 ] || { echo "run_local.sh: JOBS must be at least 1" >&2; exit 2; }
if [ "$JOBS" -gt 1 ] && (( BASH_VERSINFO[0] * 100 + BASH_VERSINFO[1] < 501 )); then
  echo "run_local.sh: JOBS > 1 needs bash 5.1 or newer (wait -n -p); this is $BASH_VERSION" >&2
  exit 2
fi
RANKS=${RANKS:-)SH", spec.ranks, R"SH(}
share_threads=  # JOBS > 1 and no OMP_NUM_THREADS given: each run's from the runs beside it
[ "$JOBS" = 1 ] || [ -n "${OMP_NUM_THREADS:-}" ] || share_threads=$(nproc)
gpus=()
if [ "$GPUS_PER_RUN" -gt 0 ]; then
  if [ -n "${CUDA_VISIBLE_DEVICES:-}" ]; then
    IFS=, read -ra gpus <<<"$CUDA_VISIBLE_DEVICES"
    [ "${#gpus[@]}" -ge $((JOBS * GPUS_PER_RUN)) ] || {
      echo "run_local.sh: JOBS·GPUS_PER_RUN = $((JOBS * GPUS_PER_RUN)) GPUs, but CUDA_VISIBLE_DEVICES lists ${#gpus[@]} ($CUDA_VISIBLE_DEVICES)" >&2
      exit 2
    }
  else
    gpus=($(seq 0 $((JOBS * GPUS_PER_RUN - 1))))
  fi
fi
mkdir -p "$HERE/logs"
# One run_local.sh per sweep: a second would run the same runs into the same directories. The
# lock (flock(1)) is this script's alone (the runs do not inherit it: MPI's helper daemons
# would hold it past their run's end); each run's retort locks its own directory.
exec {lock}>>"$HERE/.run_local.lock"
flock -n "$lock" || {
  echo "run_local.sh: another run_local.sh is running this sweep ($(cat "$HERE/.run_local.lock")); wait for it to end" >&2
  exit 1
}
echo "pid $$ on host $(hostname) since $(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$HERE/.run_local.lock"

# run NAME SLOT [THREADS] (a background job): one run to its end, resumed at once after a
# preemption of its own; SIGUSR1 asks it to checkpoint and stop, and so does SIGTERM (which
# `pkill -f run_local.sh` or a TERM to the process group sends this job too: it must not end
# before its run).
# Exits with the run's code.
run() {
  local name=$1 slot=$2 stop=0 child= resumes=0 rc log tee_pid
  trap 'stop=1; [ -z "$child" ] || kill -USR1 "$child" 2>/dev/null || true' USR1 TERM
  [ -z "${3:-}" ] || export OMP_NUM_THREADS=$3
  if [ "$GPUS_PER_RUN" -gt 0 ]; then
    local mine=("${gpus[@]:slot * GPUS_PER_RUN:GPUS_PER_RUN}")
    export CUDA_VISIBLE_DEVICES=$(IFS=,; echo "${mine[*]}")
  fi
  while :; do
    tee_pid=
    if [ "$JOBS" = 1 ]; then
      exec {log}> >(tee -a "$HERE/logs/$name.log")
      tee_pid=$!
    else
      exec {log}>>"$HERE/logs/$name.log"
    fi
    bash "$HERE/run_one.sh" "$name" >&$log 2>&1 </dev/null {lock}>&- &
    child=$!
    while :; do wait "$child" || true; kill -0 "$child" 2>/dev/null || break; done
    rc=0
    wait "$child" || rc=$?
    child=
    exec {log}>&-
    [ -z "$tee_pid" ] || wait "$tee_pid" || true  # the log is complete before the next step reads it
    [ "$rc" = 75 ] && [ "$stop" = 0 ] && [ "$resumes" -lt "$MAX_RESUMES" ] || break
    resumes=$((resumes + 1))
    echo "[sweep] $name: preempted (exit 75); resuming it ($resumes of at most $MAX_RESUMES)"
  done
  exit "$rc"
}

declare -A running=() slot_of=()  # pid of each run's job → its name, its slot
stop=0 failed= stopped_in=
trap 'stop=1; for p in "${!running[@]}"; do kill -USR1 "$p" 2>/dev/null || true; done' USR1 TERM INT
# reap: waits until one run ends (or a signal arrives) and records how it ended.
reap() {
  local pid= rc=0 name p
  if [ "$JOBS" = 1 ]; then
    pid=${!running[*]}
    wait "$pid" || rc=$?
    ! kill -0 "$pid" 2>/dev/null || return 0  # a signal interrupted the wait
  else
    wait -n -p pid "${!running[@]}" 2>/dev/null || rc=$?
    if [ -z "${pid:-}" ] || [ -z "${running[$pid]:-}" ]; then
      # A signal interrupted the wait, or bash already reaped a job that ended meanwhile (then
      # wait -n no longer knows it): take such a job's saved status from a plain wait.
      pid=
      for p in "${!running[@]}"; do kill -0 "$p" 2>/dev/null || { pid=$p; break; }; done
      [ -n "$pid" ] || return 0
      rc=0
      wait "$pid" 2>/dev/null || rc=$?
    fi
  fi
  name=${running[$pid]}
  unset "running[$pid]" "slot_of[$pid]"
  if [ "$rc" = 75 ] && [ "$stop" = 1 ]; then
    stopped_in=$name
  elif [ "$rc" != 0 ]; then
    [ -n "$failed" ] || failed="$name failed (exit $rc; log: $HERE/logs/$name.log)"
  else
    ended[$name]=1
    [ "$JOBS" = 1 ] || echo "[sweep] $name: done"
  fi
}
# threads_for NAME: the cores over RANKS and over the runs that may run beside NAME (itself,
# those running, those pending that do not wait for it through any chain; at most JOBS).
threads_for() {
  local beside=$((1 + ${#running[@]})) p up per_run
  for p in "${pending[@]}"; do
    [ "$beside" -lt "$JOBS" ] || break
    up=$p
    while [ -n "$up" ] && [ "$up" != "$1" ]; do up=${waits_for[$up]:-}; done
    [ -n "$up" ] || beside=$((beside + 1))
  done
  [ "$beside" -le "$JOBS" ] || beside=$JOBS
  per_run=$((share_threads / (beside * RANKS)))
  echo $((per_run > 0 ? per_run : 1))
}
# Every run in list order (runs.tsv's); each starts once the run it waits for (runs.tsv's last
# column: a branch's trunk, a corpus's teacher, a student's corpus) has ended well: the first such
# run takes the next free slot. That run is always in an earlier list, so JOBS=1 runs the lists in order.
declare -A waits_for=() ended=()
pending=()
while IFS=$'\t' read -r name _ _ _ after; do pending+=("$name"); waits_for[$name]=$after; done <"$HERE/runs.tsv"
while :; do
  [ "$stop" = 0 ] && [ -z "$failed" ] || pending=()
  next=
  if [ "${#running[@]}" -lt "$JOBS" ]; then
    for i in "${!pending[@]}"; do
      after=${waits_for[${pending[$i]}]:-}
      if [ -z "$after" ] || [ -n "${ended[$after]:-}" ]; then next=$i; break; fi
    done
  fi
  if [ -n "$next" ]; then
    name=${pending[$next]}
    unset "pending[$next]"
    slot=0
    while printf '%s\n' "${slot_of[@]}" | grep -qx "$slot"; do slot=$((slot + 1)); done
    threads=
    [ -z "$share_threads" ] || threads=$(threads_for "$name")
    [ "$JOBS" = 1 ] || echo "[sweep] $name: started (slot $slot${threads:+, OMP_NUM_THREADS=$threads}; log: $HERE/logs/$name.log)"
    run "$name" "$slot" "$threads" &
    running[$!]=$name
    slot_of[$!]=$slot
  elif [ "${#running[@]}" -gt 0 ]; then
    reap
  else
    break
  fi
done
if [ "$stop" = 1 ]; then
  echo "[sweep] stopped on request${stopped_in:+ (in $stopped_in)}; rerun run_local.sh to continue" >&2
  exit 75
fi
if [ -n "$failed" ]; then
  echo "[sweep] $failed; rerun run_local.sh to continue" >&2
  exit 1
fi
if [ "${#pending[@]}" -gt 0 ]; then  # only with a runs.tsv edited by hand
  echo "[sweep] ${pending[*]}: what they wait for never ran (runs.tsv); rerun retort sweep" >&2
  exit 1
fi
echo "[sweep] done; results: retort collect $HERE"
)SH");
}

std::string submit_sbatch(const SweepSpec& spec, const std::string& dir) {
  const SlurmSpec& s = spec.slurm;
  std::string h = str_cat("#!/usr/bin/env bash\n#SBATCH --job-name=retort-", spec.name, "\n",
                          "#SBATCH --nodes=", s.nodes, "\n#SBATCH --ntasks-per-node=", s.ntasks_per_node,
                          "\n#SBATCH --time=", s.time, "\n");
  if (s.cpus_per_task > 0) h += str_cat("#SBATCH --cpus-per-task=", s.cpus_per_task, "\n");
  if (s.gpus_per_node > 0) h += str_cat("#SBATCH --gpus-per-node=", s.gpus_per_node, "\n");
  if (!s.partition.empty()) h += "#SBATCH --partition=" + s.partition + "\n";
  if (!s.account.empty()) h += "#SBATCH --account=" + s.account + "\n";
  h += "#SBATCH --output=" + dir + "/logs/slurm-%A_%a.out\n";
  h += "#SBATCH --open-mode=append               # a requeued task appends to its log\n";
  h += "#SBATCH --requeue                        # a preempted task requeues and resumes\n";
  h += "#SBATCH --signal=B:USR1@120              # time-limit warning: checkpoint and requeue\n";
  return h + str_cat(R"SH(# One array task per run of a stage list (written by `retort sweep`; see docs/SWEEPS.md).
# submit.sh submits each stage list as arrays of the runs that wait for the same run (afterok):
#   sbatch --array=INDICES submit.sbatch stages/LIST.txt   (INDICES: 0-based lines, e.g. 0-3 or 1,4)
# Preemption: SIGUSR1 to this script (the --signal warning above, or
# `scancel --signal=USR1 --batch JOBID_TASK`) reaches the run, which checkpoints (or keeps its
# finished shards) and exits 75; the task then requeues itself (`scontrol requeue`) and its
# next start resumes the run.
set -euo pipefail
HERE=)SH", sh_quote(dir), R"SH(
LIST=${1:?usage: sbatch --array=INDICES submit.sbatch stages/LIST.txt}
[ "${LIST:0:1}" = / ] || LIST=$HERE/$LIST
name=$(sed -n "$(( ${SLURM_ARRAY_TASK_ID:-0} + 1 ))p" "$LIST")
[ -n "$name" ] || { echo "no run at index ${SLURM_ARRAY_TASK_ID:-0} of $LIST" >&2; exit 1; }
[ -n "${SLURM_CPUS_PER_TASK:-}" ] && export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK
echo "[sweep] task ${SLURM_ARRAY_TASK_ID:-0} of job ${SLURM_ARRAY_JOB_ID:-?} on $(hostname): $name (start ${SLURM_RESTART_COUNT:-0})"
bash "$HERE/run_one.sh" "$name" &
run=$!
trap 'echo "[sweep] $name: SIGUSR1, asking it to checkpoint"; kill -USR1 $run 2>/dev/null || true' USR1
while :; do  # wait returns early when the trap fires; wait again until the run has ended
  wait $run || true
  kill -0 $run 2>/dev/null || break
done
rc=0
wait $run || rc=$?
if [ "$rc" = 75 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
  # this task only: task 0's SLURM_JOB_ID is also the array's id, which names every task
  task=$SLURM_JOB_ID
  [ -z "${SLURM_ARRAY_JOB_ID:-}" ] || task=${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}
  echo "[sweep] $name: preempted and checkpointed; requeueing job $task"
  scontrol requeue "$task"
fi
exit $rc
)SH");
}

std::string submit_sh() {
  return str_cat(R"SH(#!/usr/bin/env bash
# Submits this sweep to Slurm as job arrays, stage list after stage list (train, train_branch,
# corpus, student, student_branch). A run waits only for the run it reads (runs.tsv's last
# column: a branch its trunk, a corpus its teacher, a student its corpus): the runs of a list
# that wait for the same run form one array with --dependency=afterok:JOBID_TASK on that run's
# task, so a corpus starts as soon as its own teacher has trained, and a failed run holds back
# only the runs that need it. Those can then never start and are cancelled
# (--kill-on-invalid-dep=yes) instead of waiting in the queue; run submit.sh again after fixing
# the cause: complete runs are left out (a run waiting for one starts at once), interrupted
# ones resume from their checkpoints. It refuses while the last submission's arrays (jobs.tsv)
# are still queued or running.
# Usage: submit.sh [extra sbatch options]. Prints "LIST JOBID TASKS [after RUN]" per array and
# writes jobs.tsv: each run and its Slurm task (JOBID_INDEX, INDEX its line in stages/LIST.txt).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$HERE/logs"
# The last submission's arrays still queued or running: submitting again would run their runs
# twice, side by side.
if [ -s "$HERE/jobs.tsv" ]; then
  queued=$({ squeue -h -u "$(id -un)" -o %F 2>/dev/null || true; } | sort -u |
    awk 'NR == FNR { q[$1] = 1; next } { split($2, t, "_") } q[t[1]] && !seen[t[1]]++ { printf "%s%s", (n++ ? "," : ""), t[1] }' - "$HERE/jobs.tsv")
  [ -z "$queued" ] || {
    echo "submit.sh: jobs $queued of this sweep's last submission (jobs.tsv) are still queued or running; wait for them or scancel them, then submit again" >&2
    exit 1
  }
fi
declare -A task=()  # run name → JOBID_INDEX of its array task
: >"$HERE/jobs.tsv"
complete=" " n_complete=0  # complete runs, space-separated: not submitted
while IFS=$'\t' read -r name _; do
  ! bash "$HERE/run_one.sh" --complete "$name" </dev/null || { complete+="$name "; n_complete=$((n_complete + 1)); }
done <"$HERE/runs.tsv"
[ "$n_complete" = 0 ] || echo "submit.sh: $n_complete complete runs left out"
for stage in )SH", stage_lists_words(), R"SH(; do
  list=$HERE/stages/$stage.txt
  mapfile -t names <"$list"
  # One line per group of the list's incomplete runs that wait for the same incomplete run (or
  # for none): "COUNT INDICES AFTER", INDICES their 0-based lines as Slurm writes them (0-3,7);
  # groups in the order of their first run.
  groups=$(awk -F'\t' -v complete="$complete" 'NR == FNR { after[$1] = $5; next }
    $1 != "" && !index(complete, " " $1 " ") {
      a = after[$1]; if (index(complete, " " a " ")) a = ""
      if (!(a in n)) order[++g] = a; ids[a, n[a]++] = FNR - 1 }
    END { for (i = 1; i <= g; ++i) {
            a = order[i]; s = ""
            for (k = 0; k < n[a]; k = e + 1) {
              for (e = k; e + 1 < n[a] && ids[a, e + 1] == ids[a, e] + 1; ++e) {}
              s = s (k ? "," : "") ids[a, k] (e > k ? "-" ids[a, e] : "")
            }
            printf "%d\t%s\t%s\n", n[a], s, a
          } }' "$HERE/runs.tsv" "$list")
  while IFS=$'\t' read -r count indices after; do
    [ -n "$count" ] || continue
    dep=()
    if [ -n "$after" ]; then
      [ -n "${task[$after]:-}" ] ||
        { echo "submit.sh: runs of stages/$stage.txt wait for '$after', which no earlier list has" >&2; exit 1; }
      dep=(--dependency=afterok:${task[$after]} --kill-on-invalid-dep=yes)
    fi
    jid=$(sbatch --parsable "${dep[@]}" "$@" --array="$indices" "$HERE/submit.sbatch" "$list") ||
      { echo "submit.sh: sbatch failed for stages/$stage.txt; the arrays submitted before it are in jobs.tsv" >&2; exit 1; }
    jid=${jid%%;*}
    for range in ${indices//,/ }; do
      for ((i = ${range%-*}; i <= ${range#*-}; ++i)); do
        task[${names[$i]}]=${jid}_$i
        printf '%s\t%s\n' "${names[$i]}" "${jid}_$i" >>"$HERE/jobs.tsv"
      done
    done
    echo "$stage $jid $count${after:+ after $after}"
  done <<<"$groups"
done
[ -s "$HERE/jobs.tsv" ] || echo "submit.sh: every run is complete, nothing to submit; results: retort collect $HERE"
)SH");
}

// The length of a token dataset's `tokens` (SPEC §2) from its shape; no token is read.
int64_t token_count(const std::string& path) {
  Shape shape;
  try {
    shape = h5::File::open_read(path).shape("tokens");
  } catch (const Error& e) {
    throw Error(str_cat("data.train: ", e.what()));
  }
  if (shape.size() != 1) throw Error(str_cat("data.train: ", path, ": 'tokens' is not one-dimensional"));
  return shape[0];
}

// The data line of the plan and a warning naming the runs that read data.train more than once.
void report_repeated_data(const SweepPlan& plan, const std::string& train_path, int64_t tokens) {
  double most = 0;
  std::vector<const PlannedRun*> repeated;
  for (const PlannedRun& r : plan.runs) {
    if (r.stage == Stage::Student) continue;  // students read their corpus, not data.train
    most = std::max(most, r.data_epochs);
    if (r.data_epochs > 1) repeated.push_back(&r);
  }
  std::printf("data: %s: %lld tokens; the runs read it up to %.3g times (plan.csv: data_epochs)\n",
              train_path.c_str(), (long long)tokens, most);
  if (repeated.empty()) return;
  std::sort(repeated.begin(), repeated.end(),
            [](const PlannedRun* a, const PlannedRun* b) { return a->data_epochs > b->data_epochs; });
  std::string names;
  for (size_t i = 0; i < repeated.size() && i < 3; ++i)
    names += str_cat(i ? ", " : "", repeated[i]->name, " ", num(repeated[i]->data_epochs, "%.3g"), "x");
  std::fprintf(stderr, "warning: %zu runs read data.train more than once (%s%s); scaling laws assume data "
               "seen once: tokenize more text (about %s tokens for them all) or plan smaller budgets\n",
               repeated.size(), names.c_str(), repeated.size() > 3 ? ", ..." : "",
               format_flops(std::ceil(most * double(tokens))).c_str());
}

// Cooldown branches: how many, from how many trunks, and the training FLOPs they save; a
// warning for trunks that already finished without a branch point (replanned into a directory
// whose runs were planned without cooldown_branches): their branches would fail.
void report_branches(const SweepPlan& plan) {
  int64_t branches = 0, trunks = 0;
  double spent = 0, nominal = 0;
  std::vector<std::string> lacking;
  for (const PlannedRun& r : plan.runs) {
    if (r.stage == Stage::Corpus) continue;
    branches += !r.branch_of.empty();
    trunks += !r.keep_steps.empty();
    spent += r.c_spent();
    nominal += r.compute;
    if (!stdfs::exists(r.run_dir + "/summary.json")) continue;
    for (int64_t k : r.keep_steps)
      if (!stdfs::exists(checkpoint_step_dir(r.run_dir + "/checkpoints", k) + "/state.json")) {
        lacking.push_back(r.name);
        break;
      }
  }
  if (branches == 0) return;
  std::printf("cooldown branches: %lld runs start from %lld trunks at their decay; training takes %s FLOPs "
              "instead of %s (%.0f%% less; plan.csv: branch_from, c_spent)\n",
              (long long)branches, (long long)trunks, format_flops(spent).c_str(), format_flops(nominal).c_str(),
              100 * (1 - spent / nominal));
  for (const std::string& name : lacking)
    std::fprintf(stderr, "warning: %s already finished without the checkpoints its branches start from "
                 "(checkpoint.keep_steps; planned before cooldown_branches?): its branches will fail; move "
                 "runs/%s away to train it again, or plan without cooldown_branches\n", name.c_str(), name.c_str());
}

void write_script(const std::string& path, const std::string& text) {
  fs::write_file_atomic(path, text);
  stdfs::permissions(path, stdfs::perms::owner_exec | stdfs::perms::group_exec | stdfs::perms::others_exec,
                     stdfs::perm_options::add);
}

}  // namespace

int run_sweep(const std::string& sweep_path, const std::vector<std::string>& overrides,
              const std::string& out, bool shapes_only) {
  if (out.empty() && !shapes_only)
    throw ConfigError("retort sweep: --out DIR is required (or --shapes to list the family)");
  const SweepSpec spec = read_sweep(sweep_path, overrides);
  std::vector<int64_t> sizes;
  auto add = [&](const std::vector<int64_t>& v) {
    for (int64_t L : v)
      if (std::find(sizes.begin(), sizes.end(), L) == sizes.end()) sizes.push_back(L);
  };
  if (spec.supervised) add(spec.supervised->sizes);
  for (const DistillProtocol& p : spec.distillation) add(p.teachers.sizes), add(p.students.sizes);
  std::sort(sizes.begin(), sizes.end());
  std::printf("family: d_model = %lld·L, head_dim %lld, gqa_group %lld, vocab %lld, seq_len %lld; FLOPs/token: %s\n%s",
              (long long)spec.family.aspect, (long long)spec.family.head_dim,
              (long long)spec.family.gqa_group, (long long)spec.family.base.vocab_size,
              (long long)spec.family.base.seq_len, flops_mode_name(spec.flops),
              family_shapes_table(spec.family, sizes).c_str());
  if (shapes_only) return 0;

  for (const char* key : {"data.train", "data.val"}) {
    const std::string p = spec.base.get_string(key);
    if (p.empty() || !stdfs::exists(p))
      std::fprintf(stderr, "warning: %s is %s; the runs need it (set it in the sweep file's set: or with --set)\n",
                   key, p.empty() ? "not set" : ("'" + p + "', which does not exist").c_str());
  }
  SweepPlan plan = plan_sweep(spec, out);
  const std::string train_path = spec.base.get_string("data.train");
  if (!train_path.empty() && stdfs::exists(train_path)) {
    const int64_t n = token_count(train_path);
    plan_data_epochs(spec, plan, n);
    report_repeated_data(plan, train_path, n);
  }
  check_replan(spec, plan);  // before anything is written
  const std::string dir = plan.out_dir;
  stdfs::create_directories(dir + "/configs");
  stdfs::create_directories(dir + "/stages");
  stdfs::create_directories(dir + "/runs");
  std::string tsv;
  std::map<std::string, std::string> lists;
  for (const char* list : kStageLists) lists[list] = "";
  for (const PlannedRun& r : plan.runs) {
    fs::write_file_atomic(r.config_path, planned_config_yaml(spec, plan, r));
    tsv += str_cat(r.name, "\t", stage_command(r.stage), "\t", r.config_path, "\t", r.run_dir, "\t",
                   r.waits_for(), "\n");
    lists[r.stage_list()] += r.name + "\n";
  }
  fs::write_file_atomic(dir + "/runs.tsv", tsv);
  for (const auto& [list, names] : lists) fs::write_file_atomic(dir + "/stages/" + list + ".txt", names);
  fs::write_file_atomic(dir + "/plan.csv", plan_csv(spec, plan));
  fs::write_file_atomic(dir + "/sweep.yaml", fs::read_file(sweep_path));
  const std::string bin = stdfs::canonical("/proc/self/exe").string();
  write_script(dir + "/run_one.sh", run_one_sh(spec, bin));
  write_script(dir + "/run_local.sh", run_local_sh(spec));
  write_script(dir + "/submit.sbatch", submit_sbatch(spec, dir));
  write_script(dir + "/submit.sh", submit_sh());

  int64_t counts[3] = {0, 0, 0};
  for (const PlannedRun& r : plan.runs) ++counts[static_cast<int>(r.stage)];
  std::printf("planned %zu runs (%lld train, %lld corpus, %lld student) into %s\n", plan.runs.size(),
              (long long)counts[0], (long long)counts[1], (long long)counts[2], dir.c_str());
  auto list = [](const std::vector<int64_t>& v) {
    std::string out;
    for (int64_t k : v) out += (out.empty() ? "" : ", ") + std::to_string(k);
    return out;
  };
  if (!spec.seeds.empty())
    std::printf("seeds: %zu replicates of %zu runs (train.seed %s; names end -sK; plan.csv: seed, point)\n",
                spec.seeds.size(), plan.runs.size() / spec.seeds.size(), list(spec.seeds).c_str());
  if (!spec.student_seeds.empty())
    std::printf("student_seeds: %lld students × %zu seeds (train.seed %s; names end -sK; plan.csv: seed, point), "
                "each reading its teacher's one corpus\n",
                (long long)counts[2] / (long long)spec.student_seeds.size(), spec.student_seeds.size(),
                list(spec.student_seeds).c_str());
  for (const ProtocolTotal& t : plan.totals)
    std::printf("  %-32s %3lld runs  C = %s FLOPs (student %s, teacher logits %s, teacher pretraining %s)\n",
                t.protocol.c_str(), (long long)t.runs, format_flops(t.total()).c_str(),
                format_flops(t.c_student).c_str(), format_flops(t.c_teacher_logits).c_str(),
                format_flops(t.c_teacher_pretrain).c_str());
  report_branches(plan);
  std::printf("next: %s/run_local.sh   or   %s/submit.sh   then   retort collect %s\n", dir.c_str(),
              dir.c_str(), dir.c_str());
  return 0;
}

}  // namespace retort
