#!/usr/bin/env bash
# fsdp and tp meshes with parallel.device=cuda (label gpu; exits 77 = skipped with fewer than two
# GPUs). GPU_TRAIN_STEPS steps (default 20; the CPU simulator runs 6) of 4 sequences (one
# micro-batch per rank, so the simulator stays quick), at the same global batch:
#  - fsdp2 (sharded checkpoints) agrees with one GPU (losses 1e-5 relative, parameters 1e-4), and
#    its exported checkpoint agrees with the CPU's one-process run;
#  - tp2 + sp, checkpoints written consolidated (the tp slices gathered on the GPU), agrees with
#    one GPU;
#  - the fsdp2 run resumed on the GPU from its sharded mid-run checkpoint, and the tp2 + sp run
#    from its consolidated one, are bitwise identical to the uninterrupted runs;
#  - fsdp2 with bf16 products, bf16 parameter all-gathers and bf16 gradient reduce-scatters
#    (NCCL) agrees with the same on CPU ranks, and its products read the bf16 gathers (no weight
#    rounded per product);
#  - more ranks on a node than visible GPUs is refused with one line;
#  - with four or more GPUs: dp2 × fsdp2 (consolidated checkpoints: the shards gathered to the
#    host, parameters kept from forward to backward) and fsdp2 × tp2 + sp (consolidated: shards
#    gathered, then the tp slices) agree with one GPU.
source "$(dirname "$0")/lib.sh"
gpus=$(retort info "$TINY" --json | json /dev/stdin "j['cuda_gpus']")
if [ "$gpus" -lt 2 ]; then echo "$gpus GPU(s) visible: the mesh checks need two: skipped"; exit 77; fi
tiny_tokens "$WORK/tok"
steps=${GPU_TRAIN_STEPS:-20}
last=$(printf 'step_%08d' "$steps")
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
ARGS=("$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5"
      --set train.log_every=1 --set train.steps=$steps --set checkpoint.every=$((steps / 2))
      --set eval.every=$((steps / 2)) --set eval.max_windows=2 --set checkpoint.keep_last=0
      --set train.batch_tokens=256 --set train.micro_batch=0)
GPU=(--set parallel.device=cuda)
mesh() {  # mesh NAME RANKS SETTINGS...: train on a GPU mesh and compare with one GPU
  local name=$1 np=$2; shift 2
  local sets=(); for kv in "$@"; do sets+=(--set "$kv"); done
  "${MPIRUN[@]}" -np "$np" "$RETORT_BIN" train "${ARGS[@]}" "${GPU[@]}" "${sets[@]}" \
    --set "run.dir=$WORK/$name" > "$WORK/$name.log"
  compare_runs "$WORK/gpu" "$WORK/$name"
}

# More ranks on the node than visible GPUs (one here: CUDA_VISIBLE_DEVICES on a GPU, SIM_GPUS
# on the simulator): a config error naming both counts, before NCCL would refuse it.
expect_fail 2 "parallel.device.*2 ranks share this node and 1 GPU\(s\) are visible" \
  env CUDA_VISIBLE_DEVICES=0 SIM_GPUS=1 "${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" \
  "${GPU[@]}" --set parallel.dp=2 --set "run.dir=$WORK/too_many_ranks"

retort train "${ARGS[@]}" --set "run.dir=$WORK/cpu" > "$WORK/cpu.log"
retort train "${ARGS[@]}" "${GPU[@]}" --set "run.dir=$WORK/gpu" > "$WORK/gpu.log"

mesh fsdp2 2 parallel.fsdp=2
[ "$(ls "$WORK/fsdp2/checkpoints/$last"/shard-*.h5 | wc -l)" = 2 ] || fail "fsdp2 wrote no shard files"
compare_runs "$WORK/cpu" "$WORK/fsdp2"  # the GPU's sharded checkpoint, exported, against the CPU
mesh tp2sp 2 parallel.tp=2 parallel.sp=true checkpoint.format=consolidated
[ -f "$WORK/tp2sp/checkpoints/$last/model.h5" ] || fail "tp2+sp wrote no consolidated checkpoint"

