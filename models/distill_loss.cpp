#include "models/distill_loss.h"

namespace retort {

DistillLoss::DistillLoss(double lambda, double temperature, ops::KdTail tail)
    : lambda_(lambda), tau_(temperature), tail_(tail) {
  RETORT_CHECK(lambda >= 0 && lambda <= 1, "DistillLoss: lambda must be in [0, 1], got ", lambda);
  RETORT_CHECK(temperature > 0, "DistillLoss: temperature must be > 0, got ", temperature);
}

void DistillLoss::set_topk(const Tensor& ids, const Tensor& logprobs) {
  ids_ = ids;
  logprobs_ = logprobs;
  dense_ = false;
}

void DistillLoss::set_teacher_logits(const Tensor& logits) {
  teacher_ = logits;
  dense_ = true;
}

double DistillLoss::forward(const Tensor& logits) {
  const int64_t R = logits.numel() / logits.dim(-1);
  if (!kl_.defined() || kl_.numel() != R) {
    kl_ = Tensor::empty({R});
    lse_ = Tensor::empty({R});
    aux_ = Tensor::empty({R});
  }
  const float tau = float(tau_);
  if (dense_) {
    RETORT_CHECK(teacher_.defined(), "DistillLoss: no teacher logits set for this forward");
    ops::kd_dense_forward(kl_, lse_, aux_, logits, teacher_, tau);
  } else {
    RETORT_CHECK(ids_.defined(), "DistillLoss: no teacher top-k set for this forward");
    ops::kd_topk_forward(kl_, lse_, aux_, logits, ids_, logprobs_, tau, tail_);
  }
  double sum = 0;
  const float* p = kl_.host<float>();
  for (int64_t r = 0; r < R; ++r) sum += p[r];
  last_kl_ = sum / double(R);
  return lambda_ * tau_ * tau_ * last_kl_;
}

void DistillLoss::backward(Tensor& dlogits, const Tensor& logits, float row_scale) {
  const float scale = float(double(row_scale) * lambda_ * tau_ * tau_);
  if (dense_)
    ops::kd_dense_backward(dlogits, logits, lse_, teacher_, aux_, float(tau_), scale);
  else
    ops::kd_topk_backward(dlogits, logits, lse_, aux_, ids_, logprobs_, float(tau_), tail_, scale);
}

bool parse_kd_tail(const std::string& name, ops::KdTail* out) {
  if (name == "renormalize") *out = ops::KdTail::Renormalize;
  else if (name == "bucket") *out = ops::KdTail::Bucket;
  else return false;
  return true;
}

}  // namespace retort
