// ModelConfig: the shape of the transformer of SPEC §1 (section `model:` of a config), its
// validation, and the parameter / FLOP counts used by bench, sweep and the scaling fits.
#pragma once
#include <cstdint>
#include <string>

namespace retort {

class Config;

struct ModelConfig {
  int64_t vocab_size = 0;   // V
  int64_t d_model = 0;      // d
  int64_t n_layers = 0;     // L
  int64_t n_heads = 0;      // H
  int64_t n_kv_heads = 0;   // Hkv (resolved: never 0 after from_config / resolve)
  int64_t head_dim = 0;     // hd  (resolved: d / H when not given)
  int64_t d_ff = 0;         // F   (resolved: 8/3·d rounded up to a multiple of 64)
  double rope_theta = 500000.0;
  // RoPE frequency scaling (models/rope_frequencies.h): "none" or "llama3" with its parameters
  std::string rope_scaling = "none";
  double rope_scaling_factor = 8.0, rope_low_freq_factor = 1.0, rope_high_freq_factor = 4.0;
  int64_t rope_original_max_position = 8192;
  double norm_eps = 1e-5;
  bool qk_norm = true;
  bool qkv_bias = false;    // biases on the q, k, v projections (Qwen2 / Qwen2.5)
  // Sliding-window attention (Mistral 7B v0.1, Phi-3-4k): a query sees itself and the
  // sliding_window − 1 tokens before it; 0: every earlier token
  int64_t sliding_window = 0;
  // NoPE layers (SmolLM3): layers i with (i + 1) % no_rope_interval == 0 take no RoPE (their
  // q, k unrotated); 0: RoPE on every layer
  int64_t no_rope_interval = 0;
  bool tie_embeddings = true;
  int64_t seq_len = 0;      // T (maximum sequence length; RoPE table size)
  std::string init = "normal";  // "normal" | "mup_simple" | "mup" (see Transformer::init)
  double init_std = 0.02;
  // µP's base width d₀ (init mup, untied): the width whose init_std and train.lr this model
  // inherits; the hidden matrices' and lm_head's init std and AdamW learning rate scale with
  // d₀ / d_model so that a learning rate tuned at width d₀ carries to wider models. 0: no µP
  int64_t mup_base_width = 0;

  // Reads every `model.*` key, resolves the 0 defaults, validates. Throws ConfigError naming
  // the offending key (cfg.fail).
  static ModelConfig from_config(const Config& cfg);
  // Resolves the 0 defaults (n_kv_heads, head_dim, d_ff) then validates; for configs built in
  // code. Throws ConfigError("key 'model.<name>': <what>").
  void resolve();

  // Default d_ff for a width: 8/3·d rounded up to a multiple of 64.
  static int64_t default_d_ff(int64_t d_model);

  // The keys one query attends to at most in sequences of `len` tokens (default seq_len): len,
  // or sliding_window when shorter.
  int64_t max_keys_seen(int64_t len = 0) const;
  // s = mup_base_width / d_model, or 1 without µP: the hidden matrices' and lm_head's
  // learning-rate multiplier (and, under init mup, their init variance's and lm_head's std's).
  double mup_lr_scale() const { return mup_base_width > 0 ? double(mup_base_width) / double(d_model) : 1.0; }
  // Whether layer i (from 0) rotates its q and k (no_rope_interval).
  bool rope_on_layer(int64_t i) const { return no_rope_interval == 0 || (i + 1) % no_rope_interval != 0; }

  // ---- counting (SPEC §1) -------------------------------------------------------------
  // Parameters of one transformer block (norm gains and q, k, v biases included).
  int64_t params_per_layer() const;
  // N: all parameters (embedding, blocks, final norm, lm_head when untied).
  int64_t n_params() const;
  // N_nonemb = N - V·d (embedding) - V·d (lm_head, untied only).
  int64_t n_params_nonemb() const;
  // 6·N_nonemb: the Kaplan/Chinchilla approximation of training FLOPs per token.
  int64_t flops_per_token_6N() const;
  // 3 × forward FLOPs per token from the matmuls, at sequence length seq_len:
  //   forward = L·2·(d·H·hd + 2·d·Hkv·hd + H·hd·d + 3·d·F)      (q, k, v, o, gate, up, down)
  //           + 2·V·d                                           (logits)
  //           + L·2·2·H·hd·K                                    (q kᵀ and p v)
  // K: the keys a query sees on average, T/2 (causal), or with a sliding window W < T
  // W − W²/(2T) (the mean of min(t, W) over t in (0, T], as an integral).
  int64_t flops_per_token_exact() const;
  // PaLM convention for MFU: 6·(N_nonemb + V·d) + 12·L·H·hd·T (T: min(T, W) with a window).
  int64_t flops_per_token_mfu() const;
};

}  // namespace retort
