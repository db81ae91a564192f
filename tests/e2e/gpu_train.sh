#!/usr/bin/env bash
# `retort train` with parallel.device=cuda (label gpu; exits 77 = skipped without a GPU):
#  - 20 steps (GPU_TRAIN_STEPS; the CPU simulator runs 6) on one GPU agree with the CPU run (losses within 1e-5 relative, parameters 1e-4);
#  - a GPU run resumed from its step-10 checkpoint is bitwise identical to the uninterrupted one;
#  - a NaN injected into a gradient stops the run naming the step and the tensor; on the
#    simulator, running out of GPU memory ends the run with one line;
#  - `retort generate` on the GPU (score mode, and sample mode with and without the KV cache) stores
#    the teacher's top-k as recomputed by float64 PyTorch (tests/e2e/check_corpus.py), and in
#    sample mode with generate.precision=bf16 within bf16 rounding of it;
#  - with train.precision=bf16 (cuDNN attention) within bf16 tolerance of the CPU, and resumed
#    bitwise; with train.matmul_tuning=timed too, the timed choices kept for the resume;
#  - `retort bench` on the GPU (bf16) reports the GPU run: device, precision, MFU, GPU memory,
#    attention kernel (cudnn), and with RETORT_OP_PROFILE=1 the time per kernel; the head's
#    logits are a bf16 product output;
#  - with two or more GPUs: dp2 over NCCL (gradient buckets reduced during backward) agrees
#    with one GPU, and dp2 with parallel.grad_reduce=bf16 (ncclBfloat16 sums) agrees with the
#    same run on CPU ranks (MPI).
source "$(dirname "$0")/lib.sh"
gpus=$(retort info "$TINY" --json | json /dev/stdin "j['cuda_gpus']")
if [ "$gpus" = "0" ]; then echo "no GPU visible: skipped"; exit 77; fi
tiny_tokens "$WORK/tok"
steps=${GPU_TRAIN_STEPS:-20}
last=$(printf 'step_%08d' "$steps")
ARGS=("$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5"
      --set train.log_every=1 --set train.steps=$steps --set checkpoint.every=$((steps / 2))
      --set eval.every=$((steps / 2)) --set checkpoint.keep_last=0)
retort train "${ARGS[@]}" --set "run.dir=$WORK/cpu" > "$WORK/cpu.log"
retort train "${ARGS[@]}" --set parallel.device=cuda --set "run.dir=$WORK/gpu" > "$WORK/gpu.log"
compare_runs "$WORK/cpu" "$WORK/gpu"

cp -r "$WORK/gpu" "$WORK/gpu_resumed"
rm -rf "$WORK/gpu_resumed/checkpoints/$last" "$WORK/gpu_resumed/summary.json"
retort train "${ARGS[@]}" --set parallel.device=cuda --set "run.dir=$WORK/gpu_resumed" --resume \
  > "$WORK/gpu_resumed.log"
same_checkpoint "$WORK/gpu/checkpoints/$last" "$WORK/gpu_resumed/checkpoints/$last" \
  "GPU resume"

# Out of GPU memory (on the simulator, whose device is shrunk to 3 MiB: tiny.yaml's training
# needs ~5): one line naming the allocation and the pool's holding, exit 1.
simulated=$(retort info "$TINY" | grep -c "simulated GPU" || true)
if [ "$simulated" != 0 ]; then
  expect_fail 1 "^retort: error: out of GPU memory allocating [0-9]+ bytes on device 0 \([0-9]+ bytes held by the pool; .*train.micro_batch.*\)$" \
    env SIM_GPU_MEMORY_MB=3 "$RETORT_BIN" train "${ARGS[@]}" --set parallel.device=cuda --set "run.dir=$WORK/gpu_oom"
fi

# A NaN in a gradient on the GPU (RETORT_FAULT_NAN_GRAD_STEP): the step stops naming the step
# and the first bad tensor (the gradients read back from the device to find it).
expect_fail 1 "step 2: non-finite .*first bad gradient: model.embed_tokens.weight" \
  env RETORT_FAULT_NAN_GRAD_STEP=2 "$RETORT_BIN" train "${ARGS[@]}" --set parallel.device=cuda \
  --set train.steps=3 --set "run.dir=$WORK/gpu_nan"

