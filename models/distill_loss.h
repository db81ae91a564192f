// DistillLoss: the knowledge-distillation term of SPEC §6 `distill` as a LogitsLoss.
//
//   loss = (1 − λ)·CE + λ·τ²·KL(p_T^τ ‖ p_S^τ) + z_loss·lse²,   p^τ = softmax(logits / τ)
//
// The model weights CE by ce_weight() = 1 − λ; this term is λ·τ²·mean_r KL_r. The teacher for
// the next forward is either a top-k (offline, from a corpus: ids and log-probs at τ, tail
// handled per KdTail) or full teacher logits (online, exact KL over the vocabulary). The
// tensors set here must stay alive and unchanged until the matching backward() has run.
// Device: the loss runs where the logits are; the tensors set here must be on that device too
// (a GPU student needs its top-k uploaded, or a GPU teacher). Only the KL's mean comes back to
// the host, summed there in row order as on the CPU.
//
// Tensor parallelism (set_tensor_parallel): the logits are this rank's vocabulary shard
// [R, V/tp], ids [rank·V/tp, (rank+1)·V/tp); the online teacher's logits are the same shard.
// The full-vocabulary lse is merged from the shards' lse (all-gather), the shards' KL sums and
// bucket tail masses are all-reduced; the logits are never gathered. Gradients stay local.
// Math: docs/DISTILLATION.md; kernels: core/ops.h "knowledge distillation".
#pragma once
#include <string>

#include "core/ops.h"
#include "models/logits_loss.h"
#include "models/tensor_parallel_regions.h"

namespace retort {

class DistillLoss : public LogitsLoss {
 public:
  DistillLoss(double lambda, double temperature, ops::KdTail tail);

  double lambda() const { return lambda_; }
  double temperature() const { return tau_; }
  float ce_weight() const { return float(1.0 - lambda_); }

  // Required before forward when the model is tensor-parallel (tp.size > 1): the model's
  // layout (Transformer::tp_layout()) and a regions object over its tp group (not owned).
  void set_tensor_parallel(TensorParallelRegions* regions, const TpLayout& tp);

  // Offline: ids [R, k] I32 (global vocabulary ids), log-probs [R, k] F32 (rows in the logits' order).
  void set_topk(const Tensor& ids, const Tensor& logprobs);
  // Online: teacher logits [R, V] F32 (under tp: [R, V/tp], the same shard as the student's).
  void set_teacher_logits(const Tensor& logits);

  double forward(const Tensor& logits) override;  // λτ² · mean_r KL_r
  void backward(Tensor& dlogits, const Tensor& logits, float row_scale) override;
  double last_kl() const { return last_kl_; }     // mean_r KL_r of the last forward

 private:
  double lambda_, tau_;
  ops::KdTail tail_;
  bool dense_ = false;
  TensorParallelRegions* regions_ = nullptr;
  TpLayout tp_;
  Tensor ids_, logprobs_, teacher_;
  Tensor local_ids_;       // [R, k]: ids_ relative to this shard, -1 elsewhere (tp > 1)
  Tensor sums_;            // [2, R]: rows kl_ and aux_ (one all-reduce for both)
  Tensor parts_;           // [tp, R]: the shards' lse
  Tensor kl_, lse_, aux_;  // [R]: KL, student lse at τ, tail mass (top-k) or teacher lse (dense)

  void merge_lse(Tensor& lse);  // shard lse → lse over the whole vocabulary
  const Tensor& localise_ids(int64_t shard_vocab);
  double last_kl_ = 0;
};

// "renormalize" | "bucket" → KdTail; ConfigError-free: returns false for anything else.
bool parse_kd_tail(const std::string& name, ops::KdTail* out);

}  // namespace retort
