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
//    by binary search (owner_of) and updates its chunk with a block-stride loop, four
//    elements per thread and step where the tensor's arrays allow 16-byte loads.
#include <algorithm>
#include <cmath>

#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"

namespace retort::cuda {

namespace {

constexpr int kAdamWTensors = 64;      // tensors per launch
constexpr int64_t kAdamWChunk = 8192;  // elements per block (32 per thread)

// The update of one element (p, m, v in place).
struct AdamWUpdate {
  float lr, beta1, beta2, eps, weight_decay, inv_bc1, inv_bc2, grad_scale;
  __device__ __forceinline__ void operator()(float& p, float g, float& m, float& v) const {
    const float gi = g * grad_scale;
    m = beta1 * m + (1.0f - beta1) * gi;
    v = beta2 * v + (1.0f - beta2) * gi * gi;
    p = p - lr * ((m * inv_bc1) / (sqrtf(v * inv_bc2) + eps) + weight_decay * p);
  }
};

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, int64_t n,
                             AdamWUpdate update) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    update(p[i], g[i], m[i], v[i]);
}

// The tensors of one multi-tensor launch (3600 bytes).
struct AdamWLaunch {
  float* p[kAdamWTensors];
  const float* g[kAdamWTensors];
  float* m[kAdamWTensors];
  float* v[kAdamWTensors];
  int64_t n[kAdamWTensors];
  int64_t first_block[kAdamWTensors + 1];  // tensor j: blocks [first_block[j], first_block[j+1])
  float weight_decay[kAdamWTensors];
  float lr[kAdamWTensors];  // the step's lr · the tensor's lr_scale
  int count;
};
static_assert(sizeof(AdamWLaunch) + sizeof(AdamWUpdate) <= 4096, "kernel parameters over 4 KiB");

// A block's chunk [begin, end): four elements at a time where the tensor's four arrays are
// 16-byte aligned (chunks start at multiples of kAdamWChunk), then the tail one at a time.
__global__ void adamw_multi_kernel(AdamWLaunch a, AdamWUpdate update) {
  const int j = owner_of(a.first_block, a.count, blockIdx.x);
  const int64_t begin = (blockIdx.x - a.first_block[j]) * kAdamWChunk;
  const int64_t end = begin + kAdamWChunk < a.n[j] ? begin + kAdamWChunk : a.n[j];
  float *p = a.p[j], *m = a.m[j], *v = a.v[j];
  const float* g = a.g[j];
  update.weight_decay = a.weight_decay[j];
  update.lr = a.lr[j];
  int64_t i = begin;
  if (((reinterpret_cast<uintptr_t>(p) | reinterpret_cast<uintptr_t>(g) |
        reinterpret_cast<uintptr_t>(m) | reinterpret_cast<uintptr_t>(v)) & 15) == 0) {
    const int64_t end4 = begin + (end - begin) / 4 * 4;
    for (int64_t q = begin + 4 * int64_t(threadIdx.x); q < end4; q += 4 * int64_t(blockDim.x)) {
      float4 p4 = load4(p + q), m4 = load4(m + q), v4 = load4(v + q);
      const float4 g4 = load4(g + q);
      update(p4.x, g4.x, m4.x, v4.x);
      update(p4.y, g4.y, m4.y, v4.y);
      update(p4.z, g4.z, m4.z, v4.z);
      update(p4.w, g4.w, m4.w, v4.w);
      store4(p + q, p4);
      store4(m + q, m4);
      store4(v + q, v4);
    }
    i = end4;
  }
  for (i += threadIdx.x; i < end; i += blockDim.x) update(p[i], g[i], m[i], v[i]);
}

// The update with 1/(1−b1^step) and 1/(1−b2^step) in double on the host, rounded to float (as
// the CPU).
AdamWUpdate make_update(float lr, float beta1, float beta2, float eps, float weight_decay,
                        int64_t step, float grad_scale) {
  const double s = static_cast<double>(step);
  const auto inv_bc = [&](float beta) {
    return static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(beta), s)));
  };
  return {lr, beta1, beta2, eps, weight_decay, inv_bc(beta1), inv_bc(beta2), grad_scale};
}

}  // namespace

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t step, float grad_scale) {
  if (n <= 0) return;
  adamw_kernel<<<grid_for(n, kBlock), kBlock, 0, compute_stream()>>>(
      p, g, m, v, n, make_update(lr, beta1, beta2, eps, weight_decay, step, grad_scale));
  RETORT_CUDA_CHECK_LAUNCH();
}

void adamw_step_multi(const AdamWTensor* tensors, int64_t count, float lr, float beta1,
                      float beta2, float eps, float weight_decay, int64_t step, float grad_scale) {
  const AdamWUpdate update = make_update(lr, beta1, beta2, eps, 0.0f, step, grad_scale);
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
      a.lr[j] = lr * x.lr_scale;
      a.first_block[j] = blocks;
      blocks += (a.n[j] + kAdamWChunk - 1) / kAdamWChunk;
    }
    a.first_block[a.count] = blocks;
    if (blocks == 0) continue;  // only empty tensors
    adamw_multi_kernel<<<grid_x(blocks), kBlock, 0, compute_stream()>>>(a, update);
    RETORT_CUDA_CHECK_LAUNCH();
  }
}

}  // namespace retort::cuda
