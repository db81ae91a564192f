// SwiGLU: h = silu(gate) ⊙ up, silu(z) = z·σ(z).
//   dgate = dh ⊙ up ⊙ σ(z)(1 + z(1 − σ(z))),   dup = dh ⊙ silu(z)
#include "core/cpu/fast_math.h"
#include "core/cpu/kernels.h"

namespace retort::cpu {

void swiglu_forward(float* h, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= 16384)
  for (int64_t i = 0; i < n; ++i) {
    const float z = gate[i];
    h[i] = z * sigmoid_fast(z) * up[i];
  }
}

void swiglu_backward(float* dgate, float* dup, const float* dh, const float* gate,
                     const float* up, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= 16384)
  for (int64_t i = 0; i < n; ++i) {
    const float z = gate[i], s = sigmoid_fast(z), d = dh[i];
    dgate[i] = d * up[i] * s * (1.0f + z * (1.0f - s));
    dup[i] = d * z * s;
  }
}

}  // namespace retort::cpu
