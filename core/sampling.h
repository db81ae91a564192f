// Next-token choice from one row of logits (generation).
//
// sample_token: z = logits / temperature; keep the top_k largest (0 = all); softmax over the
// kept; then keep the smallest prefix (by descending probability, ties by smaller id) whose
// probability reaches top_p; renormalise; return the id where the running sum of the kept
// probabilities first exceeds u · total (inverse CDF in that order). temperature 0 = argmax:
// the first id in descending_key order (core/descending_order.h; ties by the smaller id), which
// is also the token of a row with no finite weight (an infinite or NaN largest logit, or all
// -inf), as on the GPU. Everything in double; u in [0, 1) is the caller's uniform draw, so the
// token is a pure function of (logits, parameters, u).
// (Rows of logits on either device: ops::sample_tokens. A corpus's top-k log-probabilities:
// ops::topk_log_softmax.)
#pragma once
#include <cstdint>
#include <vector>

#include "core/random.h"

namespace retort {

struct SamplingParams {
  double temperature = 1.0;  // 0 = greedy
  int64_t top_k = 0;         // 0 = off
  double top_p = 1.0;        // 1 = off
};

// The uniform draw u of each row of a batch, counter-based (core/random.h), so a GPU kernel
// computes the same u as the host: row r's u = uniform(seed, hash(stream_key, first_stream + r),
// index). The corpus generator: stream first_stream + r is sequence first_stream + r, index the
// position of the token drawn.
struct RowDraws {
  uint64_t seed = 0, stream_key = 0;
  int64_t first_stream = 0;
  uint64_t index = 0;
  RETORT_HOST_DEVICE double u(int64_t r) const {
    return rng::uniform(seed, rng::hash(stream_key, uint64_t(first_stream + r)), index);
  }
};

int32_t sample_token(const float* logits, int64_t V, const SamplingParams& p, double u);

// The probability sample_token gives to each id (for tests and documentation): [V].
std::vector<double> sampling_probabilities(const float* logits, int64_t V, const SamplingParams& p);

}  // namespace retort
