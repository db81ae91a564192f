// A bias along the rows of a product's output (math as core/cpu/bias.cpp):
//   forward   y[r, j] += b[j]                       y: [rows, n], b: [n]
//   backward  db[j] += Σ_r dy[r, j]
// The backward's block is kBiasGroups warps over 32 columns: lane c of warp g sums column
// j0 + c over rows g, g + kBiasGroups, … (a warp reads 32 consecutive elements of one row),
// then one thread per column adds the group partials in group order (core/bias_order.h: the
// CPU's order, the same bits).

#include "core/bias_order.h"
#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"

namespace retort::cuda {

namespace {

template <class T>
__global__ void bias_add_kernel(T* y, const float* b, int64_t total, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x)
    store(&y[i], load(&y[i]) + b[i % n]);
}

// grid: ceil(n / 32) blocks of 32 · kBiasGroups threads (warp g: row group g).
template <class In>
__global__ void bias_backward_kernel(float* db, const In* dy, int64_t rows, int64_t n) {
  __shared__ float partial[kBiasGroups][kWarp];
  const int c = threadIdx.x % kWarp, g = threadIdx.x / kWarp;
  const int64_t j = blockIdx.x * int64_t(kWarp) + c;
  float s = 0.0f;
  if (j < n)
    for (int64_t r = g; r < rows; r += kBiasGroups) s += load(&dy[r * n + j]);
  partial[g][c] = s;
  __syncthreads();
  if (g == 0 && j < n) {
    float total = partial[0][c];
    for (int k = 1; k < kBiasGroups; ++k) total += partial[k][c];
    db[j] += total;
  }
}

}  // namespace

template <class T>
void bias_add(T* y, const float* b, int64_t rows, int64_t n) {
  const int64_t total = rows * n;
  if (total <= 0) return;
  const auto kernel = bias_add_kernel<T>;
  kernel<<<grid_for(total, kBlock), kBlock, 0, compute_stream()>>>(y, b, total, n);
  RETORT_CUDA_CHECK_LAUNCH();
}

template <class In>
void bias_backward(float* db, const In* dy, int64_t rows, int64_t n) {
  if (n <= 0) return;
  const auto kernel = bias_backward_kernel<In>;
  const unsigned blocks = unsigned((n + kWarp - 1) / kWarp);
  kernel<<<blocks, kWarp * kBiasGroups, 0, compute_stream()>>>(db, dy, rows, n);
  RETORT_CUDA_CHECK_LAUNCH();
}

template void bias_add(float*, const float*, int64_t, int64_t);
template void bias_add(uint16_t*, const float*, int64_t, int64_t);
template void bias_backward(float*, const float*, int64_t, int64_t);
template void bias_backward(float*, const uint16_t*, int64_t, int64_t);

}  // namespace retort::cuda
