// SwiGLU: h = silu(gate) ⊙ up, silu(z) = z·σ(z).
//   dgate = dh ⊙ up ⊙ σ(z)(1 + z(1 − σ(z))),   dup = dh ⊙ silu(z)
#include "core/cpu/bf16.h"
#include "core/cpu/fast_math.h"
#include "core/cpu/kernels.h"

namespace retort::cpu {

namespace {

// Out, In: float, or uint16_t for bf16 (outputs rounded once, at the store).
template <class Out, class In>
void forward(Out* h, const In* gate, const In* up, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= 16384)
  for (int64_t i = 0; i < n; ++i) {
    const float z = load(&gate[i]);
    store(&h[i], z * sigmoid_fast(z) * load(&up[i]));
  }
}

template <class Out, class In>
void backward(Out* dgate, Out* dup, const In* dh, const In* gate, const In* up, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= 16384)
  for (int64_t i = 0; i < n; ++i) {
    const float z = load(&gate[i]), s = sigmoid_fast(z), d = load(&dh[i]);
    store(&dgate[i], d * load(&up[i]) * s * (1.0f + z * (1.0f - s)));
    store(&dup[i], d * z * s);
  }
}

}  // namespace

#define RETORT_SWIGLU(Out, In)                                                                \
  void swiglu_forward(Out* h, const In* gate, const In* up, int64_t n) {                     \
    forward(h, gate, up, n);                                                                 \
  }                                                                                          \
  void swiglu_backward(Out* dgate, Out* dup, const In* dh, const In* gate, const In* up,  \
                       int64_t n) {                                                          \
    backward(dgate, dup, dh, gate, up, n);                                                   \
  }
RETORT_SWIGLU(float, float)
RETORT_SWIGLU(uint16_t, float)
RETORT_SWIGLU(float, uint16_t)
RETORT_SWIGLU(uint16_t, uint16_t)
#undef RETORT_SWIGLU

}  // namespace retort::cpu
