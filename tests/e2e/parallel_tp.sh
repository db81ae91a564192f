#!/usr/bin/env bash
# Tensor (+ sequence) parallelism equals one process: tp2, tp2+sp, dp2×tp2, fsdp2×tp2+sp and
# dp2×fsdp2×tp2+sp vs 1 rank on tiny.yaml (GQA: 4 heads, 2 kv heads), tied and untied, at the
# same global batch: per-step losses within 1e-5 relative, final parameters within 1e-4
# relative norm; fsdp2×tp2 too; Qwen2's q, k, v biases on dp2×fsdp2×tp2+sp (and bf16); a
# sliding window on tp2+sp; µP's learning rates on dp2×fsdp2×tp2+sp. Then:
# bitwise resume on tp2+sp, and an fsdp2×tp2 checkpoint resumed on dp2 and on 1 process
# continues like the uninterrupted run.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
ARGS=("$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5"
      --set train.log_every=1 --set train.steps=20 --set checkpoint.every=10 --set checkpoint.keep_last=0
      --set eval.max_windows=4 --set train.micro_batch=2)
mesh() {  # mesh NAME RANKS TIED SETTINGS...: train on a mesh and compare with one process
  local name=$1 np=$2 tied=$3; shift 3
  local sets=(); for kv in "$@"; do sets+=(--set "parallel.$kv"); done
  "${MPIRUN[@]}" -np "$np" "$RETORT_BIN" train "${ARGS[@]}" --set model.tie_embeddings=$tied \
    "${sets[@]}" --set "run.dir=$WORK/$name" >/dev/null
  compare_runs "$WORK/one_$tied" "$WORK/$name"
}

for tied in true false; do
  retort train "${ARGS[@]}" --set model.tie_embeddings=$tied --set "run.dir=$WORK/one_$tied" >/dev/null
  mesh "tp2_$tied" 2 $tied tp=2
  mesh "tp2sp_$tied" 2 $tied tp=2 sp=true
done
mesh dp2tp2 4 false dp=2 tp=2
mesh fsdp2tp2sp 4 true fsdp=2 tp=2 sp=true
mesh dp2fsdp2tp2sp 8 false dp=2 fsdp=2 tp=2 sp=true

# bf16: layouts vs one process within 5e-4 (losses) and 5e-3 (parameters). Not closer: another
# fp32 summation order moves bf16 activations across rounding boundaries now and then, and 20
# steps amplify it (measured: losses 1.3e-4, parameters 2.3e-3, against bf16's own effect vs fp32
# of 5e-5..9e-5 and 6e-3); a wrong gather or layout gives order-1 differences.
BF16=(--set train.precision=bf16)
for tied in true false; do
  retort train "${ARGS[@]}" "${BF16[@]}" --set model.tie_embeddings=$tied --set "run.dir=$WORK/one16_$tied" >/dev/null
  compare_runs "$WORK/one_$tied" "$WORK/one16_$tied" 1e-3 1e-1 "" 4e-3  # bf16 took effect
done
"${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" "${BF16[@]}" --set parallel.tp=2 \
  --set parallel.sp=true --set "run.dir=$WORK/tp2sp16" >/dev/null
compare_runs "$WORK/one16_true" "$WORK/tp2sp16" 5e-4 5e-3
"${MPIRUN[@]}" -np 8 "$RETORT_BIN" train "${ARGS[@]}" "${BF16[@]}" --set model.tie_embeddings=false \
  --set parallel.dp=2 --set parallel.fsdp=2 --set parallel.tp=2 --set parallel.sp=true \
  --set "run.dir=$WORK/dp2fsdp2tp2sp16" >/dev/null
compare_runs "$WORK/one16_false" "$WORK/dp2fsdp2tp2sp16" 5e-4 5e-3

