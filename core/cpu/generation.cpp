// Generation's per-row work (core/ops.h: topk_log_softmax, sample_tokens), one OpenMP thread
// per row of logits x [V]:
//   topk_log_softmax: lse = m + log Σ_j exp(x_j/τ − m), m = max_j x_j/τ (double, j in order);
//     the k ids of the largest x by descending value, ties by the smaller id
//     (core/descending_order.h); logprob_i = float(x_{id_i}/τ − lse).
//   sample_tokens: sample_token (core/sampling.h) of each row with its u.
#include <algorithm>
#include <cmath>
#include <vector>

#include "core/cpu/kernels.h"
#include "core/descending_order.h"

namespace retort::cpu {

void topk_log_softmax(int32_t* ids, float* logprobs, const float* logits, int64_t rows,
                      int64_t V, int64_t k, double tau) {
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = logits + r * V;
    double m = -INFINITY;
    for (int64_t j = 0; j < V; ++j) m = std::max(m, double(x[j]) / tau);
    double s = 0;
    for (int64_t j = 0; j < V; ++j) s += std::exp(double(x[j]) / tau - m);
    const double lse = m + std::log(s);
    const std::vector<int32_t> order = ids_by_descending_value(x, V, k);
    for (int64_t i = 0; i < k; ++i) {
      ids[r * k + i] = order[i];
      logprobs[r * k + i] = float(double(x[order[i]]) / tau - lse);
    }
  }
}

void sample_tokens(int32_t* tokens, const float* logits, int64_t rows, int64_t V,
                   const RowDraws& draws, const SamplingParams& p) {
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t r = 0; r < rows; ++r) tokens[r] = sample_token(logits + r * V, V, p, draws.u(r));
}

}  // namespace retort::cpu
