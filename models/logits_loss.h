// LogitsLoss: an extra loss term on the logits of Transformer::forward (e.g. knowledge
// distillation, models/distill_loss.h), hooked into the model's head.
//
//   loss = ce_weight · mean_r CE_r + mean_r extra_r + z_loss · mean_r lse_r²
//
// forward() runs right after the head computes the logits [R, V] (R = B·T rows in batch
// order); backward() ADDS its gradient into dlogits before the head's backward matmuls
// (dlogits is a separate buffer then, so the logits stay readable). Under tensor parallelism
// the logits are this rank's vocabulary shard [R, V/tp] (all R rows, also with sp); a loss
// over the whole vocabulary communicates itself (DistillLoss::set_tensor_parallel).
#pragma once
#include "core/tensor.h"

namespace retort {

struct LogitsLoss {
  virtual ~LogitsLoss() = default;
  // Returns mean_r extra_r (its weight included) for the logits of this forward.
  virtual double forward(const Tensor& logits) = 0;
  // dlogits [R, V] += row_scale · d(Σ_r extra_r)/dlogits for the last forward's logits.
  virtual void backward(Tensor& dlogits, const Tensor& logits, float row_scale) = 0;
};

}  // namespace retort
