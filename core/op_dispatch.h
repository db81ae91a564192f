// Internal to core/ops*.cpp: choose the backend that runs an op from the device its tensors
// live on, and call that backend's kernel (core/cpu/kernels.h or core/cuda/kernels.h, which
// declare the same functions).
#pragma once
#include <initializer_list>

#include "core/cpu/kernels.h"
#include "core/op_profile.h"
#include "core/tensor.h"
#if RETORT_HAVE_CUDA
#include "core/cuda/kernels.h"
#endif

namespace retort::ops {

// The device of every tensor in `tensors`; an error naming the op when they differ.
Device common_device(const char* op, std::initializer_list<const Tensor*> tensors);

// Index of the first id outside [lo, hi) in an I32 tensor on either device, or -1.
int64_t first_id_out_of_range(const Tensor& ids, int32_t lo, int32_t hi);

}  // namespace retort::ops

#if RETORT_HAVE_CUDA
// The Scope temporary lives to the end of the full expression: it times the kernel call
// (RETORT_OP_PROFILE=1; core/op_profile.h). RETORT_KERNEL_MOVING also gives the bytes the
// kernel reads and writes, for the profile's bandwidth.
#define RETORT_KERNEL_MOVING(dev, bytes, fn, ...)                          \
  (::retort::op_profile::Scope(#fn, (dev), 0.0, (bytes)),                  \
   (dev) == ::retort::Device::CUDA ? ::retort::cuda::fn(__VA_ARGS__)       \
                                   : ::retort::cpu::fn(__VA_ARGS__))
#else
#define RETORT_KERNEL_MOVING(dev, bytes, fn, ...) \
  ((void)(dev), (void)(bytes), ::retort::cpu::fn(__VA_ARGS__))
#endif
#define RETORT_KERNEL(dev, fn, ...) RETORT_KERNEL_MOVING(dev, 0.0, fn, __VA_ARGS__)
