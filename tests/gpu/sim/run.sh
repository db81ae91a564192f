#!/bin/bash
# Runs tests/gpu/test_cuda_kernels.cpp on the CPU with the CUDA kernels of core/cuda executed by
# a block simulator: for machines without a GPU (x86-64 Linux, g++ 12+, GoogleTest, OpenMP).
# It checks indexing, masking, reductions and barrier placement against the CPU kernels; it
# cannot check what only a GPU shows (see sim_runtime.cpp). Usage:
#   tests/gpu/sim/run.sh [gtest args]            e.g. --gtest_filter='CudaAttention*'
#   SIM_RANDOM=7 tests/gpu/sim/run.sh            adversarial warp schedule, seed 7
# Build output: $SIM_BUILD (default build-cuda-sim/ in the repository root), incremental.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
out=${SIM_BUILD:-$root/build-cuda-sim}
mkdir -p "$out/gen" "$out/obj"
flags="-std=c++20 -O1 -fopenmp -pthread -I$here/include -I$root -Wno-psabi"
for f in "$root"/core/cuda/*.cu; do
  g="$out/gen/$(basename "$f" .cu).cpp"
  python3 "$here/gen.py" "$f" "$g.new"
  if ! cmp -s "$g.new" "$g"; then mv "$g.new" "$g"; else rm "$g.new"; fi
done
objs=()
srcs=("$out"/gen/*.cpp "$here/sim_runtime.cpp" "$root/tests/gpu/test_cuda_kernels.cpp")
for k in adamw attention attention_decode cross_entropy elementwise embedding kd_loss rmsnorm rope swiglu; do
  srcs+=("$root/core/cpu/$k.cpp")
done
for f in "${srcs[@]}"; do
  o="$out/obj/$(echo "$f" | tr / _).o"
  # Rebuild when the source, a header of core/ or the simulator headers are newer.
  if [ ! -f "$o" ] || [ -n "$(find "$f" "$root/core" "$here/include" -newer "$o" \( -name '*.h' -o -name '*.cuh' -o -path "$f" \) -print -quit)" ]; then
    echo "compiling $(basename "$f")"
    g++ $flags -c "$f" -o "$o"
  fi
  objs+=("$o")
done
g++ $flags "${objs[@]}" -lgtest_main -lgtest -o "$out/test_cuda_kernels_sim"
exec "$out/test_cuda_kernels_sim" "$@"
