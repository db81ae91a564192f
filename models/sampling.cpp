// See sampling.h.
#include "models/sampling.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <utility>

#include "core/check.h"

namespace retort {
namespace {

// Ascending order of distinct keys: least-significant digit first, a byte per pass, skipping
// the bytes every key shares (the id's high bytes, often the logit's sign and exponent).
void radix_sort(std::vector<uint64_t>& keys) {
  std::vector<uint64_t> other(keys.size());
  for (int shift = 0; shift < 64; shift += 8) {
    size_t at[256] = {};
    for (uint64_t k : keys) ++at[(k >> shift) & 0xff];
    if (at[(keys[0] >> shift) & 0xff] == keys.size()) continue;
    size_t sum = 0;
    for (size_t& a : at) sum += std::exchange(a, sum);  // counts -> first positions
    for (uint64_t k : keys) other[at[(k >> shift) & 0xff]++] = k;
    keys.swap(other);
  }
}

// Ids by descending logit, ties by smaller id, as keys that sort ascending as plain integers
// (no indirect compare): the logit's bits made order-preserving and inverted, then the id.
// -0 counts as +0 (they compare equal). The first n of V sorted (n = V: all).
std::vector<int32_t> ids_by_logit(const float* logits, int64_t V, int64_t n) {
  std::vector<uint64_t> keys(V);
  for (int64_t j = 0; j < V; ++j) {
    const uint32_t u = std::bit_cast<uint32_t>(logits[j] == 0 ? 0.0f : logits[j]);
    const uint32_t ascending = u & 0x80000000u ? ~u : u | 0x80000000u;
    keys[j] = uint64_t(~ascending) << 32 | uint32_t(j);
  }
  if (n < V) std::partial_sort(keys.begin(), keys.begin() + n, keys.end());
  else radix_sort(keys);
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = int32_t(uint32_t(keys[i]));
  return ids;
}

// The kept ids in descending-probability order and their unnormalised weights exp(z - max).
struct Kept {
  std::vector<int32_t> ids;
  std::vector<double> w;
  double total = 0;
};

Kept kept_distribution(const float* logits, int64_t V, const SamplingParams& p) {
  RETORT_CHECK(V >= 1 && p.temperature > 0 && p.top_k >= 0 && p.top_p > 0 && p.top_p <= 1,
               "sampling: bad parameters (V ", V, ", temperature ", p.temperature, ", top_k ",
               p.top_k, ", top_p ", p.top_p, ")");
  Kept out;
  const int64_t keep = p.top_k > 0 ? std::min(p.top_k, V) : V;
  if (keep < V || p.top_p < 1) {
    out.ids = ids_by_logit(logits, V, keep);
  } else {  // plain sampling needs no order
    out.ids.resize(V);
    std::iota(out.ids.begin(), out.ids.end(), 0);
  }
  double m = -INFINITY;
  for (int32_t id : out.ids) m = std::max(m, double(logits[id]));
  out.w.resize(out.ids.size());
  for (size_t i = 0; i < out.ids.size(); ++i) {
    out.w[i] = std::exp((double(logits[out.ids[i]]) - m) / p.temperature);
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
  if (p.temperature == 0) {  // greedy: the first largest
    return int32_t(std::max_element(logits, logits + V) - logits);
  }
  const Kept k = kept_distribution(logits, V, p);
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
    prob[std::max_element(logits, logits + V) - logits] = 1;
    return prob;
  }
  const Kept k = kept_distribution(logits, V, p);
  for (size_t i = 0; i < k.ids.size(); ++i) prob[k.ids[i]] = k.w[i] / k.total;
  return prob;
}

void topk_logprobs(const float* logits, int64_t V, double tau, int64_t k, int32_t* ids,
                   float* logprobs) {
  RETORT_CHECK(k >= 1 && k <= V && tau > 0, "topk_logprobs: k ", k, ", V ", V, ", tau ", tau);
  // log_softmax(z)_j = z_j - (m + log Σ exp(z - m)), z = logits / tau, in double
  double m = -INFINITY;
  for (int64_t j = 0; j < V; ++j) m = std::max(m, double(logits[j]) / tau);
  double s = 0;
  for (int64_t j = 0; j < V; ++j) s += std::exp(double(logits[j]) / tau - m);
  const double lse = m + std::log(s);
  const std::vector<int32_t> order = ids_by_logit(logits, V, k);
  for (int64_t i = 0; i < k; ++i) {
    ids[i] = order[i];
    logprobs[i] = float(double(logits[order[i]]) / tau - lse);
  }
}

}  // namespace retort
