// Argument types of the kernels that work on several tensors at once (multi-tensor AdamW),
// shared by core/cpu/kernels.h and core/cuda/kernels.h (which declare the same functions with
// the same signatures).
// Raw pointers on the op's device; core/ops.cpp fills them from checked tensors.
#pragma once
#include <cstdint>

namespace retort {

// One tensor of a multi-tensor AdamW step: parameter p, gradient g and the moments m, v,
// n elements each.
struct AdamWTensor {
  float* p;
  const float* g;
  float* m;
  float* v;
  int64_t n;
  bool decay;  // the step's weight decay applies to this tensor (else 0)
  float lr_scale = 1.0f;  // this tensor's learning rate: the step's lr · lr_scale
};

}  // namespace retort
