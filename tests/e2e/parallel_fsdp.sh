#!/usr/bin/env bash
# Fully sharded data parallelism equals one process: fsdp2, fsdp4 and dp2×fsdp2 vs 1 rank on
# tiny.yaml (GQA: n_kv_heads 2), tied and untied, at the same global batch: per-step losses
# within 1e-5 relative, final parameters within 1e-4 relative norm; per-rank parameter,
# gradient and optimizer bytes ≈ 1/N of one process. Then: bitwise resume on fsdp2, and an
# fsdp2 checkpoint resumed on 1 process and on dp2 continues like the uninterrupted run.
source "$(dirname "$0")/lib.sh"
tiny_tokens "$WORK/tok"
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)
ARGS=("$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5"
      --set train.log_every=1 --set train.steps=20 --set checkpoint.every=10 --set checkpoint.keep_last=0
      --set eval.max_windows=4 --set train.micro_batch=2)

memory_ratio() {  # memory_ratio ONE_RUN RUN N: params/grads/optimizer bytes per rank ≈ 1/N
  /usr/bin/python3 - "$1" "$2" "$3" <<'PY'
import json, sys
one = json.load(open(sys.argv[1] + "/summary.json"))["memory"][0]
mem = json.load(open(sys.argv[2] + "/summary.json"))["memory"]
n = int(sys.argv[3])
for r in mem:
    for k in ("params_bytes", "grads_bytes", "optimizer_bytes"):
        ratio = r[k] / one[k]
        assert abs(ratio - 1 / n) < 0.01, f"rank {r['rank']} {k}: {r[k]} is {ratio:.4f} of {one[k]}, not 1/{n}"
    assert r["gather_buffer_bytes"] > 0
print("ok: memory per rank", [(r["params_bytes"], r["grads_bytes"], r["optimizer_bytes"],
                               r["gather_buffer_bytes"]) for r in mem], "vs", one["params_bytes"])
PY
}

for tied in true false; do
  retort train "${ARGS[@]}" --set model.tie_embeddings=$tied --set "run.dir=$WORK/one_$tied" >/dev/null
  "${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" --set model.tie_embeddings=$tied \
    --set parallel.fsdp=2 --set "run.dir=$WORK/fsdp2_$tied" >/dev/null
  compare_runs "$WORK/one_$tied" "$WORK/fsdp2_$tied"
  memory_ratio "$WORK/one_$tied" "$WORK/fsdp2_$tied" 2
  "${MPIRUN[@]}" -np 4 "$RETORT_BIN" train "${ARGS[@]}" --set model.tie_embeddings=$tied \
    --set parallel.fsdp=4 --set "run.dir=$WORK/fsdp4_$tied" >/dev/null
  compare_runs "$WORK/one_$tied" "$WORK/fsdp4_$tied"
  memory_ratio "$WORK/one_$tied" "$WORK/fsdp4_$tied" 4
done
# dp2 × fsdp2 (4 ranks), untied, parameters kept from forward to backward.
"${MPIRUN[@]}" -np 4 "$RETORT_BIN" train "${ARGS[@]}" --set model.tie_embeddings=false \
  --set parallel.dp=2 --set parallel.fsdp=2 --set parallel.fsdp_keep_params=true \
  --set "run.dir=$WORK/dp2fsdp2" >/dev/null
compare_runs "$WORK/one_false" "$WORK/dp2fsdp2"
memory_ratio "$WORK/one_false" "$WORK/dp2fsdp2" 2

# Bitwise resume on the same mesh.
cp -r "$WORK/fsdp2_true" "$WORK/fsdp2_resume"
rm -rf "$WORK/fsdp2_resume/checkpoints/step_00000020" "$WORK/fsdp2_resume/summary.json"
"${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" --set parallel.fsdp=2 --set "run.dir=$WORK/fsdp2_resume" --resume >/dev/null
same_checkpoint "$WORK/fsdp2_true/checkpoints/step_00000020" "$WORK/fsdp2_resume/checkpoints/step_00000020" "fsdp2 resume"

# An fsdp2 checkpoint resumes on one process and on dp2 and continues like the uninterrupted run.
for target in one dp2; do
  cp -r "$WORK/fsdp2_true" "$WORK/fsdp2_to_$target"
  rm -rf "$WORK/fsdp2_to_$target/checkpoints/step_00000020" "$WORK/fsdp2_to_$target/summary.json"
done
retort train "${ARGS[@]}" --set "run.dir=$WORK/fsdp2_to_one" --resume >/dev/null
compare_runs "$WORK/one_true" "$WORK/fsdp2_to_one"
"${MPIRUN[@]}" -np 2 "$RETORT_BIN" train "${ARGS[@]}" --set parallel.dp=2 --set "run.dir=$WORK/fsdp2_to_dp2" --resume >/dev/null
compare_runs "$WORK/one_true" "$WORK/fsdp2_to_dp2"
echo PASS
