// Branch-free float exp that the compiler vectorises inside plain loops (glibc's expf does
// not vectorise without -ffast-math). Cephes-style: exp(x) = 2^n · exp(r), n = round(x/ln2),
// r = x − n·ln2 ∈ [−ln2/2, ln2/2], degree-6 polynomial for exp(r). Max error ≈ 2 ulp.
// Inputs are clamped to [−87.3, 88.37] (results below 1.2e−38 are returned as ≈1e−38 rather
// than 0: harmless inside sums normalised by a max-subtracted term); NaN propagates.
#pragma once
#include <bit>
#include <cstdint>

namespace retort::cpu {

inline float exp_fast(float x) {
  const float xc = x < -87.3f ? -87.3f : (x > 88.37f ? 88.37f : x);
  // round(x/ln2) by the 1.5·2^23 trick (floorf does not vectorise without -ffast-math)
  const float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  const float y = p * std::bit_cast<float>(bits);
  return x != x ? x : y;  // NaN in, NaN out
}

// sigmoid(z) = 1 / (1 + exp(−z)); exact limits 0 and 1 up to float rounding.
inline float sigmoid_fast(float z) { return 1.0f / (1.0f + exp_fast(-z)); }

}  // namespace retort::cpu
