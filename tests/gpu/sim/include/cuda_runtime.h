// The CUDA runtime subset used by core/cuda/*.cu, on the host, for the block simulator
// (tests/gpu/sim/run.sh). Device memory is host memory; streams are no-ops; kernel launches
// are rewritten by gen.py into sim::launch(kernel, config)(args).
#pragma once
#include <atomic>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 {
  unsigned x, y, z;
  dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
typedef int cudaError_t;
enum : int { cudaSuccess = 0, cudaErrorMemoryAllocation = 2 };
typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
typedef struct CUpool_st* cudaMemPool_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
enum cudaDeviceAttr { cudaDevAttrMaxSharedMemoryPerBlockOptin };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
struct cudaFuncAttributes { size_t sharedSizeBytes = 0; };

inline cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind, cudaStream_t) { std::memmove(d, s, n); return 0; }
inline cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind) { std::memmove(d, s, n); return 0; }
inline cudaError_t cudaMalloc(void** p, size_t n) { *p = std::malloc(n); std::memset(*p, 0xFF, n); return 0; }
template <class T> cudaError_t cudaMalloc(T** p, size_t n) { return cudaMalloc(reinterpret_cast<void**>(p), n); }
inline cudaError_t cudaFree(void* p) { std::free(p); return 0; }
inline cudaError_t cudaFreeAsync(void* p, cudaStream_t) { std::free(p); return 0; }
inline cudaError_t cudaStreamSynchronize(cudaStream_t) { return 0; }
inline cudaError_t cudaGetLastError() { return 0; }
inline cudaError_t cudaGetDevice(int* d) { *d = 0; return 0; }
inline cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr, int) { *v = 166912; return 0; }  // A100's opt-in
inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* a, const void*) { a->sharedSizeBytes = 0; return 0; }
cudaError_t cudaFuncSetAttribute(const void*, cudaFuncAttribute, int v);
inline const char* cudaGetErrorName(cudaError_t) { return "cudaErrorSim"; }
inline const char* cudaGetErrorString(cudaError_t) { return "simulated error"; }

namespace sim {
extern thread_local dim3 tid;
extern dim3 bid, bdim, gdim;
extern unsigned char* dyn_smem;
void syncthreads();
uint64_t exchange(uint64_t v, int lane_xor);
void run(dim3 grid, dim3 block, size_t smem, const std::function<void()>& body);

template <class T>
T shfl_xor(unsigned, T v, int off) {
  static_assert(sizeof(T) <= 8);
  uint64_t u = 0;
  std::memcpy(&u, &v, sizeof(T));
  u = exchange(u, off);
  T r;
  std::memcpy(&r, &u, sizeof(T));
  return r;
}

template <class K>
struct Launch {
  K k;
  dim3 grid, block;
  size_t smem;
  template <class... A>
  void operator()(A... args) const {
    run(grid, block, smem, [&] { k(args...); });
  }
};
template <class K>
Launch<K> launch(K k, dim3 grid, dim3 block, size_t smem = 0, cudaStream_t = nullptr) {
  return {k, grid, block, smem};
}
}  // namespace sim

#define threadIdx sim::tid
#define blockIdx sim::bid
#define blockDim sim::bdim
#define gridDim sim::gdim
#define __syncthreads() sim::syncthreads()
#define __shfl_xor_sync(mask, v, off) sim::shfl_xor(mask, v, off)

inline float __uint_as_float(uint32_t u) { return std::bit_cast<float>(u); }
inline uint32_t __float_as_uint(float f) { return std::bit_cast<uint32_t>(f); }
inline uint32_t atomicOr(uint32_t* p, uint32_t v) { return std::atomic_ref<uint32_t>(*p).fetch_or(v); }
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
  std::atomic_ref<unsigned long long> a(*p);
  unsigned long long old = a.load();
  while (v < old && !a.compare_exchange_weak(old, v)) {
  }
  return old;
}
