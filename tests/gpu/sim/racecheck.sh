#!/bin/bash
# Races between the threads of a block, and between neighbouring blocks of a grid, in every
# kernel the GPU unit tests run, whatever the schedule: builds the simulator's own test, the
# kernel tests and the model tests with RETORT_CUDA=SIM and RETORT_SIM_SANITIZE=thread into
# $RACE_BUILD (default build-race/ in the repository root, incremental), where each simulated
# thread is a ThreadSanitizer fiber ordered only by its block's barriers and neighbouring blocks
# are unordered (README.md), and runs them. The first race ends its test with
# ThreadSanitizer's report: both accesses with their lines (build-race/cuda-sim/NAME.cpp:N is
# line N of core/cuda/NAME.cu). Not the e2e scripts (MPI under ThreadSanitizer).
#   tests/gpu/sim/racecheck.sh                     all three tests (~9 min on 2 cores once built)
#   tests/gpu/sim/racecheck.sh -R cuda_kernels     extra arguments go to ctest
#   tests/gpu/sim/racecheck.sh --selftest          the detector's own test only (CI, ~2 min)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${RACE_BUILD:-$root/build-race}
tests=(simulator cuda_kernels cuda_model nccl_communicator)
if [ "${1:-}" = --selftest ]; then
  tests=(simulator)
  shift
fi
echo "[racecheck] configuring and building $out (RETORT_CUDA=SIM, RETORT_SIM_SANITIZE=thread)"
cmake -S "$root" -B "$out" -DCMAKE_BUILD_TYPE=Release -DRETORT_CUDA=SIM -DRETORT_FUZZ=OFF \
  -DRETORT_SIM_SANITIZE=thread >/dev/null
cmake --build "$out" -j "${JOBS:-$(nproc)}" --target "${tests[@]/#/test_}"
cd "$out"
# The planted races' test exists only where ThreadSanitizer is on: without it nothing is checked.
if ! ./tests/test_simulator --gtest_list_tests | grep -q RacingBetweenBarriersAreReported; then
  echo "[racecheck] $out/tests/test_simulator was not built with ThreadSanitizer" >&2
  exit 1
fi
# One OpenMP thread: libgomp's own synchronisation is invisible to ThreadSanitizer. Two
# simulated GPUs for the NCCL test's two ranks.
SIM_GPUS=${SIM_GPUS:-2} OMP_NUM_THREADS=1 ctest -j "${SIM_JOBS:-2}" -L '^gpu$' \
  -R "^gpu_test_($(IFS='|'; echo "${tests[*]}"))\$" --output-on-failure --no-tests=error "$@"
