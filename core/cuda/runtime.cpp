#include "core/cuda/runtime.h"

#include <cstdlib>
#include <cstdint>
#include <mutex>
#include <vector>

namespace retort::cuda {

namespace {

struct Streams {
  cudaStream_t compute = nullptr, comm = nullptr;
  cudaEvent_t compute_done = nullptr, comm_done = nullptr;
};

Streams& streams() {
  static Streams s;
  static std::once_flag once;
  std::call_once(once, [] {
    RETORT_CUDA_CHECK(cudaStreamCreateWithFlags(&s.compute, cudaStreamNonBlocking));
    RETORT_CUDA_CHECK(cudaStreamCreateWithFlags(&s.comm, cudaStreamNonBlocking));
    RETORT_CUDA_CHECK(cudaEventCreateWithFlags(&s.compute_done, cudaEventDisableTiming));
    RETORT_CUDA_CHECK(cudaEventCreateWithFlags(&s.comm_done, cudaEventDisableTiming));
    // Keep freed memory in the pool: the allocator then behaves as a caching allocator.
    int dev = 0;
    RETORT_CUDA_CHECK(cudaGetDevice(&dev));
    cudaMemPool_t pool;
    RETORT_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, dev));
    uint64_t threshold = UINT64_MAX;
    RETORT_CUDA_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  });
  return s;
}

cudaMemPool_t default_pool() {
  int dev = 0;
  RETORT_CUDA_CHECK(cudaGetDevice(&dev));
  cudaMemPool_t pool;
  RETORT_CUDA_CHECK(cudaDeviceGetDefaultMemPool(&pool, dev));
  return pool;
}

}  // namespace

void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
  throw Error(str_cat(file, ":", line, ": CUDA error ", cudaGetErrorName(err), " (",
                      cudaGetErrorString(err), ") in `", expr, "`"));
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

void select_device(int local_rank) {
  const int n = device_count();
  RETORT_CHECK(n > 0, "device cuda requested but no GPU is visible (CUDA_VISIBLE_DEVICES=",
               std::getenv("CUDA_VISIBLE_DEVICES") ? std::getenv("CUDA_VISIBLE_DEVICES") : "unset",
               ")");
  RETORT_CUDA_CHECK(cudaSetDevice(local_rank % n));
}

int current_device() {
  int dev = 0;
  RETORT_CUDA_CHECK(cudaGetDevice(&dev));
  return dev;
}

cudaStream_t compute_stream() { return streams().compute; }
cudaStream_t comm_stream() { return streams().comm; }

void comm_waits_for_compute() {
  Streams& s = streams();
  RETORT_CUDA_CHECK(cudaEventRecord(s.compute_done, s.compute));
  RETORT_CUDA_CHECK(cudaStreamWaitEvent(s.comm, s.compute_done, 0));
}

void compute_waits_for_comm() {
  Streams& s = streams();
  RETORT_CUDA_CHECK(cudaEventRecord(s.comm_done, s.comm));
  RETORT_CUDA_CHECK(cudaStreamWaitEvent(s.compute, s.comm_done, 0));
}

void* allocate(size_t bytes) {
  void* p = nullptr;
  const cudaError_t err = cudaMallocAsync(&p, bytes ? bytes : 1, compute_stream());
  if (err == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    throw Error(str_cat("out of GPU memory allocating ", bytes, " bytes on device ",
                        current_device(), " (", pool_reserved_bytes(), " bytes held by the pool; "
                        "`retort info CONFIG` estimates a process's memory: a smaller "
                        "train.micro_batch, train.recompute, parallel.fsdp or generate.batch "
                        "needs less)"));
  }
  RETORT_CUDA_CHECK(err);
  return p;
}

void release(void* ptr) {
  if (ptr) RETORT_CUDA_CHECK(cudaFreeAsync(ptr, compute_stream()));
}

size_t pool_reserved_bytes() {
  uint64_t v = 0;
  RETORT_CUDA_CHECK(cudaMemPoolGetAttribute(default_pool(), cudaMemPoolAttrReservedMemCurrent, &v));
  return size_t(v);
}

size_t peak_allocated_bytes() {
  uint64_t v = 0;
  RETORT_CUDA_CHECK(cudaMemPoolGetAttribute(default_pool(), cudaMemPoolAttrUsedMemHigh, &v));
  return size_t(v);
}

void synchronize() {
  RETORT_CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
  RETORT_CUDA_CHECK(cudaStreamSynchronize(comm_stream()));
}

namespace {
std::vector<cudaEvent_t>& free_marks() {
  static std::vector<cudaEvent_t> pool;  // released marks, reused (kept until exit)
  return pool;
}
}  // namespace

cudaEvent_t timing_mark() {
  cudaEvent_t e;
  if (free_marks().empty()) {
    RETORT_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDefault));
  } else {
    e = free_marks().back();
    free_marks().pop_back();
  }
  RETORT_CUDA_CHECK(cudaEventRecord(e, compute_stream()));
  return e;
}

float timing_elapsed_ms(cudaEvent_t from, cudaEvent_t to) {
  float ms = 0;
  RETORT_CUDA_CHECK(cudaEventElapsedTime(&ms, from, to));
  return ms;
}

void timing_release(cudaEvent_t e) { free_marks().push_back(e); }

}  // namespace retort::cuda
