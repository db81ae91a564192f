#include "data/corpus_batches.h"

#include <cstring>

namespace retort {

CorpusBatches::CorpusBatches(const CorpusReader& reader, uint64_t seed)
    : reader_(reader), order_(reader.num_sequences(), seed) {
  RETORT_CHECK(reader.meta().seq_len >= 2, reader.dir(), ": sequences of length ",
               reader.meta().seq_len, " have no next-token targets (need >= 2)");
}

void CorpusBatches::fill(int64_t first, int64_t count, Tensor& inputs, Tensor& targets,
                         Tensor& topk_ids, Tensor& topk_logprobs) const {
  const int64_t T = seq_len(), k = this->k();
  RETORT_CHECK(inputs.shape() == Shape({count, T}) && targets.shape() == Shape({count, T}),
               "CorpusBatches::fill: inputs/targets must be [", count, ", ", T, "]");
  const bool teacher = topk_ids.defined();
  if (teacher)
    RETORT_CHECK(topk_ids.shape() == Shape({count, T, k}) && topk_logprobs.shape() == Shape({count, T, k}),
                 "CorpusBatches::fill: top-k tensors must be [", count, ", ", T, ", ", k, "]");
  for (int64_t r = 0; r < count; ++r) {
    reader_.read(order_.item_of(first + r), 1, buf_);
    const int32_t* tok = buf_.tokens.data();
    std::memcpy(inputs.host<int32_t>() + r * T, tok, T * sizeof(int32_t));
    std::memcpy(targets.host<int32_t>() + r * T, tok + 1, T * sizeof(int32_t));
    if (!teacher) continue;
    std::memcpy(topk_ids.host<int32_t>() + r * T * k, buf_.topk_ids.data(), T * k * sizeof(int32_t));
    std::memcpy(topk_logprobs.host<float>() + r * T * k, buf_.topk_logprobs.data(), T * k * sizeof(float));
  }
}

}  // namespace retort
