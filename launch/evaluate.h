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
  double kl_to_teacher = 0, teacher_loss = 0;  // with a teacher: mean KL(p_T ‖ p) and its CE
};

// tokens: the split's 1-D I32 token stream. Windows are evaluated `batch` at a time. With a
// teacher (same vocabulary, whole on this rank) also its loss and the mean per-token
// KL(softmax(teacher logits) ‖ softmax(model logits)) over the same windows.
EvalResult evaluate_windows(Transformer& model, const Tensor& tokens, int64_t seq_len,
                            int64_t max_windows, int64_t batch = 8, Transformer* teacher = nullptr);

}  // namespace retort
