// Softmax cross-entropy with z-loss, one row per token.
//   lse_r = m + log Σ_v exp(x_v − m), m = max_v x_v      (stable logsumexp)
//   ce_r  = lse_r − x_{target}
//   loss  = ce_scale·Σ_r ce_r + z_scale·Σ_r lse_r²
//   dx_v  = ce_scale·(p_v − [v = target]) + z_scale·2·lse_r·p_v,  p_v = exp(x_v − lse_r)
// logits float32 or bf16 (a bf16 product's output), read as fp32.
// Vocabulary-parallel use: a target of -1 lies on another rank's shard (ce_r = lse_r, no
// one-hot term), and backward takes the lse over the whole vocabulary (see logsumexp_merge).
// forward_backward: both per row in one pass over the logits (a row's lse is its whole
// vocabulary's: no tensor parallelism).
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/cpu/bf16.h"
#include "core/cpu/fast_math.h"
#include "core/cpu/kernels.h"

namespace retort::cpu {

namespace {

// One row's lse over its V logits: m + log Σ exp(x − m).
template <class In>
float row_lse(const In* x, int64_t V) {
  float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
  for (int64_t v = 0; v < V; ++v) m = load(&x[v]) > m ? load(&x[v]) : m;
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t v = 0; v < V; ++v) s += exp_fast(load(&x[v]) - m);
  return m + std::log(s);
}

// One row's dlogits from its lse l and target t (−1: none on this shard); d may be x.
template <class Out, class In>
void row_gradient(Out* d, const In* x, float l, int64_t t, int64_t V, float ce_scale,
                  float z_scale) {
  const float coef = ce_scale + 2.0f * z_scale * l;  // multiplies p_v
  for (int64_t v = 0; v < V; ++v) {
    const float g = coef * exp_fast(load(&x[v]) - l);
    store(&d[v], v == t ? g - ce_scale : g);
  }
}

}  // namespace

// Out: float (dlogits may be logits) or uint16_t (bf16, rounded at the store; may be bf16
// logits themselves).
template <class Out, class In>
void cross_entropy_backward(Out* dlogits, const In* logits, const float* lse,
                            const int32_t* targets, int64_t rows, int64_t V, float ce_scale,
                            float z_scale) {
#pragma omp parallel for schedule(static) if (rows * V >= 16384)
  for (int64_t r = 0; r < rows; ++r)
    row_gradient(dlogits + r * V, logits + r * V, lse[r], targets[r], V, ce_scale, z_scale);
}

// Each row's forward, then (dlogits non-null) its gradient while the row is still in cache.
template <class Out, class In>
void cross_entropy_forward_backward(float* ce, float* lse, Out* dlogits, const In* logits,
                                    const int32_t* targets, int64_t rows, int64_t V,
                                    float ce_scale, float z_scale) {
#pragma omp parallel for schedule(static) if (rows * V >= 16384)
  for (int64_t r = 0; r < rows; ++r) {
    const In* x = logits + r * V;
    const float l = row_lse(x, V);
    lse[r] = l;
    ce[r] = targets[r] < 0 ? l : l - load(&x[targets[r]]);  // read before d overwrites it
    if (dlogits) row_gradient(dlogits + r * V, x, l, targets[r], V, ce_scale, z_scale);
  }
}

// Forward alone: forward_backward without a gradient.
template <class In>
void cross_entropy_forward(float* ce, float* lse, const In* logits, const int32_t* targets,
                           int64_t rows, int64_t V) {
  cross_entropy_forward_backward<In, In>(ce, lse, nullptr, logits, targets, rows, V, 0.0f, 0.0f);
}

template <class In>
void target_logits(float* out, const In* logits, const int32_t* targets, int64_t rows, int64_t V) {
  for (int64_t r = 0; r < rows; ++r)
    out[r] = targets[r] < 0 ? 0.0f : load(&logits[r * V + targets[r]]);
}

template void cross_entropy_forward(float*, float*, const float*, const int32_t*, int64_t, int64_t);
template void cross_entropy_forward(float*, float*, const uint16_t*, const int32_t*, int64_t,
                                    int64_t);
#define RETORT_CE_BACKWARD(Out, In)                                                            \
  template void cross_entropy_backward(Out*, const In*, const float*, const int32_t*, int64_t, \
                                       int64_t, float, float);
#define RETORT_CE_FORWARD_BACKWARD(Out, In)                                                 \
  template void cross_entropy_forward_backward(float*, float*, Out*, const In*,             \
                                               const int32_t*, int64_t, int64_t, float, float);
#define RETORT_CE(Out, In) RETORT_CE_BACKWARD(Out, In) RETORT_CE_FORWARD_BACKWARD(Out, In)
RETORT_CE(float, float)
RETORT_CE(uint16_t, float)
RETORT_CE(uint16_t, uint16_t)
#undef RETORT_CE
#undef RETORT_CE_FORWARD_BACKWARD
#undef RETORT_CE_BACKWARD
template void target_logits(float*, const float*, const int32_t*, int64_t, int64_t);
template void target_logits(float*, const uint16_t*, const int32_t*, int64_t, int64_t);

void vocab_shard_ids(int32_t* out, const int32_t* ids, int64_t n, int32_t begin, int32_t V) {
  for (int64_t i = 0; i < n; ++i) out[i] = ids[i] >= begin && ids[i] - begin < V ? ids[i] - begin : -1;
}

void logsumexp_merge(float* lse, const float* parts, int64_t n, int64_t rows) {
  for (int64_t r = 0; r < rows; ++r) {
    float m = -std::numeric_limits<float>::infinity();
    for (int64_t i = 0; i < n; ++i) m = std::max(m, parts[i * rows + r]);
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += std::exp(double(parts[i * rows + r]) - m);
    lse[r] = float(m + std::log(s));
  }
}

}  // namespace retort::cpu
