// Device-neutral view of the GPU runtime for code that must not include CUDA headers
// (tensor.cpp, the model, the launchers). In a build without the CUDA backend every function
// exists: cuda_built() is false, cuda_device_count() is 0, and the rest throw a clear error.
#pragma once
#include <cstddef>
#include <string>

#include "core/tensor.h"

namespace retort::device {

bool cuda_built();
// Visible GPUs (0 without the backend, a driver or a GPU).
int cuda_device_count();
// One rank per GPU: select local_rank % cuda_device_count().
void use_gpu_of_local_rank(int local_rank);

// Storage(Device::CUDA) memory (stream-ordered, cached; see core/cuda/runtime.h).
void* gpu_allocate(size_t bytes);
void gpu_release(void* ptr);
// Copies between any two devices (host↔GPU copies synchronise the compute stream).
void copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes);
void zero_bytes(void* ptr, Device device, size_t bytes);
// Waits for all queued GPU work (no-op without the backend).
void synchronize();
// GPU timing marks (core/cuda/runtime.h timing_*): a mark after the work queued so far on the
// compute stream, the seconds between two marks the GPU has passed (synchronise first), and a
// mark's release.
void* gpu_timing_mark();
double gpu_elapsed_s(void* from, void* to);
void gpu_timing_release(void* mark);
// "config value `device`" parsing: "cpu" or "cuda"; ConfigError naming `key` otherwise, or
// when cuda is asked for in a build without the backend / on a machine without a GPU.
Device parse(const std::string& value, const std::string& key);
// GPU memory held by this process's pool and the peak in use, in bytes (0 without a GPU).
size_t gpu_reserved_bytes();
size_t gpu_peak_bytes();

}  // namespace retort::device
