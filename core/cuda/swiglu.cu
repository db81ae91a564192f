// SwiGLU (math as core/cpu/swiglu.cpp): h = silu(z) ⊙ up, silu(z) = z·σ(z), σ(z) = 1/(1+e^−z)
//   dgate = dh ⊙ up ⊙ σ(z)(1 + z(1 − σ(z))),   dup = dh ⊙ silu(z)
// Elementwise, one thread per element, grid-stride. expf (full precision); for z < −88,
// e^−z overflows to inf and σ(z) = 0 exactly (the CPU's clamped exp gives ≈1e−38).
#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"

namespace retort::cuda {

namespace {

__device__ __forceinline__ float sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }

__global__ void swiglu_forward_kernel(float* h, const float* gate, const float* up, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float z = gate[i];
    h[i] = z * sigmoid(z) * up[i];
  }
}

__global__ void swiglu_backward_kernel(float* dgate, float* dup, const float* dh,
                                       const float* gate, const float* up, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float z = gate[i], s = sigmoid(z), d = dh[i];
    dgate[i] = d * up[i] * s * (1.0f + z * (1.0f - s));
    dup[i] = d * z * s;
  }
}

}  // namespace

void swiglu_forward(float* h, const float* gate, const float* up, int64_t n) {
  if (n <= 0) return;
  swiglu_forward_kernel<<<grid_for(n, kBlock), kBlock, 0, compute_stream()>>>(h, gate, up, n);
  RETORT_CUDA_CHECK_LAUNCH();
}

void swiglu_backward(float* dgate, float* dup, const float* dh, const float* gate,
                     const float* up, int64_t n) {
  if (n <= 0) return;
  swiglu_backward_kernel<<<grid_for(n, kBlock), kBlock, 0, compute_stream()>>>(dgate, dup, dh,
                                                                                gate, up, n);
  RETORT_CUDA_CHECK_LAUNCH();
}

}  // namespace retort::cuda
