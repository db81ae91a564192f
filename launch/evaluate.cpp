#include "launch/evaluate.h"

#include <algorithm>
#include <cstring>

#include "core/ops.h"

namespace retort {

EvalResult evaluate_windows(Transformer& model, const Tensor& tokens, int64_t T,
                            int64_t max_windows, int64_t batch, Transformer* teacher) {
  const int64_t n = tokens.numel();
  EvalResult r;
  r.windows = std::min<int64_t>(max_windows, n > 0 ? (n - 1) / T : 0);
  if (r.windows <= 0)
    throw Error(str_cat("evaluation needs at least ", T + 1, " tokens, the dataset has ", n));
  r.tokens = r.windows * T;
  const int32_t* src = tokens.host<int32_t>();
  Bf16WeightsScope armed(model);  // bf16 products: the weights rounded once, not per batch
  double sum = 0, kl_sum = 0, teacher_sum = 0;  // Σ over batches of (mean · windows in batch)
  for (int64_t first = 0; first < r.windows; first += batch) {
    int64_t b = std::min(batch, r.windows - first);
    Tensor inputs = Tensor::empty({b, T}, DType::I32), targets = Tensor::empty({b, T}, DType::I32);
    for (int64_t i = 0; i < b; ++i) {
      const int32_t* w = src + (first + i) * T;
      std::memcpy(inputs.host<int32_t>() + i * T, w, T * sizeof(int32_t));
      std::memcpy(targets.host<int32_t>() + i * T, w + 1, T * sizeof(int32_t));
    }
    sum += model.evaluate(inputs, targets) * b;
    if (!teacher) continue;
    teacher_sum += teacher->evaluate(inputs, targets) * b;
    const int64_t R = b * T;
    Tensor kl = Tensor::empty({R}), lse = Tensor::empty({R}), teacher_lse = Tensor::empty({R});
    ops::kd_dense_forward(kl, lse, teacher_lse, model.logits(), teacher->logits(), 1.0f);
    double s = 0;
    for (int64_t i = 0; i < R; ++i) s += kl.host<float>()[i];
    kl_sum += s / T;
  }
  r.loss = sum / r.windows;
  r.kl_to_teacher = kl_sum / r.windows;
  r.teacher_loss = teacher_sum / r.windows;
  return r;
}

}  // namespace retort
