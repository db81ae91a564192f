# Helpers for the end-to-end tests (sourced). Environment: RETORT_BIN, RETORT_SOURCE_DIR, WORK.
set -euo pipefail
: "${RETORT_BIN:?}" "${RETORT_SOURCE_DIR:?}" "${WORK:?}"
SRC=$RETORT_SOURCE_DIR
TINY=$SRC/configs/tiny.yaml
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK"

fail() { echo "FAIL: $*" >&2; exit 1; }
skip() { echo "SKIP: $*"; exit 77; }  # ctest: SKIP_RETURN_CODE 77 (tests/e2e.cmake)
retort() { "$RETORT_BIN" "$@"; }

# expect_fail CODE PATTERN CMD...: CMD must exit with CODE and print PATTERN (grep -E) on stderr
# as one line.
expect_fail() {
  local code=$1 pattern=$2; shift 2
  local rc=0
  "$@" >"$WORK/out.txt" 2>"$WORK/err.txt" || rc=$?
  [ "$rc" = "$code" ] || { cat "$WORK/err.txt" >&2; fail "expected exit $code, got $rc: $*"; }
  grep -qE "$pattern" "$WORK/err.txt" || { cat "$WORK/err.txt" >&2; fail "stderr lacks /$pattern/: $*"; }
  echo "ok: exit $code /$pattern/"
}

# json FILE EXPR: evaluates a Python expression over the parsed JSON `j`.
json() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"; }

# tiny_tokens DIR [DOCS]: a small synthetic corpus (40 documents, about 11k training tokens,
# unless DOCS says otherwise) tokenized into DIR (tokenizer.model, train.h5, val.h5).
tiny_tokens() {
  python3 "$SRC/tests/e2e/make_corpus.py" "$WORK/corpus" "${2:-40}" >/dev/null
  retort tokenize "$TINY" --set "tokenize.inputs=[$WORK/corpus]" --set "tokenize.out=$1" >/dev/null
}

# tiny_sweep FILE: a sweep file on tiny.yaml (run with tiny_tokens' data via --set): 2 budgets ×
# 2 sizes and a fixed-teacher protocol (an L1 teacher at 4 tokens per parameter, one student
# budget): 7 runs of about a second each (sweep_seeds.sh, sweep_parallel.sh).
tiny_sweep() {
  cat >"$1" <<EOF
base: $SRC/configs/tiny.yaml
set: {train.batch_tokens: 256, train.micro_batch: 0, eval.max_windows: 4, checkpoint.keep_last: 1}
family: {aspect: 32, head_dim: 16, seq_len: 64}
warmup_fraction: 0.1
evals_per_run: 1
checkpoints_per_run: 1
supervised: {budgets: [1.2e10, 2.4e10], sizes: [1, 2]}
distillation:
  - protocol: fixed_teacher_isoflop_students
    teachers: {sizes: [1], tokens_per_param: 4}
    students: {budgets: [6e9], sizes: [1]}
EOF
}

# compare_runs RUN_A RUN_B [LOSS_RTOL PARAM_RTOL STEP MIN_PARAM_RTOL LOOSE]: a multi-rank run
# against its one-process control: per-step losses within LOSS_RTOL (1e-5) relative and the
# step-STEP (default: RUN_A's last checkpoint) parameters of RUN_A (consolidated checkpoint)
# and RUN_B within PARAM_RTOL (1e-4) relative norm; with MIN_PARAM_RTOL, some tensor must
# differ by at least that much; LOOSE "SUFFIX=RTOL[,SUFFIX=RTOL…]": tensors whose names end in
# a SUFFIX within its RTOL instead (the first that matches).
compare_runs() {
  local loss_rtol=${3:-1e-5} param_rtol=${4:-1e-4} step=${5:-} min_rtol=${6:-0} loose=${7:-=}
  if [ -z "$step" ]; then
    step=$(basename "$(ls -d "$1"/checkpoints/step_* | tail -n 1)")
    step=$((10#${step#step_}))
  fi
  local ckpt_b=$2/checkpoints/$(printf step_%08d "$step")
  if [ ! -f "$ckpt_b/model.h5" ]; then  # a sharded checkpoint: compare its consolidated export
    rm -rf "$2/export$step" && retort export "$ckpt_b" --out "$2/export$step" >/dev/null
    ckpt_b=$2/export$step
  fi
  /usr/bin/python3 - "$1" "$2" "$ckpt_b" "$loss_rtol" "$param_rtol" "$step" "$min_rtol" "$loose" <<'PY'
import json, sys, h5py, numpy as np
a, b = sys.argv[1], sys.argv[2]
loss_rtol, param_rtol, step, min_rtol = float(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7])
loose = [(s, float(r)) for s, r in (item.split("=") for item in sys.argv[8].split(",")) if s]
def losses(run):
    return {(l["step"], "val" if "val_loss" in l else "train"): l.get("loss", l.get("val_loss"))
            for l in map(json.loads, open(run + "/metrics.jsonl"))}
la, lb = losses(a), losses(b)
assert la.keys() == lb.keys(), (sorted(la), sorted(lb))
worst = max(abs(la[k] - lb[k]) / abs(la[k]) for k in la)
assert worst < loss_rtol, f"loss differs by {worst:.3g} relative"
fa = h5py.File(a + f"/checkpoints/step_{step:08d}/model.h5")
fb = h5py.File(sys.argv[3] + "/model.h5")
assert sorted(fa) == sorted(fb)
most = 0.0
for name in fa:
    x, y = np.asarray(fa[name], np.float64), np.asarray(fb[name], np.float64)
    rel = np.linalg.norm(x - y) / np.linalg.norm(x)
    tol = next((r for s, r in loose if name.endswith(s)), param_rtol)
    assert rel < tol, f"{name}: parameters differ by {rel:.3g} relative norm"
    most = max(most, rel) if tol == param_rtol else most
assert most >= min_rtol, f"parameters differ by at most {most:.3g} relative norm, expected >= {min_rtol:g}"
print(f"ok: {b}: {len(la)} losses within {worst:.2g} relative, {len(fa)} tensors within "
      f"{param_rtol:g} (largest difference {most:.2g})")
PY
}

# same_checkpoint DIR_A DIR_B WHAT: the two checkpoint dirs hold byte-identical .h5 files.
same_checkpoint() {
  local a=$1 b=$2 files
  files=$(cd "$a" && ls *.h5)
  [ "$files" = "$(cd "$b" && ls *.h5)" ] || fail "$3: different checkpoint files: $files"
  for f in $files; do cmp "$a/$f" "$b/$f" || fail "$3 is not bitwise identical ($f)"; done
  echo "ok: $3 is bitwise identical ($(echo $files | wc -w) files)"
}

# ---- stalled ranks (stalled_rank.sh, gpu_stalled_rank.sh) ------------------------------------
# They use MPIRUN, ARGS, TIMEOUT and MARGIN from the script, and `trap cleanup_victims EXIT`.
# Stopped ranks are never left behind, whatever happens (only our own: the pid may be reused).
VICTIMS=()
cleanup_victims() {
  local p
  for p in "${VICTIMS[@]}"; do
    if tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | grep -q "run.dir=$WORK/"; then
      kill -CONT "$p" 2>/dev/null || true
      kill -KILL "$p" 2>/dev/null || true
    fi
  done
}

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
