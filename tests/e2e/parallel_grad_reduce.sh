#!/usr/bin/env bash
# parallel.grad_reduce: bf16 against fp32 gradient sums on dp2 (bucketed all-reduce) and
# dp2 × fsdp2 (reduce-scatter over fsdp, all-reduce over dp), tiny.yaml, 8 steps:
#   - losses agree within bf16 tolerance and the parameters stay close, yet differ from fp32
#     (the option has an effect);
#   - a rerun is bitwise identical (MPI's bf16 reduction order is fixed for a fixed mesh);
#   - retort bench counts half the gradient bytes on the dp axis;
#   - a bad value is a config error (exit 2), one line naming the key.
# Tolerances: the wire rounds each rank's gradient and every partial sum to 8 significant bits
# (relative error up to 2^-8 per rounding), so one step's gradient is off by a few 1e-3 relative
# (3.4e-3 on 4 ranks in tests/mpi/test_fully_sharded.cpp); over 8 AdamW steps (lr ≤ 3e-3) the
# losses then move by far less than 1e-3 relative and the weights by well under 1e-2 relative
# norm (measured: losses ~1e-5, weights ~2e-3), while an option without effect gives 0 (the
# same mesh in fp32 is bitwise reproducible), hence "differ by at least 1e-4". The measured
# differences are printed.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
ARGS=("$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5"
      --set train.log_every=1 --set train.steps=8 --set checkpoint.every=8 --set checkpoint.keep_last=0
      --set eval.every=0 --set eval.max_windows=4 --set train.micro_batch=2)
train() {  # train NP RUN_NAME --set ...
  local np=$1 name=$2; shift 2
  "${MPIRUN[@]}" -np "$np" "$RETORT_BIN" train "${ARGS[@]}" --set "run.dir=$WORK/$name" "$@" >/dev/null
}
CK=checkpoints/step_00000008

DP2=(--set parallel.dp=2)
DP2FSDP2=(--set parallel.dp=2 --set parallel.fsdp=2)
BF16=(--set parallel.grad_reduce=bf16)
train 2 dp2_fp32 "${DP2[@]}"
train 2 dp2_bf16 "${DP2[@]}" "${BF16[@]}"
train 2 dp2_bf16_again "${DP2[@]}" "${BF16[@]}"
compare_runs "$WORK/dp2_fp32" "$WORK/dp2_bf16" 1e-3 1e-2 8 1e-4
same_checkpoint "$WORK/dp2_bf16/$CK" "$WORK/dp2_bf16_again/$CK" "dp2 bf16 rerun"

# dp2 × fsdp2 writes sharded checkpoints; compare_runs reads its fp32 control's consolidated
# export (a consolidated checkpoint of the same mesh would do as well).
train 4 dp2fsdp2_fp32 "${DP2FSDP2[@]}" --set checkpoint.format=consolidated
train 4 dp2fsdp2_bf16 "${DP2FSDP2[@]}" "${BF16[@]}"
train 4 dp2fsdp2_bf16_again "${DP2FSDP2[@]}" "${BF16[@]}"
compare_runs "$WORK/dp2fsdp2_fp32" "$WORK/dp2fsdp2_bf16" 1e-3 1e-2 8 1e-4
same_checkpoint "$WORK/dp2fsdp2_bf16/$CK" "$WORK/dp2fsdp2_bf16_again/$CK" "dp2 x fsdp2 bf16 rerun"

# Bytes on the dp axis per step: the gradient all-reduce halves (plus 3 floats of losses).
for p in fp32 bf16; do
  OMP_NUM_THREADS=1 "${MPIRUN[@]}" -np 2 "$RETORT_BIN" bench "$TINY" "${DP2[@]}" --set bench.steps=1 \
    --set bench.warmup=0 --set parallel.grad_reduce=$p >"$WORK/bench_$p.json"
done
/usr/bin/python3 - "$WORK/bench_fp32.json" "$WORK/bench_bf16.json" <<'PY'
import json, sys
a, b = (json.load(open(f))["communication_per_rank"]["dp"] for f in sys.argv[1:])
for j in (a, b):  # measured = theory + the loss all-reduce (3 floats: 12 bytes on a 2-rank ring)
    assert j["measured_bytes_per_step"] - j["theory_bytes_per_step"] == 12, j
ratio = (b["measured_bytes_per_step"] - 12) / (a["measured_bytes_per_step"] - 12)
assert abs(ratio - 0.5) < 1e-6, ratio
print(f"ok: dp bytes per step {a['measured_bytes_per_step']} (fp32) -> {b['measured_bytes_per_step']} (bf16)")
PY

# A bad value: exit 2, one line naming the key, on one process and under mpirun.
expect_fail 2 "key 'parallel.grad_reduce': must be fp32 or bf16, got 'fp16'" \
  retort train "${ARGS[@]}" --set "run.dir=$WORK/bad1" --set parallel.grad_reduce=fp16
[ "$(wc -l <"$WORK/err.txt")" = 1 ] || { cat "$WORK/err.txt" >&2; fail "the error is not one line"; }
expect_fail 2 "key 'parallel.grad_reduce': must be fp32 or bf16, got 'half'" \
  "${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" "${DP2[@]}" --set "run.dir=$WORK/bad2" \
  --set parallel.grad_reduce=half
echo PASS
