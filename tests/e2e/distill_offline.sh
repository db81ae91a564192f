#!/usr/bin/env bash
# retort distill, offline (a SPEC §5 corpus written with h5py by make_distill_corpus.py):
# both tail options train and log loss/ce/kl; dp2 and fsdp2 equal one process (losses within
# 1e-5 relative, step-20 parameters within 1e-4); --resume is bitwise; lambda = 0 is plain CE
# on the corpus tokens; vocabulary, tokenizer and temperature mismatches and a truncated shard
# are one-line errors naming the files.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok"
MAKE=(/usr/bin/python3 "$SRC/tests/e2e/make_distill_corpus.py")
"${MAKE[@]}" "$WORK/corpus" "$WORK/tok/train.h5" 48 65 16 shards=3 >/dev/null
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
ARGS=("$TINY" --set "data.val=$WORK/tok/val.h5" --set "distill.corpus=$WORK/corpus"
      --set distill.lambda=0.5 --set train.log_every=1 --set train.steps=20
      --set checkpoint.every=10 --set checkpoint.keep_last=0)

for tail in renormalize bucket; do
  retort distill "${ARGS[@]}" --set distill.tail=$tail --set "run.dir=$WORK/one_$tail" >/dev/null
  python3 - "$WORK/one_$tail/metrics.jsonl" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
train = [l for l in lines if "loss" in l]
assert len(train) == 20 and all(k in train[0] for k in ("loss", "ce", "kl", "lr", "tokens", "tokens_per_s")), train[0]
assert all(l["kl"] > 0 for l in train), "kl must be positive"
assert train[-1]["kl"] < train[0]["kl"], (train[0]["kl"], train[-1]["kl"])   # the student learns
# loss = 0.5 ce + 0.5 kl (tau 1) + z_loss·lse² (small, positive)
for l in train:
    assert 0 <= l["loss"] - 0.5 * (l["ce"] + l["kl"]) < 0.05 * l["loss"], l
assert any("val_loss" in l for l in lines)
PY
  [ "$(json "$WORK/one_$tail/summary.json" "j['distill']['mode']")" = offline ] || fail "summary lacks distill mode"
done
# The two tail options are different losses.
[ "$(json "$WORK/one_renormalize/summary.json" "j['final_val_loss']")" != \
  "$(json "$WORK/one_bucket/summary.json" "j['final_val_loss']")" ] || fail "tail options gave identical runs"

# Meshes equal one process (bucket tail).
"${MPIRUN[@]}" -np 2 "$RETORT_BIN" distill "${ARGS[@]}" --set distill.tail=bucket --set parallel.dp=2 \
  --set "run.dir=$WORK/dp2" >/dev/null
compare_runs "$WORK/one_bucket" "$WORK/dp2"
"${MPIRUN[@]}" -np 2 "$RETORT_BIN" distill "${ARGS[@]}" --set distill.tail=bucket --set parallel.fsdp=2 \
  --set "run.dir=$WORK/fsdp2" >/dev/null
compare_runs "$WORK/one_bucket" "$WORK/fsdp2"

# Bitwise resume from step 10.
cp -r "$WORK/one_bucket" "$WORK/resume"
rm -rf "$WORK/resume/checkpoints/step_00000020" "$WORK/resume/summary.json"
retort distill "${ARGS[@]}" --set distill.tail=bucket --set "run.dir=$WORK/resume" --resume > "$WORK/resume.log"
grep -q "resuming from .*step_00000010" "$WORK/resume.log" || fail "did not resume from step 10"
# 20 steps of 8 sequences over the corpus' 48: 3.33 epochs, said and recorded.
grep -q "^data: corpus .*/corpus: 48 sequences of 64 targets; 20 steps x 8 sequences = 3.33 epochs" "$WORK/resume.log" ||
  fail "no corpus data line: $(grep '^data' "$WORK/resume.log")"
[ "$(json "$WORK/one_bucket/summary.json" "round(j['data_epochs'], 2)")" = 3.33 ] || fail "summary.json lacks data_epochs"
for f in model.h5 optimizer.h5; do
  cmp "$WORK/one_bucket/checkpoints/step_00000020/$f" "$WORK/resume/checkpoints/step_00000020/$f" || fail "$f differs after resume"
done
python3 - "$WORK/one_bucket/metrics.jsonl" "$WORK/resume/metrics.jsonl" <<'PY'
import json, sys
def f(p): return [(l["step"], l.get("loss"), l.get("kl"), l.get("val_loss")) for l in map(json.loads, open(p))]
a, b = f(sys.argv[1]), f(sys.argv[2])
assert len(a) == 22 and a == b, [(x, y) for x, y in zip(a, b) if x != y][:3]
PY

# lambda = 0: plain CE on the corpus tokens (no kl); loss = ce + z.
retort distill "${ARGS[@]}" --set distill.lambda=0 --set train.steps=3 --set "run.dir=$WORK/seqkd" >/dev/null
python3 - "$WORK/seqkd/metrics.jsonl" <<'PY'
import json, sys
train = [l for l in map(json.loads, open(sys.argv[1])) if "loss" in l]
assert all("kl" not in l and 0 <= l["loss"] - l["ce"] < 0.01 * l["loss"] for l in train), train
PY

# Errors: one line naming both files; exit 2 for mismatches, 1 for a damaged corpus.
"${MAKE[@]}" "$WORK/corpus_v600" "$WORK/tok/train.h5" 8 65 4 vocab=600 >/dev/null
expect_fail 2 "vocabulary mismatch: .*corpus_v600/manifest.json.* is 600 but model.vocab_size of the student .*tiny.yaml.* is 512" \
  retort distill "${ARGS[@]}" --set "distill.corpus=$WORK/corpus_v600" --set "run.dir=$WORK/bad1"
"${MAKE[@]}" "$WORK/corpus_tok" "$WORK/tok/train.h5" 8 65 4 tokenizer=0123abcd >/dev/null
expect_fail 2 "tokenizer mismatch: .*corpus_tok/manifest.json has tokenizer_sha256 0123abcd but .*tok/val.h5 has [0-9a-f]{64}" \
  retort distill "${ARGS[@]}" --set "distill.corpus=$WORK/corpus_tok" --set "run.dir=$WORK/bad2"
"${MAKE[@]}" "$WORK/corpus_t2" "$WORK/tok/train.h5" 8 65 4 tau=2 >/dev/null
expect_fail 2 "distill.temperature.*differs from the corpus' logit_temperature 2" \
  retort distill "${ARGS[@]}" --set "distill.corpus=$WORK/corpus_t2" --set "run.dir=$WORK/bad3"
expect_fail 2 "distill.tail.*renormalize or bucket" retort distill "${ARGS[@]}" --set distill.tail=drop --set "run.dir=$WORK/bad4"
expect_fail 2 "distill.corpus.*distill.teacher" retort distill "${ARGS[@]}" --set distill.corpus= --set "run.dir=$WORK/bad5"
cp -r "$WORK/corpus" "$WORK/corpus_trunc"
truncate -s 2000 "$WORK/corpus_trunc/shard-00001.h5"
expect_fail 1 "corpus_trunc/shard-00001.h5" retort distill "${ARGS[@]}" --set "distill.corpus=$WORK/corpus_trunc" --set "run.dir=$WORK/bad6"
[ ! -e "$WORK/bad1/checkpoints" ] && [ ! -e "$WORK/bad6/checkpoints" ] || fail "a failed start left checkpoints"
echo PASS
