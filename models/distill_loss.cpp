#include "models/distill_loss.h"

namespace retort {

DistillLoss::DistillLoss(double lambda, double temperature, ops::KdTail tail)
    : lambda_(lambda), tau_(temperature), tail_(tail) {
  RETORT_CHECK(lambda >= 0 && lambda <= 1, "DistillLoss: lambda must be in [0, 1], got ", lambda);
  RETORT_CHECK(temperature > 0, "DistillLoss: temperature must be > 0, got ", temperature);
}

void DistillLoss::set_tensor_parallel(TensorParallelRegions* regions, const TpLayout& tp) {
  RETORT_CHECK(tp.size == 1 || regions, "DistillLoss: tensor parallelism over ", tp.size,
               " ranks needs a regions object");
  regions_ = tp.size > 1 ? regions : nullptr;
  tp_ = tp;
  kl_ = Tensor();  // buffers are re-sized at the next forward
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

void DistillLoss::merge_lse(Tensor& lse) {
  if (!regions_) return;
  regions_->all_gather(parts_, lse);
  ops::logsumexp_merge(lse, parts_);
}

// Per row: lse_s (merged), then each shard's part of the KL (and of Q), summed over the shards.
double DistillLoss::forward(const Tensor& logits) {
  const int64_t R = logits.numel() / logits.dim(-1), Vl = logits.dim(-1);
  const Device dev = logits.device();  // the buffers live with the logits (CPU or GPU)
  if (!kl_.defined() || kl_.numel() != R || kl_.device() != dev) {
    sums_ = Tensor::empty({2 * R}, DType::F32, dev);
    kl_ = sums_.slice(0, R);
    aux_ = sums_.slice(R, 2 * R);
    lse_ = Tensor::empty({R}, DType::F32, dev);
    parts_ = Tensor::empty({int64_t(tp_.size), R}, DType::F32, dev);
  }
  const float tau = float(tau_);
  ops::kd_logsumexp(lse_, logits, tau);
  merge_lse(lse_);
  if (dense_) {
    RETORT_CHECK(teacher_.defined(), "DistillLoss: no teacher logits set for this forward");
    ops::kd_logsumexp(aux_, teacher_, tau);
    merge_lse(aux_);
    ops::kd_dense_shard_forward(kl_, logits, lse_, teacher_, aux_, tau);
    if (regions_) regions_->all_reduce_sum(kl_);
  } else {
    RETORT_CHECK(ids_.defined(), "DistillLoss: no teacher top-k set for this forward");
    const Tensor& ids = regions_ ? localise_ids(Vl) : ids_;
    ops::kd_topk_shard_forward(kl_, aux_, logits, lse_, ids, logprobs_, tau, tail_);
    if (regions_) regions_->all_reduce_sum(tail_ == ops::KdTail::Bucket ? sums_ : kl_);
    if (tail_ == ops::KdTail::Bucket) ops::kd_bucket_finish(kl_, aux_, logprobs_);
  }
  double sum = 0;  // in double on the host, in row order (the same sum on either device)
  const Tensor kl_host = dev == Device::CPU ? kl_ : kl_.to(Device::CPU);
  const float* p = kl_host.host<float>();
  for (int64_t r = 0; r < R; ++r) sum += p[r];
  last_kl_ = sum / double(R);
  return lambda_ * tau_ * tau_ * last_kl_;
}

// Global ids [R, k] → ids on this rank's shard [tp.rank·Vl, (tp.rank+1)·Vl), -1 elsewhere
// (on the ids' device).
const Tensor& DistillLoss::localise_ids(int64_t Vl) {
  const Device dev = ids_.device();
  if (!local_ids_.defined() || local_ids_.shape() != ids_.shape() || local_ids_.device() != dev)
    local_ids_ = Tensor::empty(ids_.shape(), DType::I32, dev);
  ops::vocab_shard_ids(local_ids_, ids_, int64_t(tp_.rank) * Vl, Vl, int64_t(tp_.size) * Vl);
  return local_ids_;
}

void DistillLoss::backward(Tensor& dlogits, const Tensor& logits, float row_scale) {
  const float scale = float(double(row_scale) * lambda_ * tau_ * tau_);
  if (dense_)
    ops::kd_dense_backward(dlogits, logits, lse_, teacher_, aux_, float(tau_), scale);
  else
    ops::kd_topk_backward(dlogits, logits, lse_, aux_, regions_ ? local_ids_ : ids_, logprobs_,
                          float(tau_), tail_, scale);
}

bool parse_kd_tail(const std::string& name, ops::KdTail* out) {
  if (name == "renormalize") *out = ops::KdTail::Renormalize;
  else if (name == "bucket") *out = ops::KdTail::Bucket;
  else return false;
  return true;
}

}  // namespace retort
