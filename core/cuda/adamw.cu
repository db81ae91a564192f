// AdamW with decoupled weight decay, bias-corrected, step counted from 1 (as core/cpu/adamw.cpp),
// g = grad_scale·grad (gradient clipping's scale):
//   m = b1·m + (1−b1)·g;  v = b2·v + (1−b2)·g²
//   p -= lr · ( (m/(1−b1^step)) / (sqrt(v/(1−b2^step)) + eps) + wd·p )
// The bias corrections 1/(1−b^step) are computed on the host in double and passed as floats,
// like the CPU kernel. Elementwise; both kernels below run the same inline update per element,
// so the multi-tensor step is bitwise the per-tensor step.
//  - adamw_step: one tensor, one thread per element, grid-stride.
//  - adamw_step_multi: up to kAdamWTensors tensors per launch (their pointers in a by-value
//    argument struct, under the 4 KiB parameter limit); each tensor is cut into blocks of
//    kAdamWChunk elements, the blocks numbered tensor after tensor; a block finds its tensor
//    by binary search (owner_of) and updates its chunk with a block-stride loop.
#include <algorithm>
#include <cmath>

#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"

namespace retort::cuda {

namespace {

constexpr int kAdamWTensors = 64;      // tensors per launch
constexpr int64_t kAdamWChunk = 8192;  // elements per block (32 per thread)

__device__ __forceinline__ void adamw_update(float* p, const float* g, float* m, float* v,
                                             int64_t i, float lr, float beta1, float beta2,
                                             float eps, float weight_decay, float inv_bc1,
                                             float inv_bc2, float grad_scale) {
  const float gi = g[i] * grad_scale;
  const float mi = beta1 * m[i] + (1.0f - beta1) * gi;
  const float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
  m[i] = mi;
  v[i] = vi;
  const float pi = p[i];
  p[i] = pi - lr * ((mi * inv_bc1) / (sqrtf(vi * inv_bc2) + eps) + weight_decay * pi);
}

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, int64_t n, float lr,
                             float beta1, float beta2, float eps, float weight_decay,
                             float inv_bc1, float inv_bc2, float grad_scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    adamw_update(p, g, m, v, i, lr, beta1, beta2, eps, weight_decay, inv_bc1, inv_bc2, grad_scale);
}

// The tensors of one multi-tensor launch (3344 bytes).
struct AdamWLaunch {
  float* p[kAdamWTensors];
  const float* g[kAdamWTensors];
  float* m[kAdamWTensors];
  float* v[kAdamWTensors];
  int64_t n[kAdamWTensors];
  int64_t first_block[kAdamWTensors + 1];  // tensor j: blocks [first_block[j], first_block[j+1])
  float weight_decay[kAdamWTensors];
  int count;
};
static_assert(sizeof(AdamWLaunch) + 7 * sizeof(float) <= 4096, "kernel parameters over 4 KiB");

__global__ void adamw_multi_kernel(AdamWLaunch a, float lr, float beta1, float beta2, float eps,
                                   float inv_bc1, float inv_bc2, float grad_scale) {
  const int j = owner_of(a.first_block, a.count, blockIdx.x);
  const int64_t begin = (blockIdx.x - a.first_block[j]) * kAdamWChunk;
  const int64_t end = begin + kAdamWChunk < a.n[j] ? begin + kAdamWChunk : a.n[j];
  for (int64_t i = begin + threadIdx.x; i < end; i += blockDim.x)
    adamw_update(a.p[j], a.g[j], a.m[j], a.v[j], i, lr, beta1, beta2, eps, a.weight_decay[j],
                 inv_bc1, inv_bc2, grad_scale);
}

// 1/(1−b1^step) and 1/(1−b2^step), in double on the host, rounded to float (as the CPU).
void bias_corrections(float beta1, float beta2, int64_t step, float& inv_bc1, float& inv_bc2) {
  const double s = static_cast<double>(step);
  inv_bc1 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(beta1), s)));
  inv_bc2 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(beta2), s)));
}

}  // namespace

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t step, float grad_scale) {
  if (n <= 0) return;
  float inv_bc1, inv_bc2;
  bias_corrections(beta1, beta2, step, inv_bc1, inv_bc2);
  adamw_kernel<<<grid_for(n, kBlock), kBlock, 0, compute_stream()>>>(
      p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, inv_bc1, inv_bc2, grad_scale);
  RETORT_CUDA_CHECK_LAUNCH();
}

void adamw_step_multi(const AdamWTensor* tensors, int64_t count, float lr, float beta1,
                      float beta2, float eps, float weight_decay, int64_t step, float grad_scale) {
  float inv_bc1, inv_bc2;
  bias_corrections(beta1, beta2, step, inv_bc1, inv_bc2);
  for (int64_t t0 = 0; t0 < count; t0 += kAdamWTensors) {
    AdamWLaunch a{};
    a.count = static_cast<int>(std::min<int64_t>(kAdamWTensors, count - t0));
    int64_t blocks = 0;
    for (int j = 0; j < a.count; ++j) {
      const AdamWTensor& x = tensors[t0 + j];
      a.p[j] = x.p;
      a.g[j] = x.g;
      a.m[j] = x.m;
      a.v[j] = x.v;
      a.n[j] = std::max<int64_t>(x.n, 0);
      a.weight_decay[j] = x.decay ? weight_decay : 0.0f;
      a.first_block[j] = blocks;
      blocks += (a.n[j] + kAdamWChunk - 1) / kAdamWChunk;
    }
    a.first_block[a.count] = blocks;
    if (blocks == 0) continue;  // only empty tensors
    adamw_multi_kernel<<<grid_x(blocks), kBlock, 0, compute_stream()>>>(a, lr, beta1, beta2, eps,
                                                                         inv_bc1, inv_bc2, grad_scale);
    RETORT_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace retort::cuda
