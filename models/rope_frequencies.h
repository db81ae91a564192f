// RoPE's inverse frequencies f_i (i < head_dim/2) for a model: f_i = θ^(−2i/hd), and with
// `model.rope_scaling: llama3` (Llama 3.1 / 3.2 / 3.3, as transformers computes it) each one
// rescaled by its wavelength λ_i = 2π/f_i against the original context C
// (rope_original_max_position), factor s, low and high frequency factors l < h:
//   λ_i < C/h         f_i                        (short wavelengths kept)
//   λ_i > C/l         f_i / s                    (long ones stretched s times)
//   otherwise         (1 − w)·f_i/s + w·f_i,     w = (C/λ_i − l) / (h − l)
#pragma once
#include <vector>

#include "models/model_config.h"

namespace retort {

std::vector<double> rope_inverse_frequencies(const ModelConfig& mc);

}  // namespace retort