# Qwen2's q, k, v biases: split over tp with their heads, sharded by fsdp (1-D tp slices in the
# sharded checkpoints), their gradients summed over sp's rows; fp32 and bf16 as above, and bf16
# with the fsdp units gathered in bf16 (the biases widened to fp32 like the norm gains; within
# parallel_param_gather.sh's bf16-gather tolerances). The k bias only moves the scores through
# RoPE's rotation (a bias shared by every key shifts a query's scores by one constant, which
# softmax ignores), so its gradient is a near-cancelling sum and AdamW turns its rounding into
# updates: one process with micro_batch 1 instead of 2 (another summation order, nothing else)
# moves it by 1.3e-4 and 2.8e-4 after 20 steps (q, v biases: 3e-7), bf16 instead of fp32 by
# 0.37 and 0.49 (q, v biases: 7e-3). It gets 1e-3 in fp32 and is not compared in bf16; the q
# bias, a sum of bf16 gradients over every row, 1e-2 in bf16 (measured 5.6e-3, the other
# tensors 3.7e-3; with bf16 gathers 2.1e-2 and 1.5e-2).
Q2=(--set model.qk_norm=false --set model.qkv_bias=true)
retort train "${ARGS[@]}" "${Q2[@]}" --set "run.dir=$WORK/one_qwen2" >/dev/null
"${MPIRUN[@]}" -np 8 "$RETORT_BIN" train "${ARGS[@]}" "${Q2[@]}" --set parallel.dp=2 --set parallel.fsdp=2 \
  --set parallel.tp=2 --set parallel.sp=true --set "run.dir=$WORK/qwen2_dp2fsdp2tp2sp" >/dev/null
compare_runs "$WORK/one_qwen2" "$WORK/qwen2_dp2fsdp2tp2sp" 1e-5 1e-4 "" 0 "k_proj.bias=1e-3"
retort train "${ARGS[@]}" "${Q2[@]}" "${BF16[@]}" --set "run.dir=$WORK/one16_qwen2" >/dev/null
for gather in fp32 bf16; do
  "${MPIRUN[@]}" -np 4 "$RETORT_BIN" train "${ARGS[@]}" "${Q2[@]}" "${BF16[@]}" --set parallel.fsdp=2 \
    --set parallel.tp=2 --set parallel.sp=true --set parallel.param_gather=$gather \
    --set "run.dir=$WORK/qwen2_fsdp2tp2sp16_$gather" >/dev/null
done
compare_runs "$WORK/one16_qwen2" "$WORK/qwen2_fsdp2tp2sp16_fp32" 5e-4 5e-3 "" 0 "k_proj.bias=inf,q_proj.bias=1e-2"
compare_runs "$WORK/one16_qwen2" "$WORK/qwen2_fsdp2tp2sp16_bf16" 3e-3 3e-2 "" 0 "k_proj.bias=inf"

# A sliding window (5 of 64 positions) on tp2+sp: every rank's heads see the same window of
# the gathered sequence. The window must change the run (against one_true), the mesh must not.
W5=(--set model.sliding_window=5)
retort train "${ARGS[@]}" "${W5[@]}" --set "run.dir=$WORK/one_window" >/dev/null
compare_runs "$WORK/one_true" "$WORK/one_window" 1 1 "" 1e-3
"${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" "${W5[@]}" --set parallel.tp=2 --set parallel.sp=true \
  --set "run.dir=$WORK/window_tp2sp" >/dev/null
compare_runs "$WORK/one_window" "$WORK/window_tp2sp"

# µP (model.mup_base_width 32 at d_model 64: the hidden matrices and lm_head at lr/2) on
# dp2×fsdp2×tp2+sp: every fsdp piece and tp slice takes its parameter's rate. At its base width
# (64) µP is the untied run; at 32 it must change the run, the mesh must not.
MUP=(--set model.tie_embeddings=false --set model.init=mup)
retort train "${ARGS[@]}" "${MUP[@]}" --set model.mup_base_width=64 --set "run.dir=$WORK/one_mup64" >/dev/null
same_checkpoint "$WORK/one_false/checkpoints/step_00000020" "$WORK/one_mup64/checkpoints/step_00000020" "µP at its base width"
retort train "${ARGS[@]}" "${MUP[@]}" --set model.mup_base_width=32 --set "run.dir=$WORK/one_mup" >/dev/null
compare_runs "$WORK/one_false" "$WORK/one_mup" 1 1 "" 1e-3
"${MPIRUN[@]}" -np 8 "$RETORT_BIN" train "${ARGS[@]}" "${MUP[@]}" --set model.mup_base_width=32 \
  --set parallel.dp=2 --set parallel.fsdp=2 --set parallel.tp=2 --set parallel.sp=true \
  --set "run.dir=$WORK/mup_dp2fsdp2tp2sp" >/dev/null