# train.precision=bf16: bf16 matmuls and cuDNN's fused attention (train.attention=cudnn: an
# error if cuDNN refused). Within bf16 tolerance of the fp32 CPU run (on the simulator the
# losses differ by ~4e-5 and the parameters by ~6e-3 relative after 6 steps: room for
# rounding, not for a wrong attention), and resumed bitwise (cuDNN's deterministic backward).
BF16=(--set parallel.device=cuda --set train.precision=bf16 --set train.attention=cudnn)
retort train "${ARGS[@]}" "${BF16[@]}" --set "run.dir=$WORK/gpu_bf16" > "$WORK/gpu_bf16.log"
compare_runs "$WORK/cpu" "$WORK/gpu_bf16" 1e-3 2e-2
cp -r "$WORK/gpu_bf16" "$WORK/gpu_bf16_resumed"
rm -rf "$WORK/gpu_bf16_resumed/checkpoints/$last" "$WORK/gpu_bf16_resumed/summary.json"
retort train "${ARGS[@]}" "${BF16[@]}" --set "run.dir=$WORK/gpu_bf16_resumed" --resume \
  > "$WORK/gpu_bf16_resumed.log"
same_checkpoint "$WORK/gpu_bf16/checkpoints/$last" "$WORK/gpu_bf16_resumed/checkpoints/$last" \
  "GPU bf16 (cuDNN attention) resume"

# train.matmul_tuning=timed: each product shape's cuBLASLt algorithm timed at its first use
# (SIM_CUBLASLT_ALGOS=3: the simulator offers three equal algorithms, the heuristic's first the
# slowest). Within bf16 tolerance of the CPU run; on the simulator, where the algorithms compute
# the same, bitwise the heuristic's run (the timing runs write scratch, never the outputs).
SIM_CUBLASLT_ALGOS=3 retort train "${ARGS[@]}" "${BF16[@]}" --set train.matmul_tuning=timed \
  --set "run.dir=$WORK/gpu_bf16_timed" > "$WORK/gpu_bf16_timed.log"
compare_runs "$WORK/cpu" "$WORK/gpu_bf16_timed" 1e-3 2e-2
if [ "$simulated" != 0 ]; then
  same_checkpoint "$WORK/gpu_bf16/checkpoints/$last" "$WORK/gpu_bf16_timed/checkpoints/$last" \
    "timed cuBLASLt algorithms"
fi
# ... the choices are kept in the run directory (matmul_tuning/rank_00000.json), and a resume
# takes them instead of timing again: bitwise the uninterrupted run. On the simulator played
# with the speeds reversed (SIM_CUBLASLT_FIRST_FASTEST=1), where timing again would choose
# the first algorithm. A file timed on another GPU is ignored (one line on stderr) and the
# shapes are timed again.
TIMED=(--set train.matmul_tuning=timed)
resume_timed() {  # resume_timed NAME: gpu_bf16_timed resumed from its middle checkpoint as NAME
  rm -rf "$WORK/$1/checkpoints/$last" "$WORK/$1/summary.json"
  SIM_CUBLASLT_ALGOS=3 SIM_CUBLASLT_FIRST_FASTEST=1 retort train "${ARGS[@]}" "${BF16[@]}" \
    "${TIMED[@]}" --set "run.dir=$WORK/$1" --resume > "$WORK/$1.log" 2> "$WORK/$1.err"
}
cp -r "$WORK/gpu_bf16_timed" "$WORK/timed_resumed"
resume_timed timed_resumed
grep -q "product shapes take the algorithms timed before" "$WORK/timed_resumed.log" \
  || fail "the resumed timed run did not take the kept choices: $(cat "$WORK/timed_resumed.log")"
same_checkpoint "$WORK/gpu_bf16_timed/checkpoints/$last" "$WORK/timed_resumed/checkpoints/$last" \
  "timed cuBLASLt algorithms, resumed"
cp -r "$WORK/gpu_bf16_timed" "$WORK/timed_elsewhere"
python3 - "$WORK/timed_elsewhere/matmul_tuning/rank_00000.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
j["identity"] = "another GPU, cuBLASLt 1"
json.dump(j, open(sys.argv[1], "w"))
PY
resume_timed timed_elsewhere
grep -q "was timed on another GPU or cuBLASLt" "$WORK/timed_elsewhere.err" \
  || fail "a tuning file of another GPU was not refused: $(cat "$WORK/timed_elsewhere.err")"
python3 - "$WORK" "$simulated" <<'PY'
import json, sys
work, simulated = sys.argv[1], sys.argv[2] != "0"
load = lambda run: json.load(open(f"{work}/{run}/matmul_tuning/rank_00000.json"))
first, resumed, elsewhere = load("gpu_bf16_timed"), load("timed_resumed"), load("timed_elsewhere")
choice = lambda j: {p["key"]: p["chosen"] for p in j["products"]}
assert first["products"] and choice(resumed) == choice(first), (first, resumed)
assert elsewhere["identity"] == first["identity"] and set(choice(elsewhere)) == set(choice(first))
if simulated:  # timed again with the first algorithm the fastest: most choices differ (a loaded
    # machine's timing noise may pick the middle algorithm now and then)
    a, b = choice(first), choice(elsewhere)
    assert sum(a[k] == 2 and b[k] == 0 for k in a) >= 0.75 * len(a), (a, b)
