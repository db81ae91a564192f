#include "core/adamw.h"

#include <cmath>

#include "core/ops.h"

namespace retort {

AdamW::AdamW(std::vector<OptimizedTensor> params, AdamWSettings settings)
    : params_(std::move(params)), s_(settings) {
  for (const auto& p : params_) {
    exp_avg_.push_back({p.name, Tensor::zeros(p.value.shape(), DType::F32, p.value.device())});
    exp_avg_sq_.push_back({p.name, Tensor::zeros(p.value.shape(), DType::F32, p.value.device())});
  }
}

// One multi-tensor op for all tensors (bitwise what adamw_step per tensor gives; on a GPU a
// launch per 64 tensors instead of one per tensor).
void AdamW::step(double lr, float grad_scale) {
  ++steps_;
  std::vector<ops::AdamWTensors> ts(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    ts[i] = {&p.value, &p.grad, &exp_avg_[i].tensor, &exp_avg_sq_[i].tensor, p.decay, p.lr_scale};
  }
  ops::adamw_step_multi(ts, static_cast<float>(lr), s_.beta1, s_.beta2, s_.eps, s_.weight_decay,
                        steps_, grad_scale);
}

int64_t AdamW::state_bytes() const {
  int64_t bytes = 0;
  for (size_t i = 0; i < exp_avg_.size(); ++i)
    bytes += exp_avg_[i].tensor.nbytes() + exp_avg_sq_[i].tensor.nbytes();
  return bytes;
}

double clip_grad_norm(std::vector<Tensor>& grads, double max_norm) {
  const double sq = ops::sum_squares_multi(grads);  // one synchronisation on a GPU
  double norm = std::sqrt(sq);
  if (max_norm > 0 && norm > max_norm) {
    float scale = static_cast<float>(max_norm / (norm + 1e-12));
    for (auto& g : grads) ops::scale_inplace(g, scale);
  }
  return norm;
}

}  // namespace retort
