#!/usr/bin/env bash
# Bad input: each error path gives one clear line naming the file/key, the documented exit
# code (2 config/usage, 1 runtime), and leaves existing outputs untouched.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok"
DATA=(--set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5")

# --- config errors (exit 2) ---
printf 'model:\n  d_model: [1, 2\n' > bad.yaml
expect_fail 2 "bad.yaml:[0-9]+:[0-9]+: malformed YAML" retort train bad.yaml
printf 'train:\n  lrr: 0.1\n' > typo.yaml
expect_fail 2 "typo.yaml: unknown key 'train.lrr' \(did you mean 'train.lr'\?\)" retort train typo.yaml
expect_fail 2 "key 'train.steps': expected an integer, got 'ten'" retort train "$TINY" --set train.steps=ten
expect_fail 2 "unknown key 'model.d_modl'.*did you mean 'model.d_model'" retort info "$TINY" --set model.d_modl=3
expect_fail 2 "model.n_heads" retort info "$TINY" --set model.d_model=66 --set model.n_heads=4
expect_fail 2 "key 'bench.ceiling_n': must be >= 0" retort bench "$TINY" --set bench.ceiling_n=-1
expect_fail 2 "key 'train.attention': must be auto, cudnn or plain, got 'flash'" \
  retort train "$TINY" "${DATA[@]}" --set train.attention=flash --set "run.dir=$WORK/r_att"
expect_fail 2 "key 'train.matmul_tuning': must be heuristic or timed, got 'fast'" \
  retort train "$TINY" "${DATA[@]}" --set train.matmul_tuning=fast --set "run.dir=$WORK/r_tune"
expect_fail 2 "model.n_kv_heads" retort info "$TINY" --set model.n_kv_heads=3
expect_fail 2 "model.head_dim" retort info "$TINY" --set model.head_dim=15
expect_fail 2 "train.batch_tokens" retort info "$TINY" --set train.batch_tokens=100
expect_fail 2 "train.micro_batch" retort info "$TINY" --set train.micro_batch=3
expect_fail 2 "cannot read config file" retort train missing.yaml
expect_fail 2 "usage error" retort train
expect_fail 2 "usage error" retort frobnicate
expect_fail 2 "data.train.*required" retort train "$TINY" --set "run.dir=$WORK/r0"
# Data whose vocabulary exceeds the model's.
expect_fail 2 "model.vocab_size.*smaller than the vocabulary of .*train.h5" \
  retort train "$TINY" "${DATA[@]}" --set model.vocab_size=100 --set "run.dir=$WORK/r1"

# --- runtime errors (exit 1) ---
expect_fail 1 "nope.h5" retort train "$TINY" --set data.train=nope.h5 --set "data.val=$WORK/tok/val.h5" --set "run.dir=$WORK/r2"
head -c 3000 "$WORK/tok/train.h5" > trunc.h5
expect_fail 1 "trunc.h5" retort train "$TINY" --set data.train=trunc.h5 --set "data.val=$WORK/tok/val.h5" --set "run.dir=$WORK/r3"
expect_fail 1 "no-such-ckpt: no such checkpoint" retort eval no-such-ckpt --tokens "$WORK/tok/val.h5"

# A trained run to damage.
retort train "$TINY" "${DATA[@]}" --set "run.dir=$WORK/run" --set train.steps=10 >/dev/null
CK=$WORK/run/checkpoints/step_00000010
before=$(sha256sum "$CK"/* | sha256sum)
echo "not hdf5" > text.h5
expect_fail 1 "text.h5.*not an HDF5 file" retort eval "$WORK/run" --tokens text.h5
expect_fail 1 "already exists" retort export "$WORK/run" --out "$WORK/run"
[ "$(sha256sum "$CK"/* | sha256sum)" = "$before" ] || fail "export damaged the checkpoint"

# Corrupt optimizer state: resume refuses with a checksum error.
cp -r "$WORK/run" "$WORK/run_bad"
printf 'garbage' | dd of="$WORK/run_bad/checkpoints/step_00000010/optimizer.h5" bs=1 seek=4000 conv=notrunc 2>/dev/null
expect_fail 1 "optimizer.h5: checksum mismatch" retort train "$TINY" "${DATA[@]}" --set "run.dir=$WORK/run_bad" --set train.steps=20 --resume
# Truncated weights: eval names the file.
cp -r "$WORK/run" "$WORK/run_trunc"
truncate -s 2000 "$WORK/run_trunc/checkpoints/step_00000010/model.h5"
expect_fail 1 "model.h5" retort eval "$WORK/run_trunc" --tokens "$WORK/tok/val.h5"
# A checkpoint whose config does not match its weights.
cp -r "$CK" "$WORK/mismatch"
rm "$WORK/mismatch/state.json"  # as exported: no checksums, so the shape check itself answers
sed -i 's/d_model: 64/d_model: 32/' "$WORK/mismatch/config.yaml"
expect_fail 1 "mismatch/model.h5: parameter '.*' has shape" retort eval "$WORK/mismatch" --tokens "$WORK/tok/val.h5"
# eval with a window longer than the model's.
expect_fail 2 "seq-len" retort eval "$WORK/run" --tokens "$WORK/tok/val.h5" --seq-len 999
[ "$(sha256sum "$CK"/* | sha256sum)" = "$before" ] || fail "a failed command damaged the checkpoint"
echo PASS
