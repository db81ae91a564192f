// The CUDA runtime subset that retort's GPU backend uses, implemented on the host for the
// CUDA simulator build (RETORT_CUDA=SIM; tests/gpu/sim/README.md). Device memory is host memory
// that the simulator tracks, so copies, cuBLASLt and NCCL calls can check that a "device"
// pointer really is one; each stream runs its work in order on a thread of its own
// (cuda_runtime.cpp); kernel launches are rewritten by gen.py into sim::launch(kernel,
// config)(args) and run by the block simulator (block_simulator.cpp).
#pragma once
#include <atomic>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

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
// The vector types the kernels use (CUDA's are 16- and 8-byte aligned likewise).
struct alignas(16) float4 {
  float x, y, z, w;
};
struct alignas(8) float2 {
  float x, y;
};
struct alignas(8) uint2 {
  unsigned x, y;
};
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
typedef int cudaError_t;
enum : int {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInvalidDevice = 101,
  cudaErrorNoDevice = 100,
  cudaErrorNotReady = 600,
};
typedef struct CUstream_st* cudaStream_t;
typedef struct CUevent_st* cudaEvent_t;
typedef struct CUpool_st* cudaMemPool_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
enum cudaDeviceAttr { cudaDevAttrMaxSharedMemoryPerBlockOptin };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize };
enum cudaMemPoolAttr { cudaMemPoolAttrReleaseThreshold, cudaMemPoolAttrReservedMemCurrent, cudaMemPoolAttrUsedMemHigh };
struct cudaFuncAttributes { size_t sharedSizeBytes = 0; };
constexpr unsigned cudaStreamNonBlocking = 1;
constexpr unsigned cudaEventDefault = 0;
constexpr unsigned cudaEventDisableTiming = 2;

// Devices: SIM_GPUS (default 1) simulated GPUs; each process has its own memory.
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr, int);
struct cudaDeviceProp { char name[256]; };  // the one field retort reads
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int device);
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes* a, const void*);
cudaError_t cudaFuncSetAttribute(const void*, cudaFuncAttribute, int v);
cudaError_t cudaGetLastError();
const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);

// Memory: new allocations are filled with 0xFF (NaN floats), so a read before a write shows.
cudaError_t cudaMalloc(void** p, size_t n);
template <class T> cudaError_t cudaMalloc(T** p, size_t n) { return cudaMalloc(reinterpret_cast<void**>(p), n); }
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocAsync(void** p, size_t n, cudaStream_t);
cudaError_t cudaFreeAsync(void* p, cudaStream_t);
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int device);
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, cudaMemPoolAttr, void* value);
cudaError_t cudaMemPoolGetAttribute(cudaMemPool_t, cudaMemPoolAttr, void* value);
// Explicit kinds are checked against where the pointers live (a host pointer given as device
// memory is an illegal address on a GPU).
cudaError_t cudaMemcpyAsync(void* d, const void* s, size_t n, cudaMemcpyKind kind, cudaStream_t);
cudaError_t cudaMemcpy(void* d, const void* s, size_t n, cudaMemcpyKind kind);
cudaError_t cudaMemsetAsync(void* p, int value, size_t n, cudaStream_t);

// Streams and events: work runs eagerly, so every event has completed when recorded.
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags);
cudaError_t cudaStreamSynchronize(cudaStream_t);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t);
cudaError_t cudaEventQuery(cudaEvent_t e);
// Milliseconds between the moments the stream's worker reached the two events;
// cudaErrorNotReady while it has not reached both (like CUDA, it does not wait).
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t e, unsigned);

