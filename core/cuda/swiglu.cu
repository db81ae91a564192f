// SwiGLU on the packed gate/up product (math as core/cpu/swiglu.cpp): per row r,
// z = gate_up[r, :F], u = gate_up[r, F:],  h = silu(z) ⊙ u,  silu(z) = z·σ(z), σ(z) = 1/(1+e^−z)
//   dgate = dh ⊙ u ⊙ σ(z)(1 + z(1 − σ(z))),   dup = dh ⊙ silu(z)   (into dgate_up's halves)
// Elementwise over h's rows·F elements, grid-stride: element i = r·F + c of h reads gate_up at
// r·2F + c = i + r·F (gate) and F further (up). Four elements per thread step (16- or 8-byte
// loads) when F is a multiple of 4 and every pointer is aligned, else one at a time. Outputs,
// gate_up and dh float32 or bf16 (outputs rounded at the store). expf (full precision); for
// z < −88, e^−z overflows to inf and σ(z) = 0 exactly (the CPU's clamped exp gives ≈1e−38).

#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"

namespace retort::cuda {

namespace {

__device__ __forceinline__ float sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }
__device__ __forceinline__ float silu_times(float z, float u) { return z * sigmoid(z) * u; }
__device__ __forceinline__ float2 silu_grads(float z, float u, float d) {  // (dgate, dup)
  const float s = sigmoid(z);
  return make_float2(d * u * s * (1.0f + z * (1.0f - s)), d * z * s);
}

// Out, In: float, or uint16_t for bf16 (outputs rounded at the store).
template <class Out, class In>
__global__ void swiglu_forward_kernel(Out* h, const In* gate_up, int64_t n, int64_t F) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t g = i + (i / F) * F;
    store(&h[i], silu_times(load(&gate_up[g]), load(&gate_up[g + F])));
  }
}

// n4 = n / 4 groups of four; F4 = F / 4.
template <class Out, class In>
__global__ void swiglu_forward_x4_kernel(Out* h, const In* gate_up, int64_t n4, int64_t F4) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t g = 4 * (i + (i / F4) * F4);
    const float4 z = load4(gate_up + g), u = load4(gate_up + g + 4 * F4);
    store4(h + 4 * i, make_float4(silu_times(z.x, u.x), silu_times(z.y, u.y),
                                  silu_times(z.z, u.z), silu_times(z.w, u.w)));
  }
}

template <class Out, class In>
__global__ void swiglu_backward_kernel(Out* dgate_up, const In* dh, const In* gate_up, int64_t n,
                                       int64_t F) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t g = i + (i / F) * F;
    const float2 d = silu_grads(load(&gate_up[g]), load(&gate_up[g + F]), load(&dh[i]));
    store(&dgate_up[g], d.x);
    store(&dgate_up[g + F], d.y);
  }
}

template <class Out, class In>
__global__ void swiglu_backward_x4_kernel(Out* dgate_up, const In* dh, const In* gate_up,
                                          int64_t n4, int64_t F4) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t g = 4 * (i + (i / F4) * F4);
    const float4 z = load4(gate_up + g), u = load4(gate_up + g + 4 * F4), d = load4(dh + 4 * i);
    const float2 a = silu_grads(z.x, u.x, d.x), b = silu_grads(z.y, u.y, d.y),
                 c = silu_grads(z.z, u.z, d.z), e = silu_grads(z.w, u.w, d.w);
    store4(dgate_up + g, make_float4(a.x, b.x, c.x, e.x));
    store4(dgate_up + g + 4 * F4, make_float4(a.y, b.y, c.y, e.y));
  }
}

}  // namespace

template <class Out, class In>
void swiglu_forward(Out* h, const In* gate_up, int64_t rows, int64_t F) {
  const int64_t n = rows * F;
  if (n <= 0) return;
  if (vectorizable(F, {{h, sizeof(Out)}, {gate_up, sizeof(In)}})) {
    const auto kernel = swiglu_forward_x4_kernel<Out, In>;
    kernel<<<grid_for(n / 4, kBlock), kBlock, 0, compute_stream()>>>(h, gate_up, n / 4, F / 4);
  } else {
    const auto kernel = swiglu_forward_kernel<Out, In>;
    kernel<<<grid_for(n, kBlock), kBlock, 0, compute_stream()>>>(h, gate_up, n, F);
  }
  RETORT_CUDA_CHECK_LAUNCH();
}

template <class Out, class In>
void swiglu_backward(Out* dgate_up, const In* dh, const In* gate_up, int64_t rows, int64_t F) {
  const int64_t n = rows * F;
  if (n <= 0) return;
  if (vectorizable(F, {{dgate_up, sizeof(Out)}, {dh, sizeof(In)}, {gate_up, sizeof(In)}})) {
    const auto kernel = swiglu_backward_x4_kernel<Out, In>;
    kernel<<<grid_for(n / 4, kBlock), kBlock, 0, compute_stream()>>>(dgate_up, dh, gate_up,
                                                                      n / 4, F / 4);
  } else {
    const auto kernel = swiglu_backward_kernel<Out, In>;
    kernel<<<grid_for(n, kBlock), kBlock, 0, compute_stream()>>>(dgate_up, dh, gate_up, n, F);
  }
  RETORT_CUDA_CHECK_LAUNCH();
}

#define RETORT_SWIGLU(Out, In)                                                          \
  template void swiglu_forward(Out*, const In*, int64_t, int64_t);                     \
  template void swiglu_backward(Out*, const In*, const In*, int64_t, int64_t);
RETORT_SWIGLU(float, float)
RETORT_SWIGLU(uint16_t, float)
RETORT_SWIGLU(float, uint16_t)
RETORT_SWIGLU(uint16_t, uint16_t)
#undef RETORT_SWIGLU

}  // namespace retort::cuda
