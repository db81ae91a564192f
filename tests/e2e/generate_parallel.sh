#!/usr/bin/env bash
# retort generate on 1 rank and on 2 ranks (mpirun) writes the same corpus, in score and sample
# mode (3 shards: uneven split), and every stored row is the teacher's top-k log-softmax
# recomputed in float64 PyTorch (float16: within its rounding bound 2^-11·|lp| + 1e-4; float32: 2e-5;
# generate.precision bf16: 1e-2).
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok"
retort train "$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5" \
  --set train.steps=10 --set eval.every=0 --set "run.dir=$WORK/teacher" >/dev/null
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
G=("$TINY" --set "generate.teacher=$WORK/teacher" --set "generate.data=$WORK/tok/val.h5"
   --set generate.k=8 --set generate.seq_len=24 --set generate.shard_sequences=5 --set generate.batch=3)
CHECK=(/usr/bin/python3 "$SRC/tests/e2e/check_corpus.py")

# score mode: 13 windows -> shards of 5, 5, 3
retort generate "${G[@]}" --set generate.num_sequences=13 --set "generate.out=$WORK/score1" >/dev/null
"${MPIRUN[@]}" -np 2 "$RETORT_BIN" generate "${G[@]}" --set generate.num_sequences=13 \
  --set "generate.out=$WORK/score2" >/dev/null
"${CHECK[@]}" same "$WORK/score1" "$WORK/score2"
"${CHECK[@]}" teacher "$WORK/score1" "$WORK/teacher/checkpoints/step_00000010" 1e-4
[ "$(json "$WORK/score1/manifest.json" "j['mode'], j['num_sequences'], len(j['shards'])")" = "score 13 3" ] \
  || fail "score manifest"
ls "$WORK/score2" | grep -q tmp && fail "temporary files left behind"

# sample mode (prompts of 6 tokens, temperature/top-k/top-p), float32 log-probs
S=(--set generate.mode=sample --set generate.prompt_len=6 --set generate.temperature=0.9
   --set generate.top_k=40 --set generate.top_p=0.95 --set generate.seed=7 --set generate.num_sequences=12
   --set generate.logprob_dtype=f32 --set generate.logit_temperature=2)
retort generate "${G[@]}" "${S[@]}" --set "generate.out=$WORK/sample1" >/dev/null
"${MPIRUN[@]}" -np 2 "$RETORT_BIN" generate "${G[@]}" "${S[@]}" --set "generate.out=$WORK/sample2" >/dev/null
"${CHECK[@]}" same "$WORK/sample1" "$WORK/sample2"
"${CHECK[@]}" teacher "$WORK/sample1" "$WORK/teacher/checkpoints/step_00000010" 2e-5
/usr/bin/python3 - "$WORK/sample1" "$WORK/tok/val.h5" <<'PY'
import sys, h5py, numpy as np
c, data = sys.argv[1], h5py.File(sys.argv[2])["tokens"][()]
f = h5py.File(c + "/shard-00001.h5")
t, p = f["tokens"][()], f["prompt_len"][()]
assert (p == 6).all(), p
for j in range(t.shape[0]):  # sequence 5 + j: prompt = data window 5 + j
    i = 5 + j
    assert (t[j, :6] == data[i * 24 : i * 24 + 6]).all(), j
assert f.attrs["mode"] == "sample" and f.attrs["sample_top_k"] == 40 and f.attrs["seed"] == 7
assert f["topk_logprobs"].dtype == np.float32
print("ok: prompts and attributes")
PY
# bf16 products (generate.precision: bf16, emulated on the CPU): the same corpus on 1 and 2
# ranks, within bf16 rounding of the float64 teacher, recorded as its teacher_precision
retort generate "${G[@]}" "${S[@]}" --set generate.precision=bf16 --set "generate.out=$WORK/bf16_1" >/dev/null
"${MPIRUN[@]}" -np 2 "$RETORT_BIN" generate "${G[@]}" "${S[@]}" --set generate.precision=bf16 \
  --set "generate.out=$WORK/bf16_2" >/dev/null
"${CHECK[@]}" same "$WORK/bf16_1" "$WORK/bf16_2"
"${CHECK[@]}" teacher "$WORK/bf16_1" "$WORK/teacher/checkpoints/step_00000010" 1e-2  # max 2e-3 seen
"${CHECK[@]}" teacher "$WORK/bf16_1" "$WORK/teacher/checkpoints/step_00000010" 2e-5 2>/dev/null \
  && fail "the bf16 corpus is the fp32 teacher's to 2e-5: its products were not rounded"
[ "$(json "$WORK/bf16_1/manifest.json" "j['teacher_precision']")" = bf16 ] || fail "bf16 manifest"
[ "$(json "$WORK/sample1/manifest.json" "j['teacher_precision']")" = fp32 ] || fail "fp32 manifest"
# a different seed gives a different corpus
retort generate "${G[@]}" "${S[@]}" --set generate.seed=8 --set "generate.out=$WORK/sample3" >/dev/null
"${CHECK[@]}" same "$WORK/sample1" "$WORK/sample3" 2>/dev/null && fail "seed 8 equals seed 7"
# bench/generate.sh (its GPU run is docs/GPU.md's check.sh bench): one JSON line per mode
RETORT_BIN="$RETORT_BIN" bash "$SRC/bench/generate.sh" --config "$TINY" --device cpu --sequences 16 \
  --out "$WORK/bench" > "$WORK/bench.jsonl"
python3 - "$WORK/bench.jsonl" <<'PY' || fail "bench/generate.sh output"
import json, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
assert [(r["mode"], r["batch"]) for r in runs] == [("score", 8), ("sample", 8), ("sample", 64)], runs
assert [r["tokens"] for r in runs] == [16 * 65, 2 * 65, 8 * 65], runs
assert all(r["tok_per_s"] > 0 and r["device"] == "cpu" for r in runs), runs
PY
echo PASS
