// SwiGLU on the packed gate/up product: per row r, z = gate_up[r, :F], u = gate_up[r, F:],
//   h = silu(z) ⊙ u,   silu(z) = z·σ(z)
//   dgate = dh ⊙ u ⊙ σ(z)(1 + z(1 − σ(z))),   dup = dh ⊙ silu(z)   (into dgate_up's halves)
#include "core/cpu/bf16.h"
#include "core/cpu/fast_math.h"
#include "core/cpu/kernels.h"

namespace retort::cpu {

// Out, In: float, or uint16_t for bf16 (outputs rounded once, at the store).
template <class Out, class In>
void swiglu_forward(Out* h, const In* gate_up, int64_t rows, int64_t F) {
#pragma omp parallel for schedule(static) if (rows * F >= 16384)
  for (int64_t r = 0; r < rows; ++r) {
    const In* gate = gate_up + r * 2 * F;
    const In* up = gate + F;
    Out* hr = h + r * F;
    for (int64_t c = 0; c < F; ++c) {
      const float z = load(&gate[c]);
      store(&hr[c], z * sigmoid_fast(z) * load(&up[c]));
    }
  }
}

template <class Out, class In>
void swiglu_backward(Out* dgate_up, const In* dh, const In* gate_up, int64_t rows, int64_t F) {
#pragma omp parallel for schedule(static) if (rows * F >= 16384)
  for (int64_t r = 0; r < rows; ++r) {
    const In* gate = gate_up + r * 2 * F;
    const In* up = gate + F;
    const In* dhr = dh + r * F;
    Out* dgate = dgate_up + r * 2 * F;
    Out* dup = dgate + F;
    for (int64_t c = 0; c < F; ++c) {
      const float z = load(&gate[c]), s = sigmoid_fast(z), d = load(&dhr[c]);
      store(&dgate[c], d * load(&up[c]) * s * (1.0f + z * (1.0f - s)));
      store(&dup[c], d * z * s);
    }
  }
}

#define RETORT_SWIGLU(Out, In)                                                          \
  template void swiglu_forward(Out*, const In*, int64_t, int64_t);                     \
  template void swiglu_backward(Out*, const In*, const In*, int64_t, int64_t);
RETORT_SWIGLU(float, float)
RETORT_SWIGLU(uint16_t, float)
RETORT_SWIGLU(float, uint16_t)
RETORT_SWIGLU(uint16_t, uint16_t)
#undef RETORT_SWIGLU

}  // namespace retort::cpu
