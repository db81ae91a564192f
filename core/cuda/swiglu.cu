// SwiGLU (math as core/cpu/swiglu.cpp): h = silu(z) ⊙ up, silu(z) = z·σ(z), σ(z) = 1/(1+e^−z)
//   dgate = dh ⊙ up ⊙ σ(z)(1 + z(1 − σ(z))),   dup = dh ⊙ silu(z)
// Elementwise, grid-stride: four elements per thread step (16-byte loads) over the bulk when
// every pointer is aligned, one at a time for the rest. Outputs float32, or bf16 rounded at the
// store. expf (full precision); for z < −88, e^−z overflows to inf and σ(z) = 0 exactly (the
// CPU's clamped exp gives ≈1e−38).
#include <initializer_list>

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

template <class Out>
__global__ void swiglu_forward_kernel(Out* h, const float* gate, const float* up, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    store(&h[i], silu_times(gate[i], up[i]));
}

template <class Out>
__global__ void swiglu_forward_x4_kernel(Out* h, const float4* gate, const float4* up, int64_t n4) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float4 z = gate[i], u = up[i];
    store4(h + 4 * i, make_float4(silu_times(z.x, u.x), silu_times(z.y, u.y),
                                  silu_times(z.z, u.z), silu_times(z.w, u.w)));
  }
}

template <class Out>
__global__ void swiglu_backward_kernel(Out* dgate, Out* dup, const float* dh, const float* gate,
                                       const float* up, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float2 g = silu_grads(gate[i], up[i], dh[i]);
    store(&dgate[i], g.x);
    store(&dup[i], g.y);
  }
}

template <class Out>
__global__ void swiglu_backward_x4_kernel(Out* dgate, Out* dup, const float4* dh,
                                          const float4* gate, const float4* up, int64_t n4) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float4 z = gate[i], u = up[i], d = dh[i];
    const float2 a = silu_grads(z.x, u.x, d.x), b = silu_grads(z.y, u.y, d.y),
                 c = silu_grads(z.z, u.z, d.z), e = silu_grads(z.w, u.w, d.w);
    store4(dgate + 4 * i, make_float4(a.x, b.x, c.x, e.x));
    store4(dup + 4 * i, make_float4(a.y, b.y, c.y, e.y));
  }
}

bool aligned(const void* p, size_t bytes) { return reinterpret_cast<uintptr_t>(p) % bytes == 0; }

// Elements [0, 4·n4) four at a time when every input is 16-byte aligned and every output
// aligned to four of its elements; the count done that way.
template <class Out>
int64_t vector_bulk(int64_t n, std::initializer_list<const float*> in, std::initializer_list<const Out*> out) {
  for (const float* p : in)
    if (!aligned(p, 16)) return 0;
  for (const Out* p : out)
    if (!aligned(p, 4 * sizeof(Out))) return 0;
  return n / 4;
}

template <class Out>
void forward(Out* h, const float* gate, const float* up, int64_t n) {
  if (n <= 0) return;
  const int64_t n4 = vector_bulk<Out>(n, {gate, up}, {h});
  if (n4 > 0) {
    const auto kernel = swiglu_forward_x4_kernel<Out>;
    kernel<<<grid_for(n4, kBlock), kBlock, 0, compute_stream()>>>(
        h, reinterpret_cast<const float4*>(gate), reinterpret_cast<const float4*>(up), n4);
    RETORT_CUDA_CHECK_LAUNCH();
  }
  const int64_t done = 4 * n4;
  if (done == n) return;
  const auto kernel = swiglu_forward_kernel<Out>;
  kernel<<<grid_for(n - done, kBlock), kBlock, 0, compute_stream()>>>(h + done, gate + done,
                                                                      up + done, n - done);
  RETORT_CUDA_CHECK_LAUNCH();
}

template <class Out>
void backward(Out* dgate, Out* dup, const float* dh, const float* gate, const float* up,
              int64_t n) {
  if (n <= 0) return;
  const int64_t n4 = vector_bulk<Out>(n, {dh, gate, up}, {dgate, dup});
  if (n4 > 0) {
    const auto kernel = swiglu_backward_x4_kernel<Out>;
    kernel<<<grid_for(n4, kBlock), kBlock, 0, compute_stream()>>>(
        dgate, dup, reinterpret_cast<const float4*>(dh), reinterpret_cast<const float4*>(gate),
        reinterpret_cast<const float4*>(up), n4);
    RETORT_CUDA_CHECK_LAUNCH();
  }
  const int64_t done = 4 * n4;
  if (done == n) return;
  const auto kernel = swiglu_backward_kernel<Out>;
  kernel<<<grid_for(n - done, kBlock), kBlock, 0, compute_stream()>>>(
      dgate + done, dup + done, dh + done, gate + done, up + done, n - done);
  RETORT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void swiglu_forward(float* h, const float* gate, const float* up, int64_t n) {
  forward(h, gate, up, n);
}
void swiglu_forward(uint16_t* h, const float* gate, const float* up, int64_t n) {
  forward(h, gate, up, n);
}
void swiglu_backward(float* dgate, float* dup, const float* dh, const float* gate,
                     const float* up, int64_t n) {
  backward(dgate, dup, dh, gate, up, n);
}
void swiglu_backward(uint16_t* dgate, uint16_t* dup, const float* dh, const float* gate,
                     const float* up, int64_t n) {
  backward(dgate, dup, dh, gate, up, n);
}

}  // namespace retort::cuda
