#!/usr/bin/env bash
# `retort distill` with parallel.device=cuda (label gpu; exits 77 = skipped without a GPU).
# A teacher is trained and its corpus written (`retort generate`) on the CPU; then, with
# GPU_DISTILL_STEPS steps (default 20; the CPU simulator runs 4):
#  - offline (corpus top-k uploaded per micro-batch), tails bucket and renormalize, and online
#    (the live teacher on the GPU, exact KL over the vocabulary): the GPU run agrees with the
#    CPU run (losses within 1e-5 relative, final parameters 1e-4; lib.sh compare_runs);
#  - a GPU offline run resumed from its half-way checkpoint is bitwise identical (checkpoint
#    files and metrics) to the uninterrupted one;
#  - with two or more GPUs: dp2 over NCCL agrees with one GPU, offline and online; so do fsdp2
#    and tp2 offline, and tp2 online.
source "$(dirname "$0")/lib.sh"
gpus=$(retort info "$TINY" --json | json /dev/stdin "j['cuda_gpus']")
if [ "$gpus" = "0" ]; then echo "no GPU visible: skipped"; exit 77; fi
tiny_tokens "$WORK/tok"
steps=${GPU_DISTILL_STEPS:-20}
half=$((steps / 2))
last=$(printf 'step_%08d' "$steps")
MPIRUN=(mpirun --allow-run-as-root --oversubscribe)

# On the CPU: a teacher, and its corpus of 16 sequences of 33 tokens (32 targets), top-8.
retort train "$TINY" --set "data.train=$WORK/tok/train.h5" --set "data.val=$WORK/tok/val.h5" \
  --set train.steps=4 --set checkpoint.every=4 --set "run.dir=$WORK/teacher" >/dev/null
retort generate "$TINY" --set "generate.teacher=$WORK/teacher" --set "generate.data=$WORK/tok/train.h5" \
  --set generate.k=8 --set generate.seq_len=33 --set generate.num_sequences=16 --set generate.batch=8 \
  --set "generate.out=$WORK/corpus" >/dev/null

# The student: narrower than the teacher, another seed, 2 micro-batches of one sequence a step.
STUDENT=("$TINY" --set "data.val=$WORK/tok/val.h5" --set model.d_model=32 --set train.seed=5
         --set train.batch_tokens=64 --set train.micro_batch=1 --set train.log_every=1
         --set train.steps=$steps --set checkpoint.every=$half --set eval.every=$half
         --set eval.max_windows=2 --set checkpoint.keep_last=0)
OFF=("${STUDENT[@]}" --set "distill.corpus=$WORK/corpus" --set distill.lambda=0.5)
ON=("${STUDENT[@]}" --set "data.train=$WORK/tok/train.h5" --set "distill.teacher=$WORK/teacher"
    --set distill.lambda=0.7 --set distill.temperature=2 --set model.seq_len=32)
GPU=(--set parallel.device=cuda)

# check_run RUN MODE DEVICE: the summary's distill block and a positive kl on every step.
check_run() {
  python3 - "$1" "$2" "$3" "$steps" <<'PY'
import json, sys
run, mode, device, steps = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = json.load(open(run + "/summary.json"))
assert s["distill"]["mode"] == mode and s["distill"]["device"] == device, s["distill"]
train = [l for l in map(json.loads, open(run + "/metrics.jsonl")) if "loss" in l]
assert len(train) == steps and all(l["kl"] > 0 for l in train), train[0]
PY
}

for tail in bucket renormalize; do
  retort distill "${OFF[@]}" --set distill.tail=$tail --set "run.dir=$WORK/cpu_$tail" >/dev/null
  retort distill "${OFF[@]}" "${GPU[@]}" --set distill.tail=$tail --set "run.dir=$WORK/gpu_$tail" \
    > "$WORK/gpu_$tail.log"
  check_run "$WORK/gpu_$tail" offline cuda
  compare_runs "$WORK/cpu_$tail" "$WORK/gpu_$tail"
done

retort distill "${ON[@]}" --set "run.dir=$WORK/cpu_online" >/dev/null
retort distill "${ON[@]}" "${GPU[@]}" --set "run.dir=$WORK/gpu_online" > "$WORK/gpu_online.log"
check_run "$WORK/gpu_online" online cuda
compare_runs "$WORK/cpu_online" "$WORK/gpu_online"

# Bitwise resume on the GPU (offline, bucket tail).
cp -r "$WORK/gpu_bucket" "$WORK/gpu_resumed"
rm -rf "$WORK/gpu_resumed/checkpoints/$last" "$WORK/gpu_resumed/summary.json"
retort distill "${OFF[@]}" "${GPU[@]}" --set distill.tail=bucket --set "run.dir=$WORK/gpu_resumed" --resume \
  > "$WORK/gpu_resumed.log"
grep -q "resuming from .*$(printf 'step_%08d' "$half")" "$WORK/gpu_resumed.log" || fail "did not resume from step $half"
same_checkpoint "$WORK/gpu_bucket/checkpoints/$last" "$WORK/gpu_resumed/checkpoints/$last" "GPU distill resume"
python3 - "$WORK/gpu_bucket/metrics.jsonl" "$WORK/gpu_resumed/metrics.jsonl" <<'PY'
import json, sys
def f(p): return [(l["step"], l.get("loss"), l.get("kl"), l.get("val_loss")) for l in map(json.loads, open(p))]
a, b = f(sys.argv[1]), f(sys.argv[2])
assert a == b, [(x, y) for x, y in zip(a, b) if x != y][:3]
PY

if [ "$gpus" -ge 2 ]; then
  # two_gpus CONTROL NAME ARGS...: a 2-GPU distill run against its one-GPU control.
  two_gpus() {
    local control=$1 name=$2; shift 2
    "${MPIRUN[@]}" -np 2 "$RETORT_BIN" distill "$@" "${GPU[@]}" --set "run.dir=$WORK/$name" > "$WORK/$name.log"
    compare_runs "$WORK/$control" "$WORK/$name"
  }
  two_gpus gpu_bucket gpu_dp2 "${OFF[@]}" --set distill.tail=bucket --set parallel.dp=2
  two_gpus gpu_online gpu_online_dp2 "${ON[@]}" --set parallel.dp=2
  # fsdp2 (offline), tp2 offline (the top-k ids made shard-local on the GPU: vocab_shard_ids) and
  # tp2 online (the teacher's logits sharded like the student's).
  two_gpus gpu_bucket gpu_fsdp2 "${OFF[@]}" --set distill.tail=bucket --set parallel.fsdp=2
  two_gpus gpu_bucket gpu_tp2 "${OFF[@]}" --set distill.tail=bucket --set parallel.tp=2
  two_gpus gpu_online gpu_online_tp2 "${ON[@]}" --set parallel.tp=2
else
  echo "one GPU: the NCCL dp2, fsdp2 and tp2 checks need two (not run)"
fi
echo PASS
