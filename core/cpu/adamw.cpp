// AdamW with decoupled weight decay, bias-corrected, step counted from 1, g = grad_scale·grad
// (gradient clipping's scale, applied here rather than in a pass of its own):
//   m = b1·m + (1−b1)·g;  v = b2·v + (1−b2)·g²
//   p -= lr · ( (m/(1−b1^step)) / (sqrt(v/(1−b2^step)) + eps) + wd·p )
#include <cmath>

#include "core/cpu/kernels.h"

namespace retort::cpu {

void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t step, float grad_scale) {
  const double s = static_cast<double>(step);
  const float inv_bc1 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(beta1), s)));
  const float inv_bc2 = static_cast<float>(1.0 / (1.0 - std::pow(static_cast<double>(beta2), s)));
#pragma omp parallel for schedule(static) if (n >= 16384)
  for (int64_t i = 0; i < n; ++i) {
    const float gi = g[i] * grad_scale;
    const float mi = beta1 * m[i] + (1.0f - beta1) * gi;
    const float vi = beta2 * v[i] + (1.0f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] -= lr * ((mi * inv_bc1) / (std::sqrt(vi * inv_bc2) + eps) + weight_decay * p[i]);
  }
}

// A loop over the tensors: the same arithmetic as one adamw_step per tensor, bit for bit.
void adamw_step_multi(const AdamWTensor* tensors, int64_t count, float lr, float beta1,
                      float beta2, float eps, float weight_decay, int64_t step, float grad_scale) {
  for (int64_t t = 0; t < count; ++t) {
    const AdamWTensor& x = tensors[t];
    adamw_step(x.p, x.g, x.m, x.v, x.n, lr * x.lr_scale, beta1, beta2, eps, x.decay ? weight_decay : 0.0f,
               step, grad_scale);
  }
}

}  // namespace retort::cpu
