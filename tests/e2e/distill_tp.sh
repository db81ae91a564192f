#!/usr/bin/env bash
# retort distill under tensor parallelism (vocabulary-parallel KD loss): offline (renormalize
# and bucket) and online (a teacher trained on tp2, so its checkpoint is sharded, loaded as tp
# slices) on tp2, tp2+sp and dp2×tp2 (online also fsdp2×tp2+sp) equal one process: per-step
# losses within 1e-5 relative, step-20 parameters within 1e-4 relative norm. A teacher whose
# d_ff tp does not divide is a one-line config error naming its config.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
mesh() {  # mesh CONTROL NAME RANKS SETTINGS... -- ARGS...: distill on a mesh, compare with CONTROL
  local control=$1 name=$2 np=$3; shift 3
  local sets=(); while [ "$1" != -- ]; do sets+=(--set "parallel.$1"); shift; done; shift
  "${MPIRUN[@]}" -np "$np" "$RETORT_BIN" distill "$@" "${sets[@]}" --set "run.dir=$WORK/$name" >/dev/null
  compare_runs "$WORK/$control" "$WORK/$name"
}

# Offline: the corpus' top-k; both tails.
/usr/bin/python3 "$SRC/tests/e2e/make_distill_corpus.py" "$WORK/corpus" "$WORK/tok/train.h5" 48 65 16 shards=3 >/dev/null
OFF=("$TINY" --set "data.val=$WORK/tok/val.h5" --set "distill.corpus=$WORK/corpus" --set distill.lambda=0.5
     --set train.log_every=1 --set train.steps=20 --set checkpoint.every=10 --set checkpoint.keep_last=0
     --set eval.max_windows=4 --set train.micro_batch=2)
for tail in renormalize bucket; do
  retort distill "${OFF[@]}" --set distill.tail=$tail --set "run.dir=$WORK/off_$tail" >/dev/null
done
mesh off_renormalize off_tp2 2 tp=2 -- "${OFF[@]}" --set distill.tail=renormalize
mesh off_bucket off_tp2sp 2 tp=2 sp=true -- "${OFF[@]}" --set distill.tail=bucket
mesh off_bucket off_dp2tp2 4 dp=2 tp=2 -- "${OFF[@]}" --set distill.tail=bucket

# Online: the teacher trained on tp2 (sharded checkpoint); the student narrower, another seed.
DATA=(--set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5")
"${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "$TINY" "${DATA[@]}" --set train.steps=10 --set parallel.tp=2 \
  --set "run.dir=$WORK/teacher" >/dev/null
ls "$WORK/teacher/checkpoints/step_00000010"/shard-*.h5 >/dev/null || fail "the teacher checkpoint is not sharded"
ON=("$TINY" "${DATA[@]}" --set "distill.teacher=$WORK/teacher" --set distill.lambda=0.7
    --set distill.temperature=2 --set model.d_model=32 --set train.seed=5 --set train.log_every=1
    --set train.steps=20 --set checkpoint.every=10 --set checkpoint.keep_last=0
    --set eval.max_windows=4 --set train.micro_batch=2)
retort distill "${ON[@]}" --set "run.dir=$WORK/on" >/dev/null
[ "$(json "$WORK/on/summary.json" "j['distill']['mode']")" = online ] || fail "summary lacks distill mode"
mesh on on_tp2 2 tp=2 -- "${ON[@]}"
mesh on on_tp2sp 2 tp=2 sp=true -- "${ON[@]}"
mesh on on_dp2tp2 4 dp=2 tp=2 -- "${ON[@]}"
mesh on on_fsdp2tp2sp 4 fsdp=2 tp=2 sp=true -- "${ON[@]}"

# A teacher that the tp degree does not split: a config error naming the teacher's config.
retort train "$TINY" "${DATA[@]}" --set model.d_ff=91 --set train.steps=1 --set "run.dir=$WORK/teacher_odd" >/dev/null
expect_fail 2 "teacher_odd/.*config.yaml: parallel.tp = 2 needs the model's .*d_ff \(91\)" \
  "${MPIRUN[@]}" -np 2 "$RETORT_BIN" distill "${ON[@]}" --set parallel.tp=2 \
  --set "distill.teacher=$WORK/teacher_odd" --set "run.dir=$WORK/bad"
echo PASS
