// AdamW over a list of named tensors (decoupled weight decay, bias correction), plus
// gradient clipping by global norm. The moments are checkpointed by name.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/checkpoint.h"
#include "core/tensor.h"

namespace retort {

struct AdamWSettings {
  float beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0.1f;
};

struct OptimizedTensor {
  std::string name;
  Tensor value, grad;
  bool decay;  // weight decay applies (matrices) or not (norm gains)
  float lr_scale = 1.0f;  // this tensor's learning rate: lr · lr_scale (µP)
};

class AdamW {
 public:
  AdamW(std::vector<OptimizedTensor> params, AdamWSettings settings);
  // One update at learning rate `lr` with the gradients scaled by grad_scale as they are read
  // (gradient clipping's scale; the gradients themselves are left as they are); increments
  // steps().
  void step(double lr, float grad_scale = 1.0f);
  int64_t steps() const { return steps_; }
  void set_steps(int64_t s) { steps_ = s; }
  std::vector<NamedTensor>& exp_avg() { return exp_avg_; }
  std::vector<NamedTensor>& exp_avg_sq() { return exp_avg_sq_; }
  int64_t state_bytes() const;

 private:
  std::vector<OptimizedTensor> params_;
  AdamWSettings s_;
  std::vector<NamedTensor> exp_avg_, exp_avg_sq_;
  int64_t steps_ = 0;
};

// ‖g‖₂ over all tensors (accumulated in double); if max_norm > 0 and the norm exceeds it,
// scales every gradient by max_norm / norm. Returns the norm before clipping.
double clip_grad_norm(std::vector<Tensor>& grads, double max_norm);

}  // namespace retort
