// Device helpers shared by the kernels in core/cuda/*.cu (include only from .cu files).
//  - warp and block reductions with a FIXED combination tree (xor butterfly inside a warp,
//    then warp 0 over the per-warp results in warp order): bitwise reproducible run to run;
//  - the online (max, sum-of-exp) pair used by every row-wise logsumexp;
//  - ScratchBuffer: a stream-ordered temporary on the compute stream.
#pragma once
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <utility>

#include "core/cuda/runtime.h"

namespace retort::cuda {

constexpr int kWarp = 32;

struct SumOp {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct MaxOp {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a > b ? a : b; }
};
struct MinOp {
  template <class T>
  __device__ __forceinline__ T operator()(T a, T b) const { return a < b ? a : b; }
};

// Butterfly over the 32 lanes; every lane ends with the same value (a+b == b+a exactly).
template <class T, class Op>
__device__ __forceinline__ T warp_reduce(T v, Op op) {
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) v = op(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}

// Reduction over the whole block (blockDim.x a multiple of 32, at most 1024); every thread
// returns the result. `scratch` holds >= 32 values of T in shared memory; it may be reused
// right after the call (the trailing barrier protects it).
template <class T, class Op>
__device__ __forceinline__ T block_reduce(T v, Op op, T identity, T* scratch) {
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int nwarps = blockDim.x / kWarp;
  v = warp_reduce(v, op);
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    T w = lane < nwarps ? scratch[lane] : identity;
    w = warp_reduce(w, op);
    if (lane == 0) scratch[0] = w;
  }
  __syncthreads();
  const T out = scratch[0];
  __syncthreads();
  return out;
}

template <class T>
__device__ __forceinline__ T block_sum(T v, T* scratch) {
  return block_reduce(v, SumOp{}, T(0), scratch);
}
__device__ __forceinline__ float block_max(float v, float* scratch) {
  return block_reduce(v, MaxOp{}, -INFINITY, scratch);
}

// Online logsumexp state: m = running max, s = Σ exp(x − m). m = −inf means "empty".
struct MaxSum {
  float m, s;
};

__device__ __forceinline__ MaxSum maxsum_add(MaxSum a, float x) {
  if (x > a.m) return {x, a.s * expf(a.m - x) + 1.0f};  // expf(−inf) = 0 when a is empty
  if (x == -INFINITY) return a;                          // a masked entry (also keeps NaN out)
  return {a.m, a.s + expf(x - a.m)};
}

__device__ __forceinline__ MaxSum maxsum_merge(MaxSum a, MaxSum b) {
  const float m = a.m > b.m ? a.m : b.m;
  if (m == -INFINITY) return {m, 0.0f};
  const float sa = a.m == -INFINITY ? 0.0f : a.s * expf(a.m - m);
  const float sb = b.m == -INFINITY ? 0.0f : b.s * expf(b.m - m);
  return {m, sa + sb};
}

__device__ __forceinline__ MaxSum warp_reduce_maxsum(MaxSum v) {
#pragma unroll
  for (int off = kWarp / 2; off > 0; off /= 2) {
    // Both partners compute the same bits: the merge is symmetric (a + b == b + a exactly).
    const MaxSum o{__shfl_xor_sync(0xffffffffu, v.m, off), __shfl_xor_sync(0xffffffffu, v.s, off)};
    v = maxsum_merge(v, o);
  }
  return v;
}

