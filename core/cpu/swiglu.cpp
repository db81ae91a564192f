// SwiGLU: h = silu(gate) ⊙ up, silu(z) = z·σ(z).
//   dgate = dh ⊙ up ⊙ σ(z)(1 + z(1 − σ(z))),   dup = dh ⊙ silu(z)
#include "core/cpu/bf16.h"
#include "core/cpu/fast_math.h"
#include "core/cpu/kernels.h"

namespace retort::cpu {

namespace {

// Out: float, or uint16_t for bf16 outputs (rounded once, at the store).
template <class Out>
void forward(Out* h, const float* gate, const float* up, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= 16384)
  for (int64_t i = 0; i < n; ++i) {
    const float z = gate[i];
    store(&h[i], z * sigmoid_fast(z) * up[i]);
  }
}

template <class Out>
void backward(Out* dgate, Out* dup, const float* dh, const float* gate, const float* up,
              int64_t n) {
#pragma omp parallel for schedule(static) if (n >= 16384)
  for (int64_t i = 0; i < n; ++i) {
    const float z = gate[i], s = sigmoid_fast(z), d = dh[i];
    store(&dgate[i], d * up[i] * s * (1.0f + z * (1.0f - s)));
    store(&dup[i], d * z * s);
  }
}

}  // namespace

void swiglu_forward(float* h, const float* gate, const float* up, int64_t n) {
  forward(h, gate, up, n);
}
void swiglu_forward(uint16_t* h, const float* gate, const float* up, int64_t n) {
  forward(h, gate, up, n);
}
void swiglu_backward(float* dgate, float* dup, const float* dh, const float* gate,
                     const float* up, int64_t n) {
  backward(dgate, dup, dh, gate, up, n);
}
void swiglu_backward(uint16_t* dgate, uint16_t* dup, const float* dh, const float* gate,
                     const float* up, int64_t n) {
  backward(dgate, dup, dh, gate, up, n);
}

}  // namespace retort::cpu