print(f"ok: {len(first['products'])} timed product shapes kept across a resume; "
      f"another GPU's file timed again ({first['identity']})")
PY

G=("$TINY" --set parallel.device=cuda --set "generate.teacher=$WORK/gpu" --set "generate.data=$WORK/tok/val.h5"
   --set generate.k=8 --set generate.seq_len=24 --set generate.num_sequences=6 --set generate.batch=3
   --set generate.logprob_dtype=f32)
retort generate "${G[@]}" --set "generate.out=$WORK/score" >/dev/null
/usr/bin/python3 "$SRC/tests/e2e/check_corpus.py" teacher "$WORK/score" "$WORK/gpu/checkpoints/$last" 1e-4
retort generate "${G[@]}" --set generate.mode=sample --set generate.prompt_len=6 --set generate.seed=7 \
  --set "generate.out=$WORK/sample" >/dev/null
/usr/bin/python3 "$SRC/tests/e2e/check_corpus.py" teacher "$WORK/sample" "$WORK/gpu/checkpoints/$last" 1e-4
# the draws on the device (u from each sequence's stream, the decode fed by the tokens it drew)
# give the CPU's tokens
retort generate "${G[@]}" --set parallel.device=cpu --set generate.mode=sample \
  --set generate.prompt_len=6 --set generate.seed=7 --set "generate.out=$WORK/sample_cpu" >/dev/null
/usr/bin/python3 "$SRC/tests/e2e/check_corpus.py" tokens "$WORK/sample" "$WORK/sample_cpu"
# ... and without the KV cache (the whole prefix recomputed for each token, drawn on the device)
retort generate "${G[@]}" --set generate.mode=sample --set generate.prompt_len=6 --set generate.seed=7 \
  --set generate.kv_cache=false --set "generate.out=$WORK/sample_nocache" >/dev/null
/usr/bin/python3 "$SRC/tests/e2e/check_corpus.py" teacher "$WORK/sample_nocache" "$WORK/gpu/checkpoints/$last" 1e-4
# generate.precision bf16: the teacher's products on its bf16 weights (tensor cores), the KV
# cache decoding on them too; within bf16 rounding of the float64 teacher
retort generate "${G[@]}" --set generate.mode=sample --set generate.prompt_len=6 --set generate.seed=7 \
  --set generate.precision=bf16 --set "generate.out=$WORK/sample_bf16" >/dev/null
/usr/bin/python3 "$SRC/tests/e2e/check_corpus.py" teacher "$WORK/sample_bf16" "$WORK/gpu/checkpoints/$last" 3e-2  # simulator: 0.012

RETORT_OP_PROFILE=1 SIM_CUBLASLT_ALGOS=3 retort bench "${ARGS[@]}" --set parallel.device=cuda \
  --set train.precision=bf16 --set train.matmul_tuning=timed --set bench.steps=2 \
  --set bench.warmup=1 --set bench.ceiling_n=128 --set bench.peak_tflops=989 \
  > "$WORK/bench.json" 2> "$WORK/bench.log"
python3 - "$WORK/bench.json" "$simulated" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
# train.matmul_tuning=timed: every plan (product shape and operand alignments: the layers' weights
# lie at different alignments in the flat weights) timed once, the fastest kept (on the simulator
# the last of its three algorithms); the ceiling's 128³ product too
tuned = j["tuned_products"]
assert j["matmul_tuning"] == "timed" and any(t["shape"].startswith("matmul 128x128x128 ") for t in tuned), j
assert len({t["key"] for t in tuned}) == len(tuned), tuned
for t in tuned:
    assert t["candidates"] >= 1 and 0 < t["chosen_us"] <= t["heuristic_us"], t
    if sys.argv[2] != "0":
        assert t["candidates"] == 3 and t["chosen"] > 0, t
if sys.argv[2] != "0":  # the last, fastest one (a loaded machine may pick the middle one now and then)
    assert sum(t["chosen"] == 2 for t in tuned) >= 0.75 * len(tuned), tuned