// Same bit manipulation as retort::f32_to_bf16 (core/tensor.cpp): round to nearest even,
// NaN keeps its sign and top mantissa bits with the quiet bit set.
__device__ __forceinline__ uint32_t round_to_bf16(float f) {
  const uint32_t u = __float_as_uint(f);
  const bool nan = (u & 0x7fffffffu) > 0x7f800000u;
  return nan ? ((u >> 16) | 0x40u) : (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
}

// *p = v in the output's precision: kernels templated on Out write float32 or bf16
// (uint16_t bits) activations, rounded once where they are produced; load reads either.
__device__ __forceinline__ void store(float* p, float v) { *p = v; }
__device__ __forceinline__ void store(uint16_t* p, float v) {
  *p = static_cast<uint16_t>(round_to_bf16(v));
}
__device__ __forceinline__ float load(const float* p) { return *p; }
__device__ __forceinline__ float load(const uint16_t* p) {
  return __uint_as_float(static_cast<uint32_t>(*p) << 16);
}

// Four consecutive inputs at once: one 16-byte (float) or 8-byte (bf16) load; p aligned to it.
__device__ __forceinline__ float4 load4(const float* p) { return *reinterpret_cast<const float4*>(p); }
__device__ __forceinline__ float4 load4(const uint16_t* p) {
  const uint2 v = *reinterpret_cast<const uint2*>(p);
  return make_float4(__uint_as_float(v.x << 16), __uint_as_float(v.x & 0xffff0000u),
                     __uint_as_float(v.y << 16), __uint_as_float(v.y & 0xffff0000u));
}

// Four consecutive outputs at once: one 16-byte (float) or 8-byte (bf16) store; p aligned to it.
__device__ __forceinline__ void store4(float* p, float4 v) { *reinterpret_cast<float4*>(p) = v; }
__device__ __forceinline__ void store4(uint16_t* p, float4 v) {
  *reinterpret_cast<uint2*>(p) = make_uint2(round_to_bf16(v.x) | round_to_bf16(v.y) << 16,
                                            round_to_bf16(v.z) | round_to_bf16(v.w) << 16);
}

// A row of n elements at x that load4 can read (n % 4 == 0, x aligned to four elements).
template <class In>
__device__ __forceinline__ bool row_vectorizable(const In* x, int64_t n) {
  return n % 4 == 0 && reinterpret_cast<uintptr_t>(x) % (4 * sizeof(In)) == 0;
}

// logsumexp over one row x[0, n) scaled by `scale` (> 0) computed by the whole block:
//   lse = m + log Σ exp(x·scale − m), m = max x·scale.
// Each thread runs the online update over its strided elements (strided chunks of four when
// the row is row_vectorizable), then a fixed tree merges. scratch: >= 64 floats of shared memory.
// x float32 or bf16 (uint16_t), read as fp32.
template <class In>
__device__ __forceinline__ float block_row_lse(const In* x, int64_t n, float scale,
                                               float* scratch) {
  MaxSum a{-INFINITY, 0.0f};
  if (row_vectorizable(x, n)) {
    for (int64_t i = threadIdx.x; i < n / 4; i += blockDim.x) {
      const float4 v = load4(x + 4 * i);
      a = maxsum_add(maxsum_add(maxsum_add(maxsum_add(a, v.x * scale), v.y * scale), v.z * scale),
                     v.w * scale);
    }
  } else {
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
      a = maxsum_add(a, load(&x[i]) * scale);
  }
  a = warp_reduce_maxsum(a);
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int nwarps = blockDim.x / kWarp;
  if (lane == 0) scratch[warp] = a.m, scratch[kWarp + warp] = a.s;
  __syncthreads();
  if (warp == 0) {
    MaxSum w = lane < nwarps ? MaxSum{scratch[lane], scratch[kWarp + lane]}
                             : MaxSum{-INFINITY, 0.0f};
    w = warp_reduce_maxsum(w);
    if (lane == 0) scratch[0] = w.m + logf(w.s);
  }
  __syncthreads();
  const float out = scratch[0];
  __syncthreads();
  return out;
}

// Multi-tensor launches (adamw.cu, elementwise.cu): the tensors of one launch travel in a
// by-value kernel argument struct (at most 4 KiB of kernel parameters) that numbers the work
// items (blocks or chunks) tensor after tensor: tensor j owns items [first[j], first[j + 1]).
// Returns the j < count that owns `item` (first[0] == 0 <= item < first[count]); tensors
// without items (first[j] == first[j + 1]) are never returned. Binary search, ~log2(count) steps.
__device__ __forceinline__ int owner_of(const int64_t* first, int count, int64_t item) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (first[mid] <= item) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

// A temporary device buffer, allocated and released in order on the compute stream (the
// release is queued after the kernels that use it, so no host synchronisation is needed).
class ScratchBuffer {
 public:
  explicit ScratchBuffer(size_t bytes) : p_(allocate(bytes)) {}
  ~ScratchBuffer() {
    if (p_) cudaFreeAsync(p_, compute_stream());  // no throw from a destructor
  }
  ScratchBuffer(const ScratchBuffer&) = delete;
  ScratchBuffer& operator=(const ScratchBuffer&) = delete;
  template <class T>
  T* as() const { return static_cast<T*>(p_); }

 private:
  void* p_;
};

// load4/store4 usable: rows of n elements (n a multiple of 4) and every pointer aligned to four
// of its elements (given as {pointer, element size}).
inline bool vectorizable(int64_t n, std::initializer_list<std::pair<const void*, size_t>> pointers) {
  if (n % 4 != 0) return false;
  for (const auto& [p, elem] : pointers)
    if (reinterpret_cast<uintptr_t>(p) % (4 * elem) != 0) return false;
  return true;
}

// Blocks of 1-D launches: grid-stride loops with 64-bit indices.
constexpr int kBlock = 256;

// gridDim.x for one block per item (rows, tiles); the hardware limit is 2^31 − 1.
inline unsigned grid_x(int64_t n) {
  RETORT_CHECK(n > 0 && n <= 2147483647LL, "CUDA grid of ", n, " blocks is out of range");
  return static_cast<unsigned>(n);
}

// Dynamic shared memory that, with the kernel's static shared memory, exceeds the 48 KiB
// default needs an opt-in per kernel; a clear error when the GPU allows less per block.
inline void require_smem(const void* kernel, size_t bytes, const char* what) {
  if (bytes <= 32 * 1024) return;  // no kernel here has more than 16 KiB of static memory
  cudaFuncAttributes attr{};
  RETORT_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
  const size_t total = bytes + attr.sharedSizeBytes;
  if (total <= 48 * 1024) return;
  int dev = 0, optin = 0;
  RETORT_CUDA_CHECK(cudaGetDevice(&dev));
  RETORT_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  RETORT_CHECK(total <= static_cast<size_t>(optin), what, " needs ", total,
               " bytes of shared memory per block; this GPU allows ", optin);
  RETORT_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         static_cast<int>(bytes)));
}

}  // namespace retort::cuda
