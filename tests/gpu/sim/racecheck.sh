#!/bin/bash
# Races in the GPU backend, whatever the schedule (README.md beside this file): builds retort and
# the simulator's own test, the kernel, model and NCCL communicator tests with RETORT_CUDA=SIM
# and RETORT_SIM_SANITIZE=thread into $RACE_BUILD (default build-race/ in the repository root,
# incremental), where ThreadSanitizer sees each simulated thread ordered only by its block's
# barriers, neighbouring blocks unordered, and streams ordered only by their events and the
# host's synchronisations; runs those tests, then two training steps on three 2-GPU meshes
# (dp2, fsdp2 with bf16 gathers and reductions, tp2 + sp). The first race ends its process with
# ThreadSanitizer's report: both accesses with their lines (build-race/cuda-sim/NAME.cpp:N is
# line N of core/cuda/NAME.cu).
#   tests/gpu/sim/racecheck.sh                     everything (~14 min on 2 cores once built)
#   tests/gpu/sim/racecheck.sh -R cuda_kernels     extra arguments go to ctest (meshes still run)
#   tests/gpu/sim/racecheck.sh --selftest          the detector's own test only (CI, ~1 min)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${RACE_BUILD:-$root/build-race}
tests=(simulator cuda_kernels cuda_model nccl_communicator)
targets=(retort)
if [ "${1:-}" = --selftest ]; then
  tests=(simulator)
  targets=()
  shift
fi
echo "[racecheck] configuring and building $out (RETORT_CUDA=SIM, RETORT_SIM_SANITIZE=thread)"
cmake -S "$root" -B "$out" -DCMAKE_BUILD_TYPE=Release -DRETORT_CUDA=SIM -DRETORT_FUZZ=OFF \
  -DRETORT_SIM_SANITIZE=thread >/dev/null
cmake --build "$out" -j "${JOBS:-$(nproc)}" --target "${tests[@]/#/test_}" "${targets[@]}"
cd "$out"
# The planted races' test exists only where ThreadSanitizer is on: without it nothing is checked.
if ! ./tests/test_simulator --gtest_list_tests | grep -q RacingBetweenBarriersAreReported; then
  echo "[racecheck] $out/tests/test_simulator was not built with ThreadSanitizer" >&2
  exit 1
fi
# One OpenMP thread: libgomp's own synchronisation is invisible to ThreadSanitizer. Two
# simulated GPUs: one per rank of the NCCL test and of the meshes.
export OMP_NUM_THREADS=1 SIM_GPUS=${SIM_GPUS:-2}
ctest -j "${SIM_JOBS:-2}" -L '^gpu$' -R "^gpu_test_($(IFS='|'; echo "${tests[*]}"))\$" \
  --output-on-failure --no-tests=error "$@"
[ ${#targets[@]} -eq 0 ] && exit 0

work=$out/racecheck-meshes
rm -rf "$work" && mkdir -p "$work"
python3 "$root/tests/e2e/make_corpus.py" "$work/corpus" 40 >/dev/null
./retort tokenize "$root/configs/tiny.yaml" --set "tokenize.inputs=[$work/corpus]" \
  --set "tokenize.out=$work/tok" >/dev/null
mesh() {  # mesh NAME SETTINGS...: two training steps on two simulated GPUs
  local name=$1; shift
  local sets=(); for kv in "$@"; do sets+=(--set "$kv"); done
  echo "[racecheck] mesh $name: $*"
  if ! mpirun --allow-run-as-root --oversubscribe -np 2 ./retort train "$root/configs/tiny.yaml" \
      --set "data.train=$work/tok/train.h5" --set "data.val=$work/tok/val.h5" \
      --set train.steps=2 --set train.log_every=1 --set checkpoint.every=0 --set eval.every=0 \
      --set train.batch_tokens=256 --set train.micro_batch=0 --set parallel.device=cuda \
      "${sets[@]}" --set "run.dir=$work/$name" > "$work/$name.log" 2>&1; then
    grep -v '^\s*$' "$work/$name.log" | grep -m1 -A40 'WARNING: ThreadSanitizer' >&2 ||
      tail -20 "$work/$name.log" >&2
    echo "[racecheck] mesh $name failed (log: $work/$name.log)" >&2
    exit 1
  fi
}
mesh dp2 parallel.dp=2
mesh fsdp2_bf16 parallel.fsdp=2 train.precision=bf16 parallel.param_gather=bf16 \
  parallel.grad_reduce=bf16
mesh tp2_sp parallel.tp=2 parallel.sp=true
echo "[racecheck] PASS: no race in the tests or the meshes"
