// SwiGLU (math as core/cpu/swiglu.cpp): h = silu(z) ⊙ up, silu(z) = z·σ(z), σ(z) = 1/(1+e^−z)
//   dgate = dh ⊙ up ⊙ σ(z)(1 + z(1 − σ(z))),   dup = dh ⊙ silu(z)
// Elementwise, grid-stride: four elements per thread step (16- or 8-byte loads) over the bulk
// when every pointer is aligned, one at a time for the rest. Outputs, gate and up float32 or
// bf16 (outputs rounded at the store). expf (full precision); for z < −88, e^−z overflows to
// inf and σ(z) = 0 exactly (the CPU's clamped exp gives ≈1e−38).
#include <initializer_list>
#include <utility>

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
__global__ void swiglu_forward_kernel(Out* h, const In* gate, const In* up, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    store(&h[i], silu_times(load(&gate[i]), load(&up[i])));
}

template <class Out, class In>
__global__ void swiglu_forward_x4_kernel(Out* h, const In* gate, const In* up, int64_t n4) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float4 z = load4(gate + 4 * i), u = load4(up + 4 * i);
    store4(h + 4 * i, make_float4(silu_times(z.x, u.x), silu_times(z.y, u.y),
                                  silu_times(z.z, u.z), silu_times(z.w, u.w)));
  }
}

template <class Out, class In>
__global__ void swiglu_backward_kernel(Out* dgate, Out* dup, const In* dh, const In* gate,
                                       const In* up, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float2 g = silu_grads(load(&gate[i]), load(&up[i]), load(&dh[i]));
    store(&dgate[i], g.x);
    store(&dup[i], g.y);
  }
}

template <class Out, class In>
__global__ void swiglu_backward_x4_kernel(Out* dgate, Out* dup, const In* dh, const In* gate,
                                          const In* up, int64_t n4) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float4 z = load4(gate + 4 * i), u = load4(up + 4 * i), d = load4(dh + 4 * i);
    const float2 a = silu_grads(z.x, u.x, d.x), b = silu_grads(z.y, u.y, d.y),
                 c = silu_grads(z.z, u.z, d.z), e = silu_grads(z.w, u.w, d.w);
    store4(dgate + 4 * i, make_float4(a.x, b.x, c.x, e.x));
    store4(dup + 4 * i, make_float4(a.y, b.y, c.y, e.y));
  }
}

// Elements [0, 4·n4) go four at a time when every pointer is aligned to four of its elements;
// n4 (0 when one is not).
int64_t vector_bulk(int64_t n, std::initializer_list<std::pair<const void*, size_t>> pointers) {
  for (const auto& [p, elem] : pointers)
    if (reinterpret_cast<uintptr_t>(p) % (4 * elem) != 0) return 0;
  return n / 4;
}

template <class Out, class In>
void forward(Out* h, const In* gate, const In* up, int64_t n) {
  if (n <= 0) return;
  const int64_t n4 = vector_bulk(n, {{h, sizeof(Out)}, {gate, sizeof(In)}, {up, sizeof(In)}});
  if (n4 > 0) {
    const auto kernel = swiglu_forward_x4_kernel<Out, In>;
    kernel<<<grid_for(n4, kBlock), kBlock, 0, compute_stream()>>>(h, gate, up, n4);
    RETORT_CUDA_CHECK_LAUNCH();
  }
  const int64_t done = 4 * n4;
  if (done == n) return;
  const auto kernel = swiglu_forward_kernel<Out, In>;
  kernel<<<grid_for(n - done, kBlock), kBlock, 0, compute_stream()>>>(h + done, gate + done,
                                                                      up + done, n - done);
  RETORT_CUDA_CHECK_LAUNCH();
}

template <class Out, class In>
void backward(Out* dgate, Out* dup, const In* dh, const In* gate, const In* up, int64_t n) {
  if (n <= 0) return;
  const int64_t n4 = vector_bulk(n, {{dgate, sizeof(Out)}, {dup, sizeof(Out)}, {dh, sizeof(In)},
                                     {gate, sizeof(In)}, {up, sizeof(In)}});
  if (n4 > 0) {
    const auto kernel = swiglu_backward_x4_kernel<Out, In>;
    kernel<<<grid_for(n4, kBlock), kBlock, 0, compute_stream()>>>(dgate, dup, dh, gate, up, n4);
    RETORT_CUDA_CHECK_LAUNCH();
  }
  const int64_t done = 4 * n4;
  if (done == n) return;
  const auto kernel = swiglu_backward_kernel<Out, In>;
  kernel<<<grid_for(n - done, kBlock), kBlock, 0, compute_stream()>>>(
      dgate + done, dup + done, dh + done, gate + done, up + done, n - done);
  RETORT_CUDA_CHECK_LAUNCH();
}

}  // namespace

#define RETORT_SWIGLU(Out, In)                                                                \
  void swiglu_forward(Out* h, const In* gate, const In* up, int64_t n) {                     \
    forward(h, gate, up, n);                                                                 \
  }                                                                                          \
  void swiglu_backward(Out* dgate, Out* dup, const In* dh, const In* gate, const In* up,  \
                       int64_t n) {                                                          \
    backward(dgate, dup, dh, gate, up, n);                                                   \
  }
RETORT_SWIGLU(float, float)
RETORT_SWIGLU(uint16_t, float)
RETORT_SWIGLU(float, uint16_t)
RETORT_SWIGLU(uint16_t, uint16_t)
#undef RETORT_SWIGLU

}  // namespace retort::cuda
