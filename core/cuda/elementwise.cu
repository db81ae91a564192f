// Elementwise ops, the deterministic sum of squares and the bf16 conversions.
// Elementwise kernels: 1-D grid-stride loops, kBlock threads, grid from cuda::grid_for.
// sum_squares: two passes with a partition that depends only on n (not on the GPU):
//   pass 1: G = min(ceil(n / 4096), 1024) blocks; thread g of the G·256 sums x_i² in double
//           for i = g, g + G·256, ... in order; a fixed block tree gives partial[block];
//   pass 2: one block of 1024 threads adds partial[0..G) with the same fixed tree.
#include <algorithm>

#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"

namespace retort::cuda {

namespace {

__global__ void fill_kernel(float* x, int64_t n, float value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] = value;
}

__global__ void add_kernel(float* y, const float* x, int64_t n, float alpha) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] += alpha * x[i];
}

__global__ void scale_kernel(float* y, int64_t n, float alpha) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] *= alpha;
}

constexpr int kSumThreads = 256;
constexpr int kSumMaxBlocks = 1024;
constexpr int64_t kSumPerBlock = 4096;  // elements per block before the block count caps

__global__ void sum_squares_partial(double* partial, const float* x, int64_t n) {
  __shared__ double scratch[kWarp];
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  double acc = 0.0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride) {
    const double v = x[i];
    acc += v * v;
  }
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// One block of kSumMaxBlocks threads: thread t holds partial[t] (0 beyond nparts).
__global__ void sum_squares_final(double* out, const double* partial, int nparts) {
  __shared__ double scratch[kWarp];
  double v = threadIdx.x < nparts ? partial[threadIdx.x] : 0.0;
  v = block_sum(v, scratch);
  if (threadIdx.x == 0) *out = v;
}

// Same bit manipulation as retort::f32_to_bf16 (core/tensor.cpp): round to nearest even,
// NaN keeps its sign and top mantissa bits with the quiet bit set.
__global__ void f32_to_bf16_kernel(uint16_t* dst, const float* src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const uint32_t u = __float_as_uint(src[i]);
    const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
    const uint32_t rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    dst[i] = static_cast<uint16_t>(nan ? ((u >> 16) | 0x40u) : rounded);
  }
}

__global__ void bf16_to_f32_kernel(float* dst, const uint16_t* src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = __uint_as_float(static_cast<uint32_t>(src[i]) << 16);
}

}  // namespace

void fill(float* x, int64_t n, float value) {
  if (n <= 0) return;
  fill_kernel<<<grid_for(n, kBlock), kBlock, 0, compute_stream()>>>(x, n, value);
  RETORT_CUDA_CHECK_LAUNCH();
}

// memmove semantics like the CPU: overlapping ranges go through a temporary.
void copy_bytes(void* dst, const void* src, int64_t nbytes) {
  if (nbytes <= 0 || dst == src) return;
  const char* d = static_cast<const char*>(dst);
  const char* s = static_cast<const char*>(src);
  const size_t nb = static_cast<size_t>(nbytes);
  if (d < s + nb && s < d + nb) {
    ScratchBuffer tmp(nb);
    RETORT_CUDA_CHECK(cudaMemcpyAsync(tmp.as<char>(), src, nb, cudaMemcpyDeviceToDevice,
                                      compute_stream()));
    RETORT_CUDA_CHECK(cudaMemcpyAsync(dst, tmp.as<char>(), nb, cudaMemcpyDeviceToDevice,
                                      compute_stream()));
    return;
  }
  RETORT_CUDA_CHECK(cudaMemcpyAsync(dst, src, nb, cudaMemcpyDeviceToDevice, compute_stream()));
}

void add_inplace(float* y, const float* x, int64_t n, float alpha) {
  if (n <= 0) return;
  add_kernel<<<grid_for(n, kBlock), kBlock, 0, compute_stream()>>>(y, x, n, alpha);
  RETORT_CUDA_CHECK_LAUNCH();
}

void scale_inplace(float* y, int64_t n, float alpha) {
  if (n <= 0) return;
  scale_kernel<<<grid_for(n, kBlock), kBlock, 0, compute_stream()>>>(y, n, alpha);
  RETORT_CUDA_CHECK_LAUNCH();
}

// Synchronises the compute stream: the value is returned to the host.
double sum_squares(const float* x, int64_t n) {
  if (n <= 0) return 0.0;
  const int nparts =
      static_cast<int>(std::min<int64_t>((n + kSumPerBlock - 1) / kSumPerBlock, kSumMaxBlocks));
  ScratchBuffer buf(sizeof(double) * (nparts + 1));
  double* partial = buf.as<double>();
  double* total = partial + nparts;
  sum_squares_partial<<<nparts, kSumThreads, 0, compute_stream()>>>(partial, x, n);
  RETORT_CUDA_CHECK_LAUNCH();
  sum_squares_final<<<1, kSumMaxBlocks, 0, compute_stream()>>>(total, partial, nparts);
  RETORT_CUDA_CHECK_LAUNCH();
  double result = 0.0;
  RETORT_CUDA_CHECK(cudaMemcpyAsync(&result, total, sizeof(double), cudaMemcpyDeviceToHost,
                                    compute_stream()));
  RETORT_CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
  return result;
}

void f32_to_bf16(uint16_t* dst, const float* src, int64_t n) {
  if (n <= 0) return;
  f32_to_bf16_kernel<<<grid_for(n, kBlock), kBlock, 0, compute_stream()>>>(dst, src, n);
  RETORT_CUDA_CHECK_LAUNCH();
}

void bf16_to_f32(float* dst, const uint16_t* src, int64_t n) {
  if (n <= 0) return;
  bf16_to_f32_kernel<<<grid_for(n, kBlock), kBlock, 0, compute_stream()>>>(dst, src, n);
  RETORT_CUDA_CHECK_LAUNCH();
}

}  // namespace retort::cuda
