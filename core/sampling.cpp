// See sampling.h.
#include "core/sampling.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>

#include "core/check.h"
#include "core/descending_order.h"

namespace retort {
namespace {

// The first id in descending-key order (the largest value, ties by the smaller id; a NaN with
// its sign bit clear before +inf, one with it set last): greedy's token, and the draw of a row
// with no finite weight (an infinite or NaN largest value, or all -inf), as on the GPU.
int32_t first_largest(const float* logits, int64_t V) {
  uint64_t best = ~0ull;
  for (int64_t j = 0; j < V; ++j) best = std::min(best, descending_key(logits[j], j));
  return int32_t(uint32_t(best));
}

// The kept ids in descending-probability order and their unnormalised weights exp(z - max),
// 0 where that is NaN; `first`: first_largest, the token when total is 0.
struct Kept {
  std::vector<int32_t> ids;
  std::vector<double> w;
  double total = 0;
  int32_t first = 0;
};

Kept kept_distribution(const float* logits, int64_t V, const SamplingParams& p) {
  RETORT_CHECK(V >= 1 && p.temperature > 0 && p.top_k >= 0 && p.top_p > 0 && p.top_p <= 1,
               "sampling: bad parameters (V ", V, ", temperature ", p.temperature, ", top_k ",
               p.top_k, ", top_p ", p.top_p, ")");
  Kept out;
  const int64_t keep = p.top_k > 0 ? std::min(p.top_k, V) : V;
  if (keep < V || p.top_p < 1) {
    out.ids = ids_by_descending_value(logits, V, keep);
  } else {  // plain sampling needs no order
    out.ids.resize(V);
    std::iota(out.ids.begin(), out.ids.end(), 0);
  }
  // ids in descending-key order start with it (top_k keeps it); plain sampling looks for it
  out.first = keep < V || p.top_p < 1 ? out.ids[0] : first_largest(logits, V);
  const double m = logits[out.first];
  out.w.resize(out.ids.size());
  for (size_t i = 0; i < out.ids.size(); ++i) {
    const double e = std::exp((double(logits[out.ids[i]]) - m) / p.temperature);
    out.w[i] = e > 0 ? e : 0;
    out.total += out.w[i];
  }
  if (p.top_p < 1) {  // smallest prefix whose probability reaches top_p
    double run = 0;
    size_t n = 0;
    while (n < out.w.size()) {
      run += out.w[n++];
      if (run >= p.top_p * out.total) break;
    }
    out.ids.resize(n);
    out.w.resize(n);
    out.total = run;
  }
  return out;
}

}  // namespace

int32_t sample_token(const float* logits, int64_t V, const SamplingParams& p, double u) {
  if (p.temperature == 0) return first_largest(logits, V);  // greedy
  const Kept k = kept_distribution(logits, V, p);
  if (k.total == 0) return k.first;
  const double target = u * k.total;
  double run = 0;
  for (size_t i = 0; i < k.ids.size(); ++i) {
    run += k.w[i];
    if (target < run) return k.ids[i];
  }
  return k.ids.back();  // u·total rounded up to the total
}

std::vector<double> sampling_probabilities(const float* logits, int64_t V, const SamplingParams& p) {
  std::vector<double> prob(V, 0.0);
  if (p.temperature == 0) {
    prob[first_largest(logits, V)] = 1;
    return prob;
  }
  const Kept k = kept_distribution(logits, V, p);
  if (k.total == 0) {
    prob[k.first] = 1;
    return prob;
  }
  for (size_t i = 0; i < k.ids.size(); ++i) prob[k.ids[i]] = k.w[i] / k.total;
  return prob;
}

}  // namespace retort
