// Knowledge-distillation losses on logits, one row per token (math: docs/DISTILLATION.md).
// z: student logits [V], τ: temperature, q = softmax(z/τ), s_v = z_v/τ − lse_s (log q).
//
// Top-k teacher (ids I [k], log-probs ℓ [k] at τ over the full vocabulary):
//   renormalize: p̂_i = exp(ℓ_i − logsumexp(ℓ));      KL = Σ_i p̂_i (log p̂_i − s_{I_i})
//                dKL/dz_v = (q_v − p̂_v)/τ                (p̂_v = 0 off the top-k)
//   bucket:      p_i = exp(ℓ_i), P = max(0, 1 − Σ p_i), Q = Σ_{v∉I} q_v
//                KL = Σ_i p_i (ℓ_i − s_{I_i}) + P (log P − log Q)
//                dKL/dz_v = (q_v − p_v)/τ for v ∈ I,  q_v (1 − P/Q)/τ for v ∉ I
// Dense teacher (logits t [V]):  p = softmax(t/τ), KL = Σ_v p_v (log p_v − s_v),
//                dKL/dz_v = (q_v − p_v)/τ
// Backward ADDS scale · dKL/dz into dlogits (dlogits must not alias the logits).
//
// Vocabulary-parallel: the logits (and dense teacher logits) hold one shard [V/tp] of the
// vocabulary. Forward is split so the caller can sum over shards in between:
//   kd_logsumexp           shard lse of z/τ (the caller merges the shards' lse)
//   kd_topk_shard_forward  Σ over the top-k ids on this shard (ids shard-local, -1 elsewhere)
//                          of p_i (log p_i − s_{I_i}), and this shard's part of Q (bucket)
//   kd_bucket_finish       after the shards' sums: Q floored, KL += P (log P − log Q)
//   kd_dense_shard_forward Σ over this shard's v of p_v (log p_v − s_v), global lse_s, lse_t
// Backward is local given the global lse and Q (ids of other shards, -1, are skipped).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/cpu/fast_math.h"
#include "core/cpu/kernels.h"

namespace retort::cpu {

namespace {

constexpr float kMinTail = 1e-30f;  // floor of the student's tail mass Q (bucket)

// logsumexp(x · inv_tau) over n, stable.
inline float lse_scaled(const float* x, int64_t n, float inv_tau) {
  float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t v = 0; v < n; ++v) m = x[v] > m ? x[v] : m;
  m *= inv_tau;  // τ > 0: max commutes with the scaling
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t v = 0; v < n; ++v) s += exp_fast(x[v] * inv_tau - m);
  return m + std::log(s);
}

// Teacher top-k probabilities of one row into p [k] (renormalized or raw); returns the
// teacher's tail mass P (0 when renormalized) and the log-normaliser in *log_norm.
inline double topk_probs(double* p, const float* logp, int64_t k, int tail, double* log_norm) {
  double mx = -std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < k; ++i) mx = std::max(mx, double(logp[i]));
  double sum = 0;
  for (int64_t i = 0; i < k; ++i) sum += std::exp(double(logp[i]) - mx);
  if (tail == 0) {  // renormalize
    *log_norm = mx + std::log(sum);
    for (int64_t i = 0; i < k; ++i) p[i] = std::exp(double(logp[i]) - *log_norm);
    return 0;
  }
  *log_norm = 0;
  double total = 0;
  for (int64_t i = 0; i < k; ++i) total += (p[i] = std::exp(double(logp[i])));
  return std::max(0.0, 1.0 - total);
}

}  // namespace

void kd_logsumexp(float* lse, const float* logits, int64_t rows, int64_t V, float inv_tau) {
#pragma omp parallel for schedule(static) if (rows * V >= 16384)
  for (int64_t r = 0; r < rows; ++r) lse[r] = lse_scaled(logits + r * V, V, inv_tau);
}

