#include "models/rope_frequencies.h"

#include <cmath>
#include <numbers>

namespace retort {

std::vector<double> rope_inverse_frequencies(const ModelConfig& mc) {
  const int64_t hd = mc.head_dim;
  std::vector<double> f(size_t(hd / 2));
  for (int64_t i = 0; i < hd / 2; ++i) f[size_t(i)] = std::pow(mc.rope_theta, -2.0 * double(i) / double(hd));
  if (mc.rope_scaling != "llama3") return f;
  const double C = double(mc.rope_original_max_position), s = mc.rope_scaling_factor;
  const double l = mc.rope_low_freq_factor, h = mc.rope_high_freq_factor;
  for (double& fi : f) {
    const double wavelength = 2 * std::numbers::pi / fi;
    if (wavelength < C / h) continue;
    if (wavelength > C / l) {
      fi /= s;
      continue;
    }
    const double w = (C / wavelength - l) / (h - l);
    fi = (1 - w) * fi / s + w * fi;
  }
  return f;
}

}  // namespace retort
