#include "models/model_config.h"

#include <cmath>
#include <functional>

#include "core/check.h"
#include "core/config.h"

namespace retort {

namespace {

using FailFn = std::function<void(const std::string& key, const std::string& what)>;

// Resolve the 0 defaults and validate; every failure names its key.
void resolve_and_validate(ModelConfig& m, const FailFn& fail) {
  auto positive = [&](int64_t v, const char* key) {
    if (v <= 0) fail(key, str_cat("must be a positive integer, got ", v));
  };
  positive(m.vocab_size, "model.vocab_size");
  positive(m.d_model, "model.d_model");
  positive(m.n_layers, "model.n_layers");
  positive(m.n_heads, "model.n_heads");
  positive(m.seq_len, "model.seq_len");
  if (m.n_kv_heads < 0) fail("model.n_kv_heads", str_cat("must be >= 0 (0 = n_heads), got ", m.n_kv_heads));
  if (m.head_dim < 0) fail("model.head_dim", str_cat("must be >= 0 (0 = d_model / n_heads), got ", m.head_dim));
  if (m.d_ff < 0) fail("model.d_ff", str_cat("must be >= 0 (0 = 8/3·d_model rounded up to 64), got ", m.d_ff));
  // Upper bounds far above any real model that keep every count below (parameters, FLOPs per
  // token) inside int64.
  auto at_most = [&](int64_t v, int64_t hi, const char* key) {
    if (v > hi) fail(key, str_cat(v, " is larger than the supported ", hi));
  };
  at_most(m.vocab_size, int64_t(1) << 31, "model.vocab_size");
  at_most(m.d_model, 1 << 16, "model.d_model");
  at_most(m.n_layers, 1 << 10, "model.n_layers");
  at_most(m.n_heads, 1 << 10, "model.n_heads");
  at_most(m.head_dim, 1 << 10, "model.head_dim");
  at_most(m.d_ff, 1 << 20, "model.d_ff");
  at_most(m.seq_len, 1 << 22, "model.seq_len");

  if (m.n_kv_heads == 0) m.n_kv_heads = m.n_heads;
  if (m.n_heads % m.n_kv_heads != 0)
    fail("model.n_kv_heads", str_cat("n_heads (", m.n_heads, ") must be a multiple of n_kv_heads (",
                                     m.n_kv_heads, ")"));
  if (m.head_dim == 0) {
    if (m.d_model % m.n_heads != 0)
      fail("model.n_heads", str_cat("d_model (", m.d_model, ") must be divisible by n_heads (",
                                    m.n_heads, ") when model.head_dim is not given"));
    m.head_dim = m.d_model / m.n_heads;
  }
  if (m.head_dim % 2 != 0)
    fail("model.head_dim", str_cat("head_dim must be even for RoPE, got ", m.head_dim));
  if (m.d_ff == 0) m.d_ff = ModelConfig::default_d_ff(m.d_model);

  if (!(m.rope_theta > 0)) fail("model.rope_theta", str_cat("must be > 0, got ", m.rope_theta));
  if (m.rope_scaling != "none" && m.rope_scaling != "llama3")
    fail("model.rope_scaling", str_cat("must be 'none' or 'llama3', got '", m.rope_scaling, "'"));
  if (!(m.rope_scaling_factor >= 1))
    fail("model.rope_scaling_factor", str_cat("must be >= 1, got ", m.rope_scaling_factor));
  if (!(m.rope_low_freq_factor > 0))
    fail("model.rope_low_freq_factor", str_cat("must be > 0, got ", m.rope_low_freq_factor));
  if (!(m.rope_high_freq_factor > m.rope_low_freq_factor))
    fail("model.rope_high_freq_factor", str_cat("must be > rope_low_freq_factor (", m.rope_low_freq_factor,
                                                "), got ", m.rope_high_freq_factor));
  if (m.rope_original_max_position < 1)
    fail("model.rope_original_max_position", str_cat("must be >= 1, got ", m.rope_original_max_position));
  if (m.sliding_window < 0)
    fail("model.sliding_window", str_cat("must be >= 0 (0 = none), got ", m.sliding_window));
  if (m.no_rope_interval < 0)
    fail("model.no_rope_interval", str_cat("must be >= 0 (0 = RoPE on every layer), got ", m.no_rope_interval));
  if (!(m.norm_eps > 0)) fail("model.norm_eps", str_cat("must be > 0, got ", m.norm_eps));
  if (m.init != "normal" && m.init != "mup_simple" && m.init != "mup")
    fail("model.init", str_cat("must be 'normal', 'mup_simple' or 'mup', got '", m.init, "'"));
  if (!(m.init_std > 0)) fail("model.init_std", str_cat("must be > 0, got ", m.init_std));
  if (m.mup_base_width < 0)
    fail("model.mup_base_width", str_cat("must be >= 0 (0 = no µP), got ", m.mup_base_width));
  at_most(m.mup_base_width, 1 << 16, "model.mup_base_width");
  if (m.mup_base_width > 0 && m.init != "mup")
    fail("model.mup_base_width", str_cat("µP's learning rates go with its init: set model.init: mup (got '",
                                         m.init, "')"));
  if (m.init == "mup" && m.mup_base_width == 0)
    fail("model.init", "mup needs model.mup_base_width: the d_model whose init_std and train.lr it scales from");
  if (m.mup_base_width > 0 && m.tie_embeddings)
    fail("model.mup_base_width", "µP needs model.tie_embeddings: false (a tied matrix cannot take both the "
                                 "embedding's learning rate and the output head's)");
}

}  // namespace

int64_t ModelConfig::default_d_ff(int64_t d) { return (8 * d + 191) / 192 * 64; }

ModelConfig ModelConfig::from_config(const Config& cfg) {
  ModelConfig m;
  m.vocab_size = cfg.get_int("model.vocab_size");
  m.d_model = cfg.get_int("model.d_model");
  m.n_layers = cfg.get_int("model.n_layers");
  m.n_heads = cfg.get_int("model.n_heads");
  m.n_kv_heads = cfg.get_int("model.n_kv_heads");
  m.head_dim = cfg.get_int("model.head_dim");
  m.d_ff = cfg.get_int("model.d_ff");
  m.rope_theta = cfg.get_float("model.rope_theta");
  m.rope_scaling = cfg.get_string("model.rope_scaling");
  m.rope_scaling_factor = cfg.get_float("model.rope_scaling_factor");
  m.rope_low_freq_factor = cfg.get_float("model.rope_low_freq_factor");
  m.rope_high_freq_factor = cfg.get_float("model.rope_high_freq_factor");
  m.rope_original_max_position = cfg.get_int("model.rope_original_max_position");
  m.norm_eps = cfg.get_float("model.norm_eps");
  m.qk_norm = cfg.get_bool("model.qk_norm");
  m.qkv_bias = cfg.get_bool("model.qkv_bias");
  m.sliding_window = cfg.get_int("model.sliding_window");
  m.no_rope_interval = cfg.get_int("model.no_rope_interval");
  m.tie_embeddings = cfg.get_bool("model.tie_embeddings");
  m.seq_len = cfg.get_int("model.seq_len");
  m.init = cfg.get_string("model.init");
  m.init_std = cfg.get_float("model.init_std");
  m.mup_base_width = cfg.get_int("model.mup_base_width");
  resolve_and_validate(m, [&](const std::string& key, const std::string& what) { cfg.fail(key, what); });
  return m;
}

void ModelConfig::resolve() {
  resolve_and_validate(*this, [](const std::string& key, const std::string& what) {
    throw ConfigError(str_cat("key '", key, "': ", what));
  });
}

int64_t ModelConfig::params_per_layer() const {
  const int64_t d = d_model, hd = head_dim;
  int64_t n = 0;
  n += d;                                   // input_layernorm
  n += n_heads * hd * d;                    // q_proj  [H·hd, d]
  n += 2 * n_kv_heads * hd * d;             // k_proj, v_proj [Hkv·hd, d]
  n += d * n_heads * hd;                    // o_proj  [d, H·hd]
  if (qkv_bias) n += (n_heads + 2 * n_kv_heads) * hd;  // q, k, v biases [H·hd], [Hkv·hd] ×2
  if (qk_norm) n += 2 * hd;                 // q_norm, k_norm [hd]
  n += d;                                   // post_attention_layernorm
  n += 3 * d_ff * d;                        // gate, up [F, d]; down [d, F]
  return n;
}

int64_t ModelConfig::n_params() const {
  int64_t n = vocab_size * d_model + n_layers * params_per_layer() + d_model;
  if (!tie_embeddings) n += vocab_size * d_model;
  return n;
}

int64_t ModelConfig::n_params_nonemb() const {
  return n_params() - vocab_size * d_model * (tie_embeddings ? 1 : 2);
}

int64_t ModelConfig::flops_per_token_6N() const { return 6 * n_params_nonemb(); }

int64_t ModelConfig::max_keys_seen(int64_t len) const {
  if (len == 0) len = seq_len;
  return sliding_window > 0 && sliding_window < len ? sliding_window : len;
}

int64_t ModelConfig::flops_per_token_exact() const {
  const int64_t d = d_model, hd = head_dim;
  const int64_t proj = d * n_heads * hd + 2 * d * n_kv_heads * hd + n_heads * hd * d + 3 * d * d_ff;
  // 2·2·H·hd·K with K = T/2, or W − W²/(2T) under a window W < T (the same at W = T)
  const int64_t W = max_keys_seen();
  const double keys = double(W) - double(W) * double(W) / (2.0 * double(seq_len));
  const int64_t attn = std::llround(4.0 * double(n_heads * hd) * keys);
  const int64_t fwd = n_layers * (2 * proj + attn) + 2 * vocab_size * d;
  return 3 * fwd;
}

int64_t ModelConfig::flops_per_token_mfu() const {
  return 6 * (n_params_nonemb() + vocab_size * d_model) +
         12 * n_layers * n_heads * head_dim * max_keys_seen();
}

}  // namespace retort
