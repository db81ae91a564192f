#!/usr/bin/env bash
# retort distill, online (a live teacher checkpoint, exact KL over the vocabulary): dp2 and
# fsdp2 equal one process (losses within 1e-5 relative, step-20 parameters within 1e-4);
# --resume is bitwise; a teacher on corpus tokens runs; a teacher of another vocabulary or
# tokenizer is a one-line error naming both files.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
DATA=(--set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5")
retort train "$TINY" "${DATA[@]}" --set train.steps=10 --set "run.dir=$WORK/teacher" >/dev/null
# The student: narrower than the teacher, another seed.
ARGS=("$TINY" "${DATA[@]}" --set "distill.teacher=$WORK/teacher" --set distill.lambda=0.7
      --set distill.temperature=2 --set model.d_model=32 --set train.seed=5 --set train.log_every=1
      --set train.steps=20 --set checkpoint.every=10 --set checkpoint.keep_last=0)

retort distill "${ARGS[@]}" --set "run.dir=$WORK/one" >/dev/null
python3 - "$WORK/one/metrics.jsonl" <<'PY'
import json, sys
train = [l for l in map(json.loads, open(sys.argv[1])) if "loss" in l]
assert len(train) == 20 and all(l["kl"] > 0 for l in train), train[0]
assert train[-1]["kl"] < train[0]["kl"], (train[0]["kl"], train[-1]["kl"])
PY
[ "$(json "$WORK/one/summary.json" "j['distill']['mode']")" = online ] || fail "summary lacks distill mode"
"${MPIRUN[@]}" -np 2 "$RETORT_BIN" distill "${ARGS[@]}" --set parallel.dp=2 --set "run.dir=$WORK/dp2" >/dev/null
compare_runs "$WORK/one" "$WORK/dp2"
"${MPIRUN[@]}" -np 2 "$RETORT_BIN" distill "${ARGS[@]}" --set parallel.fsdp=2 --set "run.dir=$WORK/fsdp2" >/dev/null
compare_runs "$WORK/one" "$WORK/fsdp2"

cp -r "$WORK/one" "$WORK/resume"
rm -rf "$WORK/resume/checkpoints/step_00000020" "$WORK/resume/summary.json"
retort distill "${ARGS[@]}" --set "run.dir=$WORK/resume" --resume >/dev/null
for f in model.h5 optimizer.h5; do
  cmp "$WORK/one/checkpoints/step_00000020/$f" "$WORK/resume/checkpoints/step_00000020/$f" || fail "$f differs after resume"
done

# Online teacher on the tokens of a corpus.
/usr/bin/python3 "$SRC/tests/e2e/make_distill_corpus.py" "$WORK/corpus" "$WORK/tok/train.h5" 16 65 4 >/dev/null
retort distill "${ARGS[@]}" --set "distill.corpus=$WORK/corpus" --set train.steps=3 --set "run.dir=$WORK/on_corpus" >/dev/null
[ "$(json "$WORK/on_corpus/summary.json" "j['distill']['mode']")" = online ] || fail "teacher on corpus tokens"

# Mismatches.
retort train "$TINY" "${DATA[@]}" --set model.vocab_size=600 --set train.steps=1 --set "run.dir=$WORK/teacher600" >/dev/null
expect_fail 2 "vocabulary mismatch: model.vocab_size of the teacher .*teacher600/checkpoints/step_00000001/config.yaml\) is 600 but model.vocab_size of the student .* is 512" \
  retort distill "${ARGS[@]}" --set "distill.teacher=$WORK/teacher600" --set "run.dir=$WORK/bad1"
/usr/bin/python3 - "$WORK/tok/val.h5" "$WORK/other_val.h5" <<'PY'
import shutil, sys, h5py
shutil.copy(sys.argv[1], sys.argv[2])
with h5py.File(sys.argv[2], "a") as f:
    f.attrs["tokenizer_sha256"] = "f" * 64
PY
retort train "$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/other_val.h5" --set train.steps=1 \
  --set "run.dir=$WORK/teacher_tok" >/dev/null
expect_fail 2 "tokenizer mismatch: .*other_val.h5 has tokenizer_sha256 f{64} but .*tok/val.h5 has [0-9a-f]{64}" \
  retort distill "${ARGS[@]}" --set "distill.teacher=$WORK/teacher_tok" --set "run.dir=$WORK/bad2"
expect_fail 2 "distill.lambda.*online teacher" retort distill "${ARGS[@]}" --set distill.lambda=0 --set "run.dir=$WORK/bad3"
echo PASS
