// Deterministic window sampler over a 1-D token stream.
//
// The stream is cut into n_windows = floor((n_tokens - 1) / T) non-overlapping windows of
// T+1 tokens; window w covers tokens[w*T .. w*T + T] (inputs = first T, targets = last T).
// Global sample index i maps to window order.item_of(i), a seeded per-epoch permutation
// (data/sample_order.h): the data order depends only on (seed, global index), never on the
// number of ranks or on how the index range is split into batches; every window is seen once
// per epoch, and resuming is exact by passing the next global index.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "data/sample_order.h"

namespace retort {

class WindowLoader {
 public:
  // tokens: 1-D I32 host tensor (shared, not copied). Throws retort::Error if the stream
  // has fewer than T+1 tokens or T < 1.
  WindowLoader(Tensor tokens, int64_t seq_len, uint64_t seed);

  int64_t seq_len() const { return T_; }
  int64_t num_windows() const { return order_.size(); }
  // Window id (0 .. n_windows-1) used for global sample `index` (index >= 0).
  int64_t window_of(int64_t index) const { return order_.item_of(index); }

  // Rows r = 0..count-1 get sample first_global_index + r:
  //   inputs[r, t] = tokens[s + t], targets[r, t] = tokens[s + t + 1], s = window*T.
  // inputs and targets: I32 [count, T] host tensors (allocated by the caller).
  void fill_batch(int64_t first_global_index, int64_t count, Tensor& inputs,
                  Tensor& targets) const;

 private:
  Tensor tokens_;
  int64_t T_;
  SampleOrder order_;
};

}  // namespace retort