namespace sim {
// Queues `work` on stream s (run at once under SIM_STREAMS=eager; the null stream first waits
// for every stream, like the legacy default stream).
void enqueue(cudaStream_t s, std::function<void()> work);
bool eager_streams();
// True when [p, p + bytes) lies inside one live simulated device allocation.
bool is_device_pointer(const void* p, size_t bytes = 1);
// For a library call's operands when its queued work runs: faults naming `who` when one of
// them was freed (by a stream not ordered after this one) before the stream got there.
struct Span {
  const void* p;
  size_t bytes;
  bool written = false;  // else only read (for race_access)
};
void require_still_allocated(const std::vector<Span>& operands, const char* who);
// ThreadSanitizer's view of the streams (race.cpp; no-ops unless RETORT_SIM_SANITIZE=thread):
// CUDA's orders stated on a sync object, the simulator's own bookkeeping hidden while a
// RaceHidden lives on this thread, and a library call's operand accesses when it runs.
void race_release(const void* sync);
void race_acquire(const void* sync);
struct RaceHidden {
  RaceHidden();
  ~RaceHidden();
  RaceHidden(const RaceHidden&) = delete;
  RaceHidden& operator=(const RaceHidden&) = delete;
};
void race_access(const std::vector<Span>& operands);
// Ends the process with "sim: <what>" on stderr: a misuse a real GPU would fault on.
[[noreturn]] void fault(const char* what);

extern thread_local dim3 tid;
extern thread_local dim3 bid, bdim, gdim;
extern thread_local unsigned char* dyn_smem;
// Which of two copies of per-block memory (stacks, shared memory) the running block uses: its
// index mod 2 under RETORT_SIM_SANITIZE=thread (so neighbouring blocks, which ThreadSanitizer
// sees as unordered, never share an address a GPU gives each block its own of), else 0.
// gen.py turns each `__shared__ T name[N];` into a reference to name's copy.
extern thread_local int block_copy;
void syncthreads();
uint64_t exchange(uint64_t v, int lane_xor);
// The lanes of the calling warp whose v equals this lane's (all 32 lanes must call it).
uint32_t match_any(uint64_t v);
void run(dim3 grid, dim3 block, size_t smem, const std::function<void()>& body);
// Faults when a launch asks for more than 48 KiB of dynamic shared memory without the
// kernel's cudaFuncAttributeMaxDynamicSharedMemorySize opt-in (a launch error on a GPU).
void check_dynamic_smem(const void* kernel, size_t bytes);

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
  cudaStream_t stream;
  template <class... A>
  void operator()(A... args) const {
    check_dynamic_smem(reinterpret_cast<const void*>(k), smem);
    enqueue(stream, [k = k, grid = grid, block = block, smem = smem, args...] {
      run(grid, block, smem, [&] { k(args...); });
    });
  }
};
template <class K>
Launch<K> launch(K k, dim3 grid, dim3 block, size_t smem = 0, cudaStream_t stream = nullptr) {
  return {k, grid, block, smem, stream};
}
}  // namespace sim

#define threadIdx sim::tid
#define blockIdx sim::bid
#define blockDim sim::bdim
#define gridDim sim::gdim
#define __syncthreads() sim::syncthreads()
#define __shfl_xor_sync(mask, v, off) sim::shfl_xor(mask, v, off)
#define __match_any_sync(mask, v) sim::match_any(uint64_t(v))

inline float __uint_as_float(uint32_t u) { return std::bit_cast<float>(u); }
inline uint32_t __float_as_uint(float f) { return std::bit_cast<uint32_t>(f); }
inline int __popc(uint32_t x) { return std::popcount(x); }
inline int __ffs(uint32_t x) { return x ? std::countr_zero(x) + 1 : 0; }
// CUDA's atomics order no other memory (relaxed): ThreadSanitizer (RETORT_SIM_SANITIZE=thread)
// must not take one for a barrier between the blocks or threads that use it.
constexpr auto kRelaxed = std::memory_order_relaxed;
inline uint32_t atomicAdd(uint32_t* p, uint32_t v) {
  return std::atomic_ref<uint32_t>(*p).fetch_add(v, kRelaxed);
}
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  return std::atomic_ref<unsigned long long>(*p).fetch_add(v, kRelaxed);
}
inline uint32_t atomicOr(uint32_t* p, uint32_t v) {
  return std::atomic_ref<uint32_t>(*p).fetch_or(v, kRelaxed);
}
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
  std::atomic_ref<unsigned long long> a(*p);
  unsigned long long old = a.load(kRelaxed);
  while (v < old && !a.compare_exchange_weak(old, v, kRelaxed)) {
  }
  return old;
}
