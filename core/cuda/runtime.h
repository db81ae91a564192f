// CUDA device runtime for the GPU backend (compiled only when RETORT_CUDA is on):
//  - error checks that throw retort::Error with file:line and the library's error string,
//  - the device this process uses (one rank per GPU, chosen from the node-local rank),
//  - two streams per process: compute (every kernel and matmul) and communication (NCCL),
//    ordered with events,
//  - the stream-ordered allocator behind Storage(Device::CUDA): cudaMallocAsync on the compute
//    stream from the device's default pool, whose release threshold is raised so freed blocks
//    stay cached for reuse instead of going back to the driver.
// Include only from CUDA-enabled sources (core/cuda/, parallel/nccl_*); the rest of the code
// uses the device-neutral core/device.h.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

#include "core/check.h"

namespace retort::cuda {

// "<file>:<line>: CUDA error cudaErrorX (message) in `expr`"
[[noreturn]] void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line);

#define RETORT_CUDA_CHECK(expr)                                                          \
  do {                                                                                   \
    const cudaError_t retort_err_ = (expr);                                              \
    if (retort_err_ != cudaSuccess)                                                      \
      ::retort::cuda::throw_cuda_error(retort_err_, #expr, __FILE__, __LINE__);          \
  } while (0)

// After a kernel launch: launch-configuration errors are reported at the launch site.
#define RETORT_CUDA_CHECK_LAUNCH() RETORT_CUDA_CHECK(cudaGetLastError())

// Number of visible GPUs; 0 when the driver is missing or no GPU is visible (never throws).
int device_count();
// Select the GPU for this process: local_rank % device_count(). Throws when none is visible.
void select_device(int local_rank);
int current_device();

cudaStream_t compute_stream();
cudaStream_t comm_stream();
// The communication stream waits for the work queued so far on the compute stream, and
// the reverse (events; neither blocks the host).
void comm_waits_for_compute();
void compute_waits_for_comm();

// Stream-ordered allocation on the compute stream (see the header comment).
void* allocate(size_t bytes);
void release(void* ptr);
// Bytes currently held by the pool (in use + cached), and the peak in use.
size_t pool_reserved_bytes();
size_t peak_allocated_bytes();

// Blocks the host until the compute and communication streams are idle.
void synchronize();

// GPU timing on the compute stream (core/op_profile.h): timing_mark() records an event after
// the work queued so far; timing_elapsed_ms(a, b) gives the GPU time between two marks the GPU
// has passed (it does not wait: synchronise first); timing_release(e) returns an event to the
// pool that timing_mark() draws from.
cudaEvent_t timing_mark();
float timing_elapsed_ms(cudaEvent_t from, cudaEvent_t to);
void timing_release(cudaEvent_t e);

// Grid size for n elements at `block` threads each, capped so that grid-stride loops are used
// for very large n.
inline unsigned grid_for(long long n, int block) {
  long long g = (n + block - 1) / block;
  if (g < 1) g = 1;
  if (g > 65535LL * 32) g = 65535LL * 32;
  return static_cast<unsigned>(g);
}

}  // namespace retort::cuda