resume() {  # resume NAME WHAT SETTINGS...: rerun the second half from the mid-run checkpoint
  local name=$1 what=$2; shift 2
  local sets=(); for kv in "$@"; do sets+=(--set "$kv"); done
  cp -r "$WORK/$name" "$WORK/${name}_resumed"
  rm -rf "$WORK/${name}_resumed/checkpoints/$last" "$WORK/${name}_resumed/summary.json"
  "${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" "${GPU[@]}" "${sets[@]}" \
    --set "run.dir=$WORK/${name}_resumed" --resume > "$WORK/${name}_resumed.log"
  same_checkpoint "$WORK/$name/checkpoints/$last" "$WORK/${name}_resumed/checkpoints/$last" "$what"
}
resume fsdp2 "GPU fsdp2 resume (sharded)" parallel.fsdp=2
resume tp2sp "GPU tp2+sp resume (consolidated)" parallel.tp=2 parallel.sp=true checkpoint.format=consolidated

# bf16 parameter all-gathers and bf16 gradient reduce-scatters (ncclBfloat16) under bf16
# products: fsdp2 on GPUs against the same on CPU ranks (MPI). Tolerances as bf16 training on
# one GPU against the CPU's emulation (gpu_train.sh): products summed in another order flip a
# bf16 rounding now and then.
for dev in cpu cuda; do
  "${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" --set parallel.device=$dev \
    --set parallel.fsdp=2 --set train.precision=bf16 --set parallel.param_gather=bf16 \
    --set parallel.grad_reduce=bf16 \
    --set checkpoint.format=consolidated --set "run.dir=$WORK/${dev}_fsdp2_gather16" \
    > "$WORK/${dev}_fsdp2_gather16.log"
done
compare_runs "$WORK/cpu_fsdp2_gather16" "$WORK/cuda_fsdp2_gather16" 1e-3 2e-2
# ... and the model reads the bf16 gather itself: the op profile counts one f32 -> bf16
# rounding per gather (its own input), no weight rounded again by a product, and widenings only
# for the norm gains: two runs of them per layer (input norm; q/k norms and post-attention norm
# side by side), one per head (the final norm), none for the embedding (the lookup reads bf16).
# Untied, where the counts differ (widening whole units gave one per gather).
UNTIED=(--set model.tie_embeddings=false)
RETORT_OP_PROFILE=1 OMP_NUM_THREADS=1 "${MPIRUN[@]}" -np 2 "$RETORT_BIN" bench "${ARGS[@]}" "${GPU[@]}" \
  "${UNTIED[@]}" --set parallel.fsdp=2 --set train.precision=bf16 --set parallel.param_gather=bf16 \
  --set bench.steps=1 --set bench.warmup=1 --set bench.ceiling_n=64 > "$WORK/fsdp2_gather16_bench.json"
"$RETORT_BIN" info "${ARGS[@]}" "${UNTIED[@]}" > "$WORK/info.txt"
/usr/bin/python3 - "$WORK/fsdp2_gather16_bench.json" "$WORK/info.txt" <<'PY'
import json, re, sys
k = {x["kernel"]: x["calls_per_step"] for x in json.load(open(sys.argv[1]))["op_profile"]["kernels"]}
info = open(sys.argv[2]).read()
L = int(re.search(r"\bL=(\d+)", info).group(1))
tied = " tied" in info.splitlines()[0]
assert not tied, info
micro = int(re.search(r"= (\d+) micro-batch", info).group(1))
# gathers per micro-batch (no fsdp_keep_params): each layer and the head in forward and in
# backward, the embedding for the lookup and its gradient (tied: and for the logits, twice)
gathers = micro * (2 * L + 2 + 2 * (1 + tied))
widenings = micro * (2 * 2 * L + 2)
assert k["f32_to_bf16"] == gathers and k["bf16_to_f32"] == widenings, (k, L, tied, micro)
assert k["matmul_bf16_rounded"] > 0, k
print(f"ok: fsdp2 bf16 gathers: {gathers} roundings per step (one per gather), "
      f"{widenings} widenings (the norm gains only)")
PY
if [ "$gpus" -ge 4 ]; then
  mesh dp2fsdp2 4 parallel.dp=2 parallel.fsdp=2 parallel.fsdp_keep_params=true checkpoint.format=consolidated
  mesh fsdp2tp2sp 4 parallel.fsdp=2 parallel.tp=2 parallel.sp=true checkpoint.format=consolidated
else
  echo "$gpus GPUs: the dp2 x fsdp2 and fsdp2 x tp2 checks need four (not run)"
fi
echo PASS