compare_runs "$WORK/one_mup" "$WORK/mup_dp2fsdp2tp2sp"

# Per-rank parameter bytes: tp2 holds about half of one process (norm gains are whole copies).
/usr/bin/python3 - "$WORK/one_true" "$WORK/tp2_true" <<'PY'
import json, sys
one = json.load(open(sys.argv[1] + "/summary.json"))["memory"][0]["params_bytes"]
for r in json.load(open(sys.argv[2] + "/summary.json"))["memory"]:
    ratio = r["params_bytes"] / one
    assert 0.5 <= ratio < 0.52, f"rank {r['rank']}: {ratio:.3f} of one process's parameter bytes"
print("ok: tp2 parameter bytes per rank are about half")
PY

# Bitwise resume on the same mesh.
cp -r "$WORK/tp2sp_true" "$WORK/tp2sp_resume"
rm -rf "$WORK/tp2sp_resume/checkpoints/step_00000020" "$WORK/tp2sp_resume/summary.json"
"${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" --set parallel.tp=2 --set parallel.sp=true \
  --set "run.dir=$WORK/tp2sp_resume" --resume >/dev/null
same_checkpoint "$WORK/tp2sp_true/checkpoints/step_00000020" "$WORK/tp2sp_resume/checkpoints/step_00000020" "tp2+sp resume"

# An fsdp2×tp2 checkpoint (step 10) resumes on dp2 and on one process like the uninterrupted run.
mesh fsdp2tp2 4 true fsdp=2 tp=2
for target in one dp2; do
  cp -r "$WORK/fsdp2tp2" "$WORK/fsdp2tp2_to_$target"
  rm -rf "$WORK/fsdp2tp2_to_$target/checkpoints/step_00000020" "$WORK/fsdp2tp2_to_$target/summary.json"
done
retort train "${ARGS[@]}" --set "run.dir=$WORK/fsdp2tp2_to_one" --resume >/dev/null
compare_runs "$WORK/one_true" "$WORK/fsdp2tp2_to_one"
"${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" --set parallel.dp=2 --set "run.dir=$WORK/fsdp2tp2_to_dp2" --resume >/dev/null
compare_runs "$WORK/one_true" "$WORK/fsdp2tp2_to_dp2"

# Sharded checkpoints: fsdp2×tp2 wrote one file per rank; eval reads them; a lost shard is a
# clear error.
ck=$WORK/fsdp2tp2/checkpoints/step_00000010
[ "$(ls "$ck"/shard-*.h5 | wc -l)" = 4 ] || fail "expected 4 shard files in $ck"
[ "$(json "$ck/state.json" 'j["format"], j["mesh"]["tp"]')" = "sharded 2" ] || fail "state.json lacks the mesh"
retort eval "$ck" --tokens "$WORK/tok/val.h5" --max-windows 2 >/dev/null
cp -r "$ck" "$WORK/lost_shard" && rm "$WORK/lost_shard/shard-00003.h5"
expect_fail 1 "lost_shard/shard-00003.h5: missing \(listed in state.json\)" \
  retort eval "$WORK/lost_shard" --tokens "$WORK/tok/val.h5"
# ... and when state.json does not list it either, the reader finds the hole
/usr/bin/python3 -c 'import json, sys; p = sys.argv[1]; j = json.load(open(p)); del j["sha256"]["shard-00003.h5"]; json.dump(j, open(p, "w"))' \
  "$WORK/lost_shard/state.json"
expect_fail 1 "lack part of parameter" retort eval "$WORK/lost_shard" --tokens "$WORK/tok/val.h5"

# A tp that does not divide the model is a config error naming the key.
expect_fail 2 "parallel.tp.*n_kv_heads" "${MPIRUN[@]}" -np 4 "$RETORT_BIN" train "${ARGS[@]}" \
  --set parallel.tp=4 --set "run.dir=$WORK/bad"
echo PASS
