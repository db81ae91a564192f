#!/usr/bin/env bash
# Wall time of a sweep under `run_local.sh JOBS=2`, three ways, REPS times each, interleaved:
#   barrier  stage barriers (every run of a list waits for the whole list before; run_local.sh as
#            commit 2f3de30 wrote it), each run on cores / 2 threads;
#   waits    each run starting once the run it reads has ended (this tree), cores / 2 threads
#            (OMP_NUM_THREADS given: the allocation before the next);
#   shared   this tree as it runs by default: each run's threads shared only with the runs that
#            may run beside it (all cores for a run that every pending run waits for).
# The sweep: supervised wsd runs with cooldown branches (3 budgets × sizes 1–3) and two
# fixed-ratio teachers (L1, L3), each with a corpus and two students; 17 runs. With `distill`
# as a third argument, the sweep is configs/sweeps/distill-cpu-student-seeds.yaml instead (one
# teacher, its corpus, 27 students; 29 runs) and barrier is left out. Prints the medians, their
# ratios, and whether every run's final loss agrees.
# Usage (TOKENS_DIR: train.h5 and val.h5, e.g. the quickstart's):
#   bench/sweep_schedule.sh TOKENS_DIR [REPS=3] [distill]
set -euo pipefail
tok=$(cd "$1" && pwd) reps=${2:-3}
src=$(cd "$(dirname "$0")/.." && pwd)
bin=$(realpath "${RETORT_BIN:-$src/build/retort}")
work=$(mktemp -d)
half=$(( $(env -u OMP_NUM_THREADS nproc) / 2 ))
variants="barrier waits shared"
if [ "${3:-}" = distill ]; then
  variants="waits shared"
  sed "s|^base: .*|base: $src/configs/quickstart.yaml|; s|runs/quickstart/tokens|$tok|" \
    "$src/configs/sweeps/distill-cpu-student-seeds.yaml" >"$work/sweep.yaml"
else
cat >"$work/sweep.yaml" <<EOF
base: $src/configs/quickstart.yaml
set: {data.train: $tok/train.h5, data.val: $tok/val.h5, train.batch_tokens: 1024, train.lr: 3.0e-3,
      train.lr_schedule: wsd, eval.max_windows: 8, checkpoint.keep_last: 1}
warmup_steps: 10
evals_per_run: 1
checkpoints_per_run: 1
cooldown_branches: true
family: {aspect: 32, head_dim: 32, seq_len: 256}
supervised: {budgets: [6e11, 1.2e12, 2.4e12], sizes: [1, 2, 3]}
distillation:
  - protocol: fixed_teacher_isoflop_students
    teachers: {sizes: [1, 3], tokens_per_param: 2}
    students: {budgets: [3e11, 6e11], sizes: [1]}
EOF
fi
# The stage-barrier run_local.sh: the three raw strings of run_local_sh() at 2f3de30, joined
# with what that version put between them (RANKS, the list names).
git -C "$src" show 2f3de30:launch/sweep_command.cpp | /usr/bin/python3 -c '
import re, sys
s = sys.stdin.read()
body = s[s.index("std::string run_local_sh("):s.index("std::string submit_sbatch(")]
a, b, c = re.findall(r"R\"SH\((.*?)\)SH\"", body, re.S)
print(a + "1" + b + "train train_branch corpus student student_branch" + c, end="")' >"$work/barrier_run_local.sh"
for r in $(seq "$reps"); do
  for v in $variants; do
    d=$work/$v$r
    "$bin" sweep "$work/sweep.yaml" --out "$d" >/dev/null 2>&1
    [ "$v" != barrier ] || cp "$work/barrier_run_local.sh" "$d/run_local.sh"
    threads=(-u OMP_NUM_THREADS)
    [ "$v" != waits ] || threads=(OMP_NUM_THREADS=$(( half > 0 ? half : 1 )))
    start=$(date +%s.%N)
    env "${threads[@]}" JOBS=2 "$d/run_local.sh" >"$d.log" 2>&1
    echo "$v $start $(date +%s.%N)" >>"$work/times"
    "$bin" collect "$d" >/dev/null
  done
done
/usr/bin/python3 - "$work" "$reps" $variants <<'PY'
import csv, statistics, sys
work, reps, variants = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
t = {}
for v, s, e in (l.split() for l in open(f"{work}/times")):
    t.setdefault(v, []).append(float(e) - float(s))
med = {v: statistics.median(x) for v, x in t.items()}
loss = lambda d: {r["name"]: r["final_val_loss"] for r in csv.DictReader(open(f"{work}/{d}/results.csv"))}
same = all(loss(f"{v}{r}") == loss(f"waits1") for v in variants for r in range(1, reps + 1))
for v in variants:
    print(f"{v:8s} median {med[v]:7.1f} s  ({', '.join(f'{x:.1f}' for x in t[v])})")
ratios = [f"{a} / {b}: {med[a] / med[b]:.3f}" for a, b in (("waits", "barrier"), ("shared", "waits"))
          if a in med and b in med]
print(f"{'; '.join(ratios)}; final losses identical: {same}")
PY
rm -rf "$work"
