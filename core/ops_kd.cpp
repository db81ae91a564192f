// Knowledge-distillation ops (core/ops.h, "knowledge distillation"; kernels in
// core/cpu/kd_loss.cpp, core/cuda/kd_loss.cu) and generation's (the corpus's top-k, the next
// tokens; kernels in core/{cpu,cuda}/generation.*): shape, dtype, id and aliasing checks, then
// the kernels. The whole-vocabulary forward ops are the vocabulary-parallel steps with one shard.
#include <cmath>

#include "core/device.h"
#include "core/op_dispatch.h"
#include "core/ops.h"

namespace retort::ops {

namespace {

void need(const char* op, const char* name, const Tensor& t, DType dt) {
  RETORT_CHECK(t.defined(), op, ": tensor `", name, "` is undefined");
  RETORT_CHECK(t.dtype() == dt, op, ": tensor `", name, "` must be ", dtype_name(dt), ", got ",
               dtype_name(t.dtype()), " ", shape_str(t.shape()));
}

// logits [rows, V]: returns {rows, V}; every per-row output has `rows` elements.
std::pair<int64_t, int64_t> logits_dims(const char* op, const Tensor& logits) {
  need(op, "logits", logits, DType::F32);
  RETORT_CHECK(logits.ndim() >= 1 && logits.dim(-1) > 0, op, ": logits ",
               shape_str(logits.shape()), " needs a non-empty vocab dim");
  const int64_t V = logits.dim(-1);
  return {logits.numel() / V, V};
}

void per_row(const char* op, const char* name, const Tensor& t, int64_t rows) {
  need(op, name, t, DType::F32);
  RETORT_CHECK(t.numel() == rows, op, ": ", name, " ", shape_str(t.shape()), " must have ", rows,
               " elements (rows of the logits)");
}

void check_temperature(const char* op, float temperature) {
  RETORT_CHECK(std::isfinite(temperature) && temperature > 0, op, ": temperature must be > 0, got ",
               temperature);
}

// topk_logprobs [rows, k]; returns k.
int64_t check_logprobs(const char* op, const Tensor& logp, int64_t rows) {
  need(op, "topk_logprobs", logp, DType::F32);
  const int64_t k = logp.ndim() >= 1 ? logp.dim(-1) : 0;
  RETORT_CHECK(k > 0 && logp.numel() == rows * k, op, ": topk_logprobs ", shape_str(logp.shape()),
               " must be [rows = ", rows, ", k > 0]");
  return k;
}

// Top-k tensors [rows, k] with ids in [0, V) (shard: V of this shard, or -1 = on another
// shard); returns k.
int64_t check_topk(const char* op, const Tensor& ids, const Tensor& logp, int64_t rows, int64_t V,
                   bool shard) {
  need(op, "topk_ids", ids, DType::I32);
  const int64_t k = check_logprobs(op, logp, rows);
  RETORT_CHECK(ids.shape() == logp.shape(), op, ": topk_ids ", shape_str(ids.shape()),
               " and topk_logprobs ", shape_str(logp.shape()), " differ in shape");
  RETORT_CHECK(shard || k <= V, op, ": topk_ids ", shape_str(ids.shape()), " has k > V = ", V);
  const int64_t i = first_id_out_of_range(ids, shard ? -1 : 0, static_cast<int32_t>(V));
  if (i >= 0) {
    int32_t bad = 0;
    device::copy_bytes(&bad, Device::CPU, ids.data<int32_t>() + i, ids.device(), sizeof bad);
    RETORT_CHECK(false, op, ": topk_ids[", i, "] = ", bad, " is out of range [0, ", V, ")",
                 shard ? " (or -1: on another shard)" : "");
  }
  return k;
}

// Teacher logits of the logits' shape [rows, V].
void check_teacher(const char* op, const Tensor& teacher, int64_t rows, int64_t V,
                   const Tensor& logits) {
  need(op, "teacher_logits", teacher, DType::F32);
  RETORT_CHECK(teacher.numel() == rows * V && teacher.dim(-1) == V, op, ": teacher_logits ",
               shape_str(teacher.shape()), " vs logits ", shape_str(logits.shape()),
               " (same rows and vocabulary needed)");
}

void check_dlogits(const char* op, const Tensor& dlogits, const Tensor& logits) {
  need(op, "dlogits", dlogits, DType::F32);
  RETORT_CHECK(dlogits.shape() == logits.shape(), op, ": dlogits ", shape_str(dlogits.shape()),
               " vs logits ", shape_str(logits.shape()));
  const char* a = static_cast<const char*>(dlogits.raw());
  const char* b = static_cast<const char*>(logits.raw());
  RETORT_CHECK(!dlogits.same_storage(logits) || a + dlogits.nbytes() <= b || b + logits.nbytes() <= a,
               op, ": dlogits must not overlap logits (the gradient is added, the logits are read)");
}

int tail_code(KdTail tail) { return tail == KdTail::Bucket ? 1 : 0; }

}  // namespace

void kd_logsumexp(Tensor& lse, const Tensor& logits, float temperature) {
  const char* op = "kd_logsumexp";
  const auto [rows, V] = logits_dims(op, logits);
  per_row(op, "lse", lse, rows);
  check_temperature(op, temperature);
  const Device dev = common_device("kd_logsumexp", {&lse, &logits});
  RETORT_KERNEL(dev, kd_logsumexp, lse.data<float>(), logits.data<float>(), rows, V, 1.0f / temperature);
}

void kd_topk_shard_forward(Tensor& kl, Tensor& tail_q, const Tensor& logits, const Tensor& lse,
                           const Tensor& topk_ids, const Tensor& topk_logprobs, float temperature,
                           KdTail tail) {
  const char* op = "kd_topk_shard_forward";
  const auto [rows, V] = logits_dims(op, logits);
  per_row(op, "kl", kl, rows);
  per_row(op, "tail_q", tail_q, rows);
  per_row(op, "lse", lse, rows);
  check_temperature(op, temperature);
  const int64_t k = check_topk(op, topk_ids, topk_logprobs, rows, V, true);
  const Device dev = common_device("kd_topk_shard_forward", {&kl, &tail_q, &logits, &lse, &topk_ids, &topk_logprobs});
  RETORT_KERNEL(dev, kd_topk_shard_forward, kl.data<float>(), tail_q.data<float>(), logits.data<float>(),
                             lse.data<float>(), topk_ids.data<int32_t>(),
                             topk_logprobs.data<float>(), rows, V, k, 1.0f / temperature,
                             tail_code(tail));
}

void kd_bucket_finish(Tensor& kl, Tensor& tail_q, const Tensor& topk_logprobs) {
  const char* op = "kd_bucket_finish";
  need(op, "kl", kl, DType::F32);
  const int64_t rows = kl.numel();
  per_row(op, "tail_q", tail_q, rows);
  const int64_t k = check_logprobs(op, topk_logprobs, rows);
  const Device dev = common_device("kd_bucket_finish", {&kl, &tail_q, &topk_logprobs});
  RETORT_KERNEL(dev, kd_bucket_finish, kl.data<float>(), tail_q.data<float>(), topk_logprobs.data<float>(), rows, k);
}

void kd_dense_shard_forward(Tensor& kl, const Tensor& logits, const Tensor& lse,
                            const Tensor& teacher_logits, const Tensor& teacher_lse,
                            float temperature) {
  const char* op = "kd_dense_shard_forward";
  const auto [rows, V] = logits_dims(op, logits);
  check_teacher(op, teacher_logits, rows, V, logits);
  per_row(op, "kl", kl, rows);
  per_row(op, "lse", lse, rows);
  per_row(op, "teacher_lse", teacher_lse, rows);
  check_temperature(op, temperature);
  const Device dev = common_device("kd_dense_shard_forward", {&kl, &logits, &teacher_logits, &lse, &teacher_lse});
  RETORT_KERNEL(dev, kd_dense_shard_forward, kl.data<float>(), logits.data<float>(), teacher_logits.data<float>(),
                              lse.data<float>(), teacher_lse.data<float>(), rows, V,
                              1.0f / temperature);
}

// One shard holding the whole vocabulary: the steps above without the sums.
void kd_topk_forward(Tensor& kl, Tensor& lse, Tensor& tail_q, const Tensor& logits,
                     const Tensor& topk_ids, const Tensor& topk_logprobs, float temperature,
                     KdTail tail) {
  const char* op = "kd_topk_forward";
  const auto [rows, V] = logits_dims(op, logits);
  check_topk(op, topk_ids, topk_logprobs, rows, V, false);
  kd_logsumexp(lse, logits, temperature);
  kd_topk_shard_forward(kl, tail_q, logits, lse, topk_ids, topk_logprobs, temperature, tail);
  if (tail == KdTail::Bucket) kd_bucket_finish(kl, tail_q, topk_logprobs);
}

void kd_topk_backward(Tensor& dlogits, const Tensor& logits, const Tensor& lse, const Tensor& tail_q,
                      const Tensor& topk_ids, const Tensor& topk_logprobs, float temperature,
                      KdTail tail, float scale) {
  const char* op = "kd_topk_backward";
  const auto [rows, V] = logits_dims(op, logits);
  check_dlogits(op, dlogits, logits);
  per_row(op, "lse", lse, rows);
  per_row(op, "tail_q", tail_q, rows);
  check_temperature(op, temperature);
  const int64_t k = check_topk(op, topk_ids, topk_logprobs, rows, V, true);
  const Device dev = common_device("kd_topk_backward", {&dlogits, &logits, &lse, &tail_q, &topk_ids, &topk_logprobs});
  RETORT_KERNEL(dev, kd_topk_backward, dlogits.data<float>(), logits.data<float>(), lse.data<float>(),
                        tail_q.data<float>(), topk_ids.data<int32_t>(), topk_logprobs.data<float>(),
                        rows, V, k, 1.0f / temperature, tail_code(tail), scale);
}

void kd_dense_forward(Tensor& kl, Tensor& lse, Tensor& teacher_lse, const Tensor& logits,
                      const Tensor& teacher_logits, float temperature) {
  const char* op = "kd_dense_forward";
  const auto [rows, V] = logits_dims(op, logits);
  check_teacher(op, teacher_logits, rows, V, logits);
  kd_logsumexp(lse, logits, temperature);
  kd_logsumexp(teacher_lse, teacher_logits, temperature);
  kd_dense_shard_forward(kl, logits, lse, teacher_logits, teacher_lse, temperature);
}

void kd_dense_backward(Tensor& dlogits, const Tensor& logits, const Tensor& lse,
                       const Tensor& teacher_logits, const Tensor& teacher_lse, float temperature,
                       float scale) {
  const char* op = "kd_dense_backward";
  const auto [rows, V] = logits_dims(op, logits);
  check_dlogits(op, dlogits, logits);
  check_teacher(op, teacher_logits, rows, V, logits);
  per_row(op, "lse", lse, rows);
  per_row(op, "teacher_lse", teacher_lse, rows);
  check_temperature(op, temperature);
  const Device dev = common_device("kd_dense_backward", {&dlogits, &logits, &lse, &teacher_logits, &teacher_lse});
  RETORT_KERNEL(dev, kd_dense_backward, dlogits.data<float>(), logits.data<float>(), lse.data<float>(),
                         teacher_logits.data<float>(), teacher_lse.data<float>(), rows, V,
                         1.0f / temperature, scale);
}

void topk_log_softmax(Tensor& ids, Tensor& logprobs, const Tensor& logits, double tau) {
  const char* op = "topk_log_softmax";
  const auto [rows, V] = logits_dims(op, logits);
  need(op, "ids", ids, DType::I32);
  const int64_t k = check_logprobs(op, logprobs, rows);
  RETORT_CHECK(ids.shape() == logprobs.shape() && k <= V, op, ": ids ", shape_str(ids.shape()),
               " and logprobs ", shape_str(logprobs.shape()), " must be one shape [rows, k <= ",
               V, "]");
  RETORT_CHECK(std::isfinite(tau) && tau > 0, op, ": temperature must be > 0, got ", tau);
  const Device dev = common_device(op, {&ids, &logprobs, &logits});
  RETORT_KERNEL(dev, topk_log_softmax, ids.data<int32_t>(), logprobs.data<float>(),
                logits.data<float>(), rows, V, k, tau);
}

void sample_tokens(Tensor& tokens, const Tensor& logits, const RowDraws& draws,
                   const SamplingParams& p) {
  const char* op = "sample_tokens";
  const auto [rows, V] = logits_dims(op, logits);
  need(op, "tokens", tokens, DType::I32);
  RETORT_CHECK(tokens.numel() == rows, op, ": tokens ", shape_str(tokens.shape()), " for ", rows,
               " rows");
  RETORT_CHECK(p.temperature >= 0 && p.top_k >= 0 && p.top_p > 0 && p.top_p <= 1, op,
               ": bad parameters (temperature ", p.temperature, ", top_k ", p.top_k, ", top_p ",
               p.top_p, ")");
  const Device dev = common_device(op, {&tokens, &logits});
  RETORT_KERNEL(dev, sample_tokens, tokens.data<int32_t>(), logits.data<float>(), rows, V, draws,
                p);
}

}  // namespace retort::ops
