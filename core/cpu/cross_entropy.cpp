// Softmax cross-entropy with z-loss, one row per token.
//   lse_r = m + log Σ_v exp(x_v − m), m = max_v x_v      (stable logsumexp)
//   ce_r  = lse_r − x_{target}
//   loss  = ce_scale·Σ_r ce_r + z_scale·Σ_r lse_r²
//   dx_v  = ce_scale·(p_v − [v = target]) + z_scale·2·lse_r·p_v,  p_v = exp(x_v − lse_r)
// logits float32 or bf16 (a bf16 product's output), read as fp32.
// Vocabulary-parallel use: a target of -1 lies on another rank's shard (ce_r = lse_r, no
// one-hot term), and backward takes the lse over the whole vocabulary (see logsumexp_merge).
#include <algorithm>
#include <cmath>
#include <limits>

#include "core/cpu/bf16.h"
#include "core/cpu/fast_math.h"
#include "core/cpu/kernels.h"

namespace retort::cpu {

template <class In>
void cross_entropy_forward(float* ce, float* lse, const In* logits, const int32_t* targets,
                           int64_t rows, int64_t V) {
#pragma omp parallel for schedule(static) if (rows * V >= 16384)
  for (int64_t r = 0; r < rows; ++r) {
    const In* x = logits + r * V;
    float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
    for (int64_t v = 0; v < V; ++v) m = load(&x[v]) > m ? load(&x[v]) : m;
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t v = 0; v < V; ++v) s += exp_fast(load(&x[v]) - m);
    const float l = m + std::log(s);
    lse[r] = l;
    ce[r] = targets[r] < 0 ? l : l - load(&x[targets[r]]);
  }
}

// Out: float (dlogits may be logits) or uint16_t (bf16, rounded at the store; may be bf16
// logits themselves).
template <class Out, class In>
void cross_entropy_backward(Out* dlogits, const In* logits, const float* lse,
                            const int32_t* targets, int64_t rows, int64_t V, float ce_scale,
                            float z_scale) {
#pragma omp parallel for schedule(static) if (rows * V >= 16384)
  for (int64_t r = 0; r < rows; ++r) {
    const In* x = logits + r * V;
    Out* d = dlogits + r * V;
    const float l = lse[r];
    const float coef = ce_scale + 2.0f * z_scale * l;  // multiplies p_v
    const int64_t t = targets[r];  // −1: no one-hot term on this shard
    for (int64_t v = 0; v < V; ++v) {
      const float g = coef * exp_fast(load(&x[v]) - l);
      store(&d[v], v == t ? g - ce_scale : g);
    }
  }
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
RETORT_CE_BACKWARD(float, float)
RETORT_CE_BACKWARD(uint16_t, float)
RETORT_CE_BACKWARD(uint16_t, uint16_t)
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
