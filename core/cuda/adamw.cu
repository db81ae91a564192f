// AdamW with decoupled weight decay, bias-corrected, step counted from 1 (as core/cpu/adamw.cpp):
//   m = b1·m + (1−b1)·g;  v = b2·v + (1−b2)·g²
//   p -= lr · ( (m/(1−b1^step)) / (sqrt(v/(1−b2^step)) + eps) + wd·p )
// The bias corrections 1/(1−b^step) are computed on the host in double and passed as floats,
// like the CPU kernel. Elementwise, one thread per element, grid-stride.
#include <cmath>

#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"

namespace retort::cuda {

namespace {

__global__ void adamw_kernel(float* p, const float* g, float* m, float* v, int64_t n, float lr,
                             float beta1, float beta2, float eps, float weight_decay,
                             float inv_bc1, float inv_bc2) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float gi = g[i];
    const float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    const float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float pi = p[i];
    p[i] = pi - lr * ((mi * inv_bc1) / (sqrtf(vi * inv_bc2) + eps) + weight_decay * pi);
  }
}

}  // namespace

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t step) {
  if (n <= 0) return;
  const double s = static_cast<double>(step);
  const float inv_bc1 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(beta1), s)));
  const float inv_bc2 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(beta2), s)));
  adamw_kernel<<<grid_for(n, kBlock), kBlock, 0, compute_stream()>>>(
      p, g, m, v, n, lr, beta1, beta2, eps, weight_decay, inv_bc1, inv_bc2);
  RETORT_CUDA_CHECK_LAUNCH();
}

}  // namespace retort::cuda
