// A model family: one size knob (n_layers L) → a transformer shape with a fixed aspect ratio
// d_model = aspect·L, a fixed head width (n_heads = d_model / head_dim), d_ff from SPEC §1
// (8/3·d rounded up to 64) and everything else (vocab, seq_len, norms, tying) shared.
// Used by `retort sweep` to turn sizes into ModelConfigs and FLOPs per token.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "models/model_config.h"

namespace retort {

// Which FLOPs-per-token count turns a budget C into tokens D (sweep key `flops`).
enum class FlopsMode { Exact, SixN };

struct ModelFamily {
  int64_t aspect = 128;    // d_model / n_layers
  int64_t head_dim = 64;   // width of one head; n_heads = d_model / head_dim
  int64_t gqa_group = 1;   // query heads per key/value head (1 = multi-head attention)
  ModelConfig base;        // vocab_size, seq_len, rope, norms, tying, init (shape fields ignored)

  // "" when size L gives a valid shape, else a one-line reason (naming the family key).
  std::string problem(int64_t n_layers) const;
  // The shape for size L, resolved (d_ff, n_kv_heads). Throws ConfigError when problem(L) != "".
  ModelConfig shape(int64_t n_layers) const;
};

// Training FLOPs per token (forward + backward = 3 × forward) under the chosen count:
// Exact = ModelConfig::flops_per_token_exact, SixN = 6·N_nonemb.
double train_flops_per_token(const ModelConfig& m, FlopsMode mode);
// F(N) of Busbridge et al. (2025): forward FLOPs per token = train_flops_per_token / 3.
double forward_flops_per_token(const ModelConfig& m, FlopsMode mode);

const char* flops_mode_name(FlopsMode mode);  // "exact" | "6N"

// A text table of the family's shapes for the given sizes: L, d, H, Hkv, hd, F, N, N_nonemb,
// FLOPs/token (6N and exact).
std::string family_shapes_table(const ModelFamily& family, const std::vector<int64_t>& sizes);

}  // namespace retort
