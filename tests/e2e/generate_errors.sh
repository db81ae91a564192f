#!/usr/bin/env bash
# retort generate: bad keys (exit 2, naming the key), bad teacher or data (exit 1, naming the
# file), and the reader's errors on the result.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok"
retort train "$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5" \
  --set train.steps=2 --set eval.every=0 --set "run.dir=$WORK/teacher" >/dev/null
G=("$TINY" --set "generate.teacher=$WORK/teacher" --set "generate.data=$WORK/tok/val.h5"
   --set "generate.out=$WORK/out" --set generate.num_sequences=2 --set generate.k=4)

expect_fail 2 "key 'generate.mode': must be score or sample" retort generate "${G[@]}" --set generate.mode=beam
expect_fail 2 "generate.kk.*generate.k" retort generate "${G[@]}" --set generate.kk=3
expect_fail 2 "key 'generate.teacher': must be set" retort generate "$TINY" --set "generate.data=x" --set "generate.out=y"
expect_fail 2 "key 'generate.k': 600 exceeds the teacher's vocab_size 512" retort generate "${G[@]}" --set generate.k=600
expect_fail 2 "key 'generate.seq_len': 66 exceeds the teacher's seq_len 64 \\+ 1" retort generate "${G[@]}" --set generate.seq_len=66
expect_fail 2 "key 'generate.top_p': must be in \(0, 1\]" retort generate "${G[@]}" --set generate.top_p=0
expect_fail 2 "key 'generate.logprob_dtype': must be f16 or f32" retort generate "${G[@]}" --set generate.logprob_dtype=bf16
expect_fail 2 "key 'generate.precision': must be fp32 or bf16, got 'fp16'" retort generate "${G[@]}" --set generate.precision=fp16
expect_fail 2 "key 'generate.prompt_len': 65 must be < seq_len 65" retort generate "${G[@]}" --set generate.mode=sample --set generate.prompt_len=65
expect_fail 2 "key 'generate.num_sequences': 100000 sequences need windows of .*val.h5" retort generate "${G[@]}" --set generate.num_sequences=100000
expect_fail 2 "key 'generate.num_sequences': must be set when sampling from EOS" retort generate "${G[@]}" --set generate.num_sequences=0 --set generate.mode=sample --set generate.prompt_len=0
expect_fail 2 "key 'parallel.tp': generate is data-parallel only" retort generate "${G[@]}" --set parallel.tp=2
expect_fail 1 "$WORK/nope: no such checkpoint directory" retort generate "${G[@]}" --set "generate.teacher=$WORK/nope"
echo "not hdf5" > "$WORK/bad.h5"
expect_fail 1 "$WORK/bad.h5: not an HDF5 file" retort generate "${G[@]}" --set "generate.data=$WORK/bad.h5"
echo "x" > "$WORK/file"
expect_fail 2 "key 'generate.out': .*/file exists and is not a directory" retort generate "${G[@]}" --set "generate.out=$WORK/file"
[ ! -e "$WORK/out" ] || fail "a failed run created the output directory"
echo PASS
