// Validation loss by the protocol of SPEC §3: windows i = 0..W-1, W = min(max_windows,
// floor((n-1)/T)); inputs tokens[iT .. iT+T-1], targets shifted by one; mean CE, no z-loss.
#pragma once
#include <cstdint>

#include "core/tensor.h"
#include "models/transformer.h"

namespace retort {

struct EvalResult {
  double loss = 0;
  int64_t tokens = 0;   // W·T
  int64_t windows = 0;  // W
};

// tokens: the split's 1-D I32 token stream. Windows are evaluated `batch` at a time.
EvalResult evaluate_windows(Transformer& model, const Tensor& tokens, int64_t seq_len,
                            int64_t max_windows, int64_t batch = 8);

}  // namespace retort