void kd_topk_shard_forward(float* kl, float* tail_q, const float* logits, const float* lse_s,
                           const int32_t* ids, const float* logp, int64_t rows, int64_t V,
                           int64_t k, float inv_tau, int tail) {
#pragma omp parallel if (rows * V >= 16384)
  {
    std::vector<double> p(k);
    std::vector<float> outside(tail == 1 ? V : 0, 1.0f);  // 1 off the top-k, 0 on it
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* x = logits + r * V;
      const int32_t* id = ids + r * k;
      const float* lp = logp + r * k;
      const float lse = lse_s[r];
      double log_norm = 0;
      topk_probs(p.data(), lp, k, tail, &log_norm);
      double sum = 0;  // Σ_{i here} p_i (log p_i − s_{I_i})
      for (int64_t i = 0; i < k; ++i)
        if (id[i] >= 0 && p[i] > 0)
          sum += p[i] * ((double(lp[i]) - log_norm) - (double(x[id[i]]) * inv_tau - lse));
      kl[r] = float(sum);
      if (tail != 1) {
        tail_q[r] = 0.0f;
        continue;
      }
      for (int64_t i = 0; i < k; ++i)
        if (id[i] >= 0) outside[id[i]] = 0.0f;
      float sq = 0.0f;  // Σ_{v here, ∉I} exp(z_v/τ − lse)
#pragma omp simd reduction(+ : sq)
      for (int64_t v = 0; v < V; ++v) sq += outside[v] * exp_fast(x[v] * inv_tau - lse);
      for (int64_t i = 0; i < k; ++i)
        if (id[i] >= 0) outside[id[i]] = 1.0f;
      tail_q[r] = sq;
    }
  }
}

void kd_bucket_finish(float* kl, float* tail_q, const float* logp, int64_t rows, int64_t k) {
  std::vector<double> p(k);
  for (int64_t r = 0; r < rows; ++r) {
    double log_norm = 0;
    const double P = topk_probs(p.data(), logp + r * k, k, 1, &log_norm);
    const float Q = std::max(tail_q[r], kMinTail);
    tail_q[r] = Q;
    if (P > 0) kl[r] = float(double(kl[r]) + P * (std::log(P) - std::log(double(Q))));
  }
}

void kd_topk_backward(float* dlogits, const float* logits, const float* lse_s, const float* tail_q,
                      const int32_t* ids, const float* logp, int64_t rows, int64_t V, int64_t k,
                      float inv_tau, int tail, float scale) {
#pragma omp parallel if (rows * V >= 16384)
  {
    std::vector<double> p(k);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* x = logits + r * V;
      float* d = dlogits + r * V;
      const int32_t* id = ids + r * k;
      const float lse = lse_s[r];
      double log_norm = 0;
      const double P = topk_probs(p.data(), logp + r * k, k, tail, &log_norm);
      const double c = double(scale) * inv_tau;
      // ratio = P/Q: off the top-k the gradient is c·q_v·(1 − ratio); renormalize: ratio 0.
      const double ratio = tail == 1 ? P / double(tail_q[r]) : 0.0;
      const float cq = float(c * (1.0 - ratio));
      for (int64_t v = 0; v < V; ++v) d[v] += cq * exp_fast(x[v] * inv_tau - lse);
      // On the top-k: c·(q_v − p_v) in total, i.e. add c·(q_v·ratio − p_v).
      for (int64_t i = 0; i < k; ++i) {
        if (id[i] < 0) continue;  // on another shard
        const double q = std::exp(double(x[id[i]]) * inv_tau - double(lse));
        d[id[i]] += float(c * (q * ratio - p[i]));
      }
    }
  }
}

void kd_dense_shard_forward(float* kl, const float* logits, const float* teacher,
                            const float* lse_s, const float* lse_t, int64_t rows, int64_t V,
                            float inv_tau) {
#pragma omp parallel for schedule(static) if (rows * V >= 16384)
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = logits + r * V;
    const float* t = teacher + r * V;
    const float lt = lse_t[r], dl = lt - lse_s[r];
    float sum = 0.0f;  // Σ_{v here} p_v ((t_v − z_v)/τ − (lse_t − lse_s))
#pragma omp simd reduction(+ : sum)
    for (int64_t v = 0; v < V; ++v)
      sum += exp_fast(t[v] * inv_tau - lt) * ((t[v] - x[v]) * inv_tau - dl);
    kl[r] = sum;
  }
}

void kd_dense_backward(float* dlogits, const float* logits, const float* lse_s,
                       const float* teacher, const float* lse_t, int64_t rows, int64_t V,
                       float inv_tau, float scale) {
#pragma omp parallel for schedule(static) if (rows * V >= 16384)
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = logits + r * V;
    const float* t = teacher + r * V;
    float* d = dlogits + r * V;
    const float ls = lse_s[r], lt = lse_t[r], c = scale * inv_tau;
#pragma omp simd
    for (int64_t v = 0; v < V; ++v)
      d[v] += c * (exp_fast(x[v] * inv_tau - ls) - exp_fast(t[v] * inv_tau - lt));
  }
}

}  // namespace retort::cpu
