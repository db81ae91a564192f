// Attention of one new query per (sequence, head) over a KV cache, for generation:
//   s_j = q · k_j / sqrt(hd) (j < n);  p = softmax(s);  out = Σ_j p_j v_j
// q, out: [B, H, hd]; k, v: [B, T_max, Hkv, hd], float or bf16 (widened exactly); head h reads
// kv head h / (H/Hkv). out float or bf16 (rounded once at the store).
// One (b, h) per task, scores in a thread-local [n] buffer; fixed summation order, so the
// result does not depend on the thread count.
#include <cmath>
#include <vector>

#include "core/cpu/bf16.h"
#include "core/cpu/kernels.h"

namespace retort::cpu {

template <class Out, class KV>
void attention_decode(Out* out, const float* q, const KV* k, const KV* v, int64_t B,
                      int64_t T_max, int64_t n, int64_t H, int64_t Hkv, int64_t hd) {
  const int64_t group = H / Hkv, ldk = Hkv * hd;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
#pragma omp parallel
  {
    std::vector<float> s(static_cast<size_t>(n)), o(static_cast<size_t>(hd));
#pragma omp for schedule(static)
    for (int64_t bh = 0; bh < B * H; ++bh) {
      const int64_t b = bh / H, h = bh % H, j = h / group;
      const float* Q = q + bh * hd;
      const KV* K = k + b * T_max * ldk + j * hd;
      const KV* V = v + b * T_max * ldk + j * hd;
      float m = -INFINITY;
      for (int64_t t = 0; t < n; ++t) {
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int64_t c = 0; c < hd; ++c) dot += Q[c] * load(K + t * ldk + c);
        s[t] = dot * scale;
        m = s[t] > m ? s[t] : m;
      }
      float sum = 0.0f;
      for (int64_t t = 0; t < n; ++t) {
        s[t] = std::exp(s[t] - m);
        sum += s[t];
      }
      float* O = o.data();
      for (int64_t c = 0; c < hd; ++c) O[c] = 0.0f;
      for (int64_t t = 0; t < n; ++t) {
        const float p = s[t] / sum;
#pragma omp simd
        for (int64_t c = 0; c < hd; ++c) O[c] += p * load(V + t * ldk + c);
      }
      for (int64_t c = 0; c < hd; ++c) store(out + bh * hd + c, O[c]);
    }
  }
}

#define RETORT_ATTENTION_DECODE(Out, KV)                                                       \
  template void attention_decode(Out*, const float*, const KV*, const KV*, int64_t, int64_t, \
                                 int64_t, int64_t, int64_t, int64_t);
RETORT_ATTENTION_DECODE(float, float)
RETORT_ATTENTION_DECODE(float, uint16_t)
RETORT_ATTENTION_DECODE(uint16_t, float)
RETORT_ATTENTION_DECODE(uint16_t, uint16_t)
#undef RETORT_ATTENTION_DECODE

}  // namespace retort::cpu