assert j["device"] == "cuda" and j["precision"] == "bf16" and j["matmul_ceiling_n"] == 128, j
assert j["tokens_per_s"] > 0 and j["matmul_ceiling_gflops"] > 0 and 0 < j["mfu"] < 1, j
assert j["gpu_peak_bytes"] > 0 and j["attention_kernel"] == "cudnn", j
# RETORT_OP_PROFILE: the kernels timed one by one fit inside the step they ran in
p = j["op_profile"]
kernels = {k["kernel"]: k for k in p["kernels"]}
for name in ("rmsnorm_forward", "attention_cudnn forward graph", "attention_cudnn backward graph", "adamw_step_multi"):
    assert kernels[name]["calls_per_step"] > 0 and kernels[name]["ms_per_step"] > 0, (name, p)
# ... with the bandwidth of the kernels that count their bytes, and only of those
for name in ("rmsnorm_forward", "rmsnorm_backward", "swiglu_forward", "cross_entropy_forward_backward", "adamw_step_multi"):
    assert kernels[name]["gb_per_s"] > 0, (name, p)
# the loss and its gradient in one pass over the logits (one rank: no tp)
assert "cross_entropy_forward" not in kernels and "cross_entropy_backward" not in kernels, p
assert "gb_per_s" not in kernels["attention_cudnn forward graph"], p
total = sum(k["ms_per_step"] for k in p["kernels"])
assert 0 < total <= 1e3 * j["step_s_median"] * 1.001, (total, j["step_s_median"])
assert p["matmul"]["calls_per_step"] > 0 and p["matmul"]["tflops"] > 0, p
# ... the products timed per shape, adding up to all of them; gate and up as one product
# [R, 2F] (K = d); q, k and v as one product [R, (H + 2·Hkv)·hd] (K = d; tiny.yaml is GQA),
# its input gradient one product with K = (H + 2·Hkv)·hd and its weight gradient one
# [(H + 2·Hkv)·hd, d] (K = R); nothing batched
shapes = p["matmul"]["shapes"]
assert sum(s["calls_per_step"] for s in shapes) == p["matmul"]["calls_per_step"], shapes
def dims(kind):
    return [tuple(map(int, s["shape"].split()[1].split("x"))) for s in shapes if s["shape"].endswith(kind)]
d, n_qkv = 64, (4 + 2 * 2) * 16  # configs/tiny.yaml: d_model, (n_heads + 2 n_kv_heads) head_dim
F = max(k for m, n, k in dims(" NT") if n == d)  # the down projection: [R, F] [d, F]ᵀ
assert any(n == 2 * F and k == d for m, n, k in dims(" NT")), shapes
R = next(m for m, n, k in dims(" NT") if n == n_qkv and k == d)
assert (R, d, n_qkv) in dims(" NN") and (n_qkv, d, R) in dims(" TN"), shapes
assert not any("batch" in s["shape"] for s in shapes), shapes
# the head's logits [R, V] are its product's bf16 output (TrainStep under bf16: the loss reads
# them, dlogits are written over them)
head = [t["shape"] for t in tuned if t["shape"].startswith(f"matmul {R}x512x{d} NT")]  # tiny: V 512
assert head and all(s.endswith(" bf16 out") for s in head), tuned
print(f"ok: retort bench on the GPU: {j['tokens_per_s']:.0f} tok/s, mfu {j['mfu']:.2g}, {j['gpu_peak_bytes']} B of GPU memory")
PY

if [ "$gpus" -ge 2 ]; then
  # buckets of 4096 gradient elements (of 131k): all-reduced on the communication stream while
  # backward runs (the default bucket holds the whole tiny model, reduced after backward)
  mpirun --allow-run-as-root --oversubscribe -np 2 "$RETORT_BIN" train "${ARGS[@]}" \
    --set parallel.device=cuda --set parallel.dp=2 --set parallel.bucket_elems=4096 \
    --set "run.dir=$WORK/gpu_dp2" > "$WORK/dp2.log"
  compare_runs "$WORK/gpu" "$WORK/gpu_dp2"
  for dev in cpu cuda; do
    mpirun --allow-run-as-root --oversubscribe -np 2 "$RETORT_BIN" train "${ARGS[@]}" \
      --set parallel.device=$dev --set parallel.dp=2 --set parallel.grad_reduce=bf16 \
      --set "run.dir=$WORK/${dev}_dp2_bf16" > "$WORK/${dev}_dp2_bf16.log"
  done
  # Parameters 5e-4: a ~1e-7 difference in a gradient flips its bf16 rounding now and then
  # (4e-5 after 6 steps on the simulator); an fp32 reduction instead would differ by ~1.5e-3.
  compare_runs "$WORK/cpu_dp2_bf16" "$WORK/cuda_dp2_bf16" 1e-5 5e-4
else
  echo "one GPU: the NCCL dp2 check needs two (not run)"
fi
echo PASS
