#include "core/device.h"

#include <cstring>

#if RETORT_HAVE_CUDA
#include "core/cuda/runtime.h"
#endif

namespace retort::device {

#if RETORT_HAVE_CUDA

bool cuda_built() { return true; }
int cuda_device_count() { return cuda::device_count(); }
void use_gpu_of_local_rank(int local_rank) { cuda::select_device(local_rank); }
void* gpu_allocate(size_t bytes) { return cuda::allocate(bytes); }
void gpu_release(void* ptr) { cuda::release(ptr); }

void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (bytes == 0) return;
  if (dst_device == Device::CPU && src_device == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
  // Host memory is pageable: a synchronous copy after the queued kernels keeps the order.
  RETORT_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, cuda::compute_stream()));
  if (dst_device == Device::CPU || src_device == Device::CPU)
    RETORT_CUDA_CHECK(cudaStreamSynchronize(cuda::compute_stream()));
}

void zero_bytes(void* ptr, Device device, size_t bytes) {
  if (device == Device::CPU)
    std::memset(ptr, 0, bytes);
  else if (bytes)
    RETORT_CUDA_CHECK(cudaMemsetAsync(ptr, 0, bytes, cuda::compute_stream()));
}

void synchronize() {
  if (cuda::device_count() > 0) cuda::synchronize();
}

void* gpu_timing_mark() { return cuda::timing_mark(); }
double gpu_elapsed_s(void* from, void* to) {
  return 1e-3 * cuda::timing_elapsed_ms(static_cast<cudaEvent_t>(from), static_cast<cudaEvent_t>(to));
}
void gpu_timing_release(void* mark) { cuda::timing_release(static_cast<cudaEvent_t>(mark)); }

size_t gpu_reserved_bytes() { return cuda::device_count() > 0 ? cuda::pool_reserved_bytes() : 0; }
size_t gpu_peak_bytes() { return cuda::device_count() > 0 ? cuda::peak_allocated_bytes() : 0; }

#else

namespace {
[[noreturn]] void no_backend() {
  throw Error("a GPU tensor was requested but this build has no CUDA backend (rebuild with "
              "nvcc available and RETORT_CUDA=AUTO or ON)");
}
}  // namespace

bool cuda_built() { return false; }
int cuda_device_count() { return 0; }
void use_gpu_of_local_rank(int) { no_backend(); }
void* gpu_allocate(size_t) { no_backend(); }
void gpu_release(void*) {}
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes) {
  if (dst_device != Device::CPU || src_device != Device::CPU) no_backend();
  if (bytes) std::memcpy(dst, src, bytes);
}
void zero_bytes(void* ptr, Device device, size_t bytes) {
  if (device != Device::CPU) no_backend();
  std::memset(ptr, 0, bytes);
}
void synchronize() {}
void* gpu_timing_mark() { no_backend(); }
double gpu_elapsed_s(void*, void*) { no_backend(); }
void gpu_timing_release(void*) {}
size_t gpu_reserved_bytes() { return 0; }
size_t gpu_peak_bytes() { return 0; }

#endif

Device parse(const std::string& value, const std::string& key) {
  if (value == "cpu") return Device::CPU;
  if (value != "cuda")
    throw ConfigError(str_cat(key, ": unknown device '", value, "' (expected cpu or cuda)"));
  if (!cuda_built())
    throw ConfigError(str_cat(key, ": cuda requested but this build has no CUDA backend (nvcc "
                              "was not found when it was configured)"));
  if (cuda_device_count() == 0)
    throw ConfigError(str_cat(key, ": cuda requested but no GPU is visible on this machine"));
  return Device::CUDA;
}

}  // namespace retort::device
