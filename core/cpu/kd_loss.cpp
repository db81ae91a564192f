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

void kd_topk_forward(float* kl, float* lse_s, float* tail_q, const float* logits,
                     const int32_t* ids, const float* logp, int64_t rows, int64_t V, int64_t k,
                     float inv_tau, int tail) {
#pragma omp parallel if (rows * V >= 16384)
  {
    std::vector<double> p(k);
    std::vector<float> outside(tail == 1 ? V : 0, 1.0f);  // 1 off the top-k, 0 on it
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
      const float* x = logits + r * V;
      const int32_t* id = ids + r * k;
      const float* lp = logp + r * k;
      const float lse = lse_scaled(x, V, inv_tau);
      lse_s[r] = lse;
      double log_norm = 0;
      const double P = topk_probs(p.data(), lp, k, tail, &log_norm);
      double sum = 0;  // Σ_i p_i (log p_i − s_{I_i})
      for (int64_t i = 0; i < k; ++i)
        if (p[i] > 0) sum += p[i] * ((double(lp[i]) - log_norm) - (double(x[id[i]]) * inv_tau - lse));
      if (tail == 1) {
        for (int64_t i = 0; i < k; ++i) outside[id[i]] = 0.0f;
        float sq = 0.0f;  // Σ_{v∉I} exp(z_v/τ − lse) = Q
#pragma omp simd reduction(+ : sq)
        for (int64_t v = 0; v < V; ++v) sq += outside[v] * exp_fast(x[v] * inv_tau - lse);
        for (int64_t i = 0; i < k; ++i) outside[id[i]] = 1.0f;
        const float Q = std::max(sq, kMinTail);
        tail_q[r] = Q;
        if (P > 0) sum += P * (std::log(P) - std::log(double(Q)));
      } else {
        tail_q[r] = 0.0f;
      }
      kl[r] = float(sum);
    }
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
        const double q = std::exp(double(x[id[i]]) * inv_tau - double(lse));
        d[id[i]] += float(c * (q * ratio - p[i]));
      }
    }
  }
}

void kd_dense_forward(float* kl, float* lse_s, float* lse_t, const float* logits,
                      const float* teacher, int64_t rows, int64_t V, float inv_tau) {
#pragma omp parallel for schedule(static) if (rows * V >= 16384)
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = logits + r * V;
    const float* t = teacher + r * V;
    const float ls = lse_scaled(x, V, inv_tau), lt = lse_scaled(t, V, inv_tau);
    lse_s[r] = ls;
    lse_t[r] = lt;
    const float dl = lt - ls;
    float sum = 0.0f;  // Σ_v p_v ((t_v − z_v)/τ − (lse_t − lse_s))
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
