#!/bin/bash
# Runs retort's GPU tests (label `gpu`) without a GPU: builds retort with RETORT_CUDA=SIM into
# $SIM_BUILD (default build-sim/ in the repository root, incremental) and runs
# `ctest -L '^gpu$'` there with SIM_GPUS simulated GPUs (default 4, so the NCCL dp2 check and
# the 4-rank meshes of tests/e2e/gpu_meshes.sh run).
# Fails when a test is skipped: on the simulator every GPU test must run. See README.md.
#   tests/gpu/sim/run.sh                          all GPU tests
#   tests/gpu/sim/run.sh -R cuda_kernels          extra arguments go to ctest
#   SIM_RANDOM=7 tests/gpu/sim/run.sh             adversarial warp schedule, seed 7
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${SIM_BUILD:-$root/build-sim}
echo "[sim] configuring and building $out (RETORT_CUDA=SIM)"
cmake -S "$root" -B "$out" -DCMAKE_BUILD_TYPE=Release -DRETORT_CUDA=SIM -DRETORT_FUZZ=OFF \
  ${SIM_CMAKE_ARGS:-} >/dev/null
cmake --build "$out" -j "${JOBS:-$(nproc)}" --target retort test_cuda_kernels test_cuda_model test_simulator test_nccl_communicator
cd "$out"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
SIM_GPUS=${SIM_GPUS:-4} GPU_TRAIN_STEPS=${GPU_TRAIN_STEPS:-6} GPU_DISTILL_STEPS=${GPU_DISTILL_STEPS:-4} ctest -j "${SIM_JOBS:-2}" -L '^gpu$' --output-on-failure --no-tests=error "$@" 2>&1 | tee "$log" \
  || status=$?
if grep -q -- '\*\*\*Skipped\|Not Run' "$log"; then
  echo "[sim] a GPU test was skipped on the simulator: every one must run here" >&2
  exit 1
fi
exit $status
