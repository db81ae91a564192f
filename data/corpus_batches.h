// Training batches from a distillation corpus (SPEC §5) for `retort distill`.
//
// Sequence order: SampleOrder(num_sequences, seed) (data/sample_order.h), so global sample i
// is corpus sequence order.item_of(i) and the order depends only on (seed, i). Row r of a
// batch starting at global index `first` is sequence s = order.item_of(first + r):
//   inputs[r]  = tokens[s, 0 .. Ls-2]      targets[r] = tokens[s, 1 .. Ls-1]       [count, Ls-1]
//   topk_ids[r, t, :], topk_logprobs[r, t, :] = the corpus rows for target t     [count, Ls-1, k]
// (corpus row t is the teacher's distribution of token t+1 given tokens <= t).
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "data/distill_corpus.h"
#include "data/sample_order.h"

namespace retort {

class CorpusBatches {
 public:
  // reader must outlive this object.
  CorpusBatches(const CorpusReader& reader, uint64_t seed);

  int64_t seq_len() const { return reader_.meta().seq_len - 1; }  // T = Ls - 1
  int64_t k() const { return reader_.meta().k; }

  // inputs, targets: I32 [count, T]; topk_ids I32 / topk_logprobs F32 [count, T, k], or
  // undefined tensors to skip the teacher rows (online teacher on corpus tokens).
  void fill(int64_t first, int64_t count, Tensor& inputs, Tensor& targets, Tensor& topk_ids,
            Tensor& topk_logprobs) const;

 private:
  const CorpusReader& reader_;
  SampleOrder order_;
  mutable CorpusSequences buf_;  // one sequence at a time
};

}  // namespace retort
