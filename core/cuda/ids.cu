// cuda::first_id_out_of_range: the smallest index i with ids[i] ∉ [lo, hi), or -1.
// Grid-stride threads fold their first offender into one integer with atomicMin (integer
// atomics: the result is exact and independent of scheduling).
#include "core/cuda/kernels.h"
#include "core/cuda/runtime.h"

namespace retort::cuda {

namespace {

__global__ void first_bad_id_kernel(unsigned long long* first, const int32_t* ids, int64_t n,
                                    int32_t lo, int32_t hi) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    if (ids[i] < lo || ids[i] >= hi) {
      atomicMin(first, static_cast<unsigned long long>(i));
      return;  // later i of this thread are larger
    }
  }
}

}  // namespace

int64_t first_id_out_of_range(const int32_t* ids, int64_t n, int32_t lo, int32_t hi) {
  if (n == 0) return -1;
  cudaStream_t s = compute_stream();
  auto* first = static_cast<unsigned long long*>(allocate(sizeof(unsigned long long)));
  const unsigned long long none = ~0ull;
  RETORT_CUDA_CHECK(cudaMemcpyAsync(first, &none, sizeof none, cudaMemcpyHostToDevice, s));
  first_bad_id_kernel<<<grid_for(n, 256), 256, 0, s>>>(first, ids, n, lo, hi);
  RETORT_CUDA_CHECK_LAUNCH();
  unsigned long long result = none;
  RETORT_CUDA_CHECK(cudaMemcpyAsync(&result, first, sizeof result, cudaMemcpyDeviceToHost, s));
  RETORT_CUDA_CHECK(cudaStreamSynchronize(s));
  release(first);
  return result == none ? -1 : static_cast<int64_t>(result);
}

}  // namespace retort::cuda
