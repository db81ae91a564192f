// Rotary position embedding, rotate-half convention.
//   table[t, i] = cos(t·f_i), table[t, hd/2 + i] = sin(t·f_i), i < hd/2, f_i = theta^(−2i/hd)
//   or given (models/rope_frequencies.h)
//   forward  (sign +1): (x_i, x_j) -> (x_i c − x_j s, x_j c + x_i s), j = i + hd/2
//   backward (sign −1): the transpose, i.e. rotation by −angle.
#include <cmath>
#include <vector>

#include "core/cpu/bf16.h"
#include "core/cpu/kernels.h"

namespace retort::cpu {

void rope_table(float* table, int64_t T, int64_t hd, const double* inv_freq) {
  const int64_t half = hd / 2;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double ang = static_cast<double>(t) * inv_freq[i];
      table[t * hd + i] = static_cast<float>(std::cos(ang));
      table[t * hd + half + i] = static_cast<float>(std::sin(ang));
    }
}

void rope_table(float* table, int64_t T, int64_t hd, double theta) {
  std::vector<double> inv_freq(size_t(hd / 2));
  for (int64_t i = 0; i < hd / 2; ++i) inv_freq[size_t(i)] = std::pow(theta, -2.0 * static_cast<double>(i) / hd);
  rope_table(table, T, hd, inv_freq.data());
}

// x: [B, T, nh, hd], a token's heads x_pitch (y: y_pitch) elements after the previous
// token's; rows of the table are positions 0..T−1. Out, In: float or uint16_t (bf16; rounded
// at the store); y may be x (in place).
template <class Out, class In>
void rope_apply(Out* y, int64_t y_pitch, const In* x, int64_t x_pitch, const float* table,
                int64_t B, int64_t T, int64_t nh, int64_t hd, float sign) {
  const int64_t half = hd / 2;
#pragma omp parallel for collapse(2) schedule(static) if (B * T * nh * hd >= 16384)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const float* cs = table + t * hd;
      const float* sn = cs + half;
      for (int64_t h = 0; h < nh; ++h) {
        const In* xi = x + (b * T + t) * x_pitch + h * hd;
        Out* yi = y + (b * T + t) * y_pitch + h * hd;
        for (int64_t i = 0; i < half; ++i) {
          const float c = cs[i], s = sign * sn[i];
          const float a = load(&xi[i]), bb = load(&xi[half + i]);
          store(&yi[i], a * c - bb * s);
          store(&yi[half + i], bb * c + a * s);
        }
      }
    }
}

#define RETORT_ROPE_APPLY(Out, In)                                                            \
  template void rope_apply(Out*, int64_t, const In*, int64_t, const float*, int64_t, int64_t, \
                           int64_t, int64_t, float);
RETORT_ROPE_APPLY(float, float)
RETORT_ROPE_APPLY(uint16_t, float)
RETORT_ROPE_APPLY(float, uint16_t)
RETORT_ROPE_APPLY(uint16_t, uint16_t)
#undef RETORT_ROPE_APPLY

}  // namespace retort::cpu
