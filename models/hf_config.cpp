#include "models/hf_config.h"

#include <cstdio>

#include "core/check.h"
#include "core/json_fields.h"

namespace retort {

nlohmann::json hf_config_json(const ModelConfig& mc, const std::string& torch_dtype,
                              int64_t bos_id, int64_t eos_id) {
  if (mc.qk_norm && mc.qkv_bias)
    throw Error("model.qk_norm and model.qkv_bias together: no transformers model has both "
                "(Qwen3's attention_bias adds an o_proj bias too)");
  const bool qwen3 = mc.qk_norm, qwen2 = mc.qkv_bias;
  // A window: Mistral (Llama's math with one window on every layer). Qwen2 and Qwen3 window
  // only some layers (max_window_layers), read differently across transformers versions.
  // NoPE layers: SmolLM3 (Llama's math otherwise).
  const bool mistral = mc.max_keys_seen() < mc.seq_len;
  const bool smollm3 = mc.no_rope_interval > 0 && mc.no_rope_interval <= mc.n_layers;
  const char* feature = qwen3 ? "qk_norm" : qwen2 ? "qkv_bias" : mistral ? "sliding_window" : nullptr;
  if (smollm3 && feature)
    throw Error(str_cat("model.no_rope_interval with model.", feature,
                        ": transformers has no model with both (NoPE layers are exported as SmolLM3)"));
  if (mistral && (qwen3 || qwen2))
    throw Error(str_cat("model.sliding_window with model.", feature,
                        ": transformers has no model with both that retort can write "
                        "(windows are exported as Mistral, which has neither)"));
  const char* type = qwen3 ? "qwen3" : qwen2 ? "qwen2" : mistral ? "mistral" : smollm3 ? "smollm3" : "llama";
  const char* architecture = qwen3     ? "Qwen3ForCausalLM"
                             : qwen2   ? "Qwen2ForCausalLM"
                             : mistral ? "MistralForCausalLM"
                             : smollm3 ? "SmolLM3ForCausalLM"
                                       : "LlamaForCausalLM";
  nlohmann::json j = {
      {"architectures", {architecture}},
      {"model_type", type},
      {"vocab_size", mc.vocab_size},
      {"hidden_size", mc.d_model},
      {"intermediate_size", mc.d_ff},
      {"num_hidden_layers", mc.n_layers},
      {"num_attention_heads", mc.n_heads},
      {"num_key_value_heads", mc.n_kv_heads},
      {"head_dim", mc.head_dim},
      {"hidden_act", "silu"},
      {"max_position_embeddings", mc.seq_len},
      {"rms_norm_eps", mc.norm_eps},
      {"rope_theta", mc.rope_theta},
      {"rope_scaling", mc.rope_scaling == "llama3"
                           ? nlohmann::json{{"rope_type", "llama3"},
                                            {"factor", mc.rope_scaling_factor},
                                            {"low_freq_factor", mc.rope_low_freq_factor},
                                            {"high_freq_factor", mc.rope_high_freq_factor},
                                            {"original_max_position_embeddings", mc.rope_original_max_position}}
                           : nlohmann::json(nullptr)},
      {"attention_dropout", 0.0},
      {"tie_word_embeddings", mc.tie_embeddings},
      {"initializer_range", mc.init_std},
      {"torch_dtype", torch_dtype},
      {"use_cache", true},
  };
  if (!qwen2) j["attention_bias"] = false;  // Qwen2's q, k, v biases are its class, not a key
  if (qwen3 || qwen2) j["use_sliding_window"] = false;
  else j["mlp_bias"] = false;
  if (mistral) j["sliding_window"] = mc.sliding_window;
  if (smollm3) {  // no_rope_layers: 1 where a layer rotates, 0 for its NoPE layers
    std::vector<int> layers;
    for (int64_t i = 0; i < mc.n_layers; ++i) layers.push_back(mc.rope_on_layer(i) ? 1 : 0);
    j["no_rope_layers"] = layers;
    j["no_rope_layer_interval"] = mc.no_rope_interval;
    j["use_sliding_window"] = false;
  }
  if (bos_id >= 0) j["bos_token_id"] = bos_id;
  if (eos_id >= 0) j["eos_token_id"] = eos_id;
  return j;
}

namespace {

bool given(const nlohmann::json& j, const char* key) { return j.contains(key) && !j[key].is_null(); }

bool flag(const nlohmann::json& j, const char* key, bool fallback, const std::string& file) {
  if (!given(j, key)) return fallback;
  if (!j[key].is_boolean())
    throw Error(str_cat(file, ": key '", key, "' must be true or false, found ", j[key].dump()));
  return j[key].get<bool>();
}

std::string number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

}  // namespace

std::string model_yaml_from_hf_config(const nlohmann::json& j, const std::string& file) {
  if (!j.is_object()) throw Error(str_cat(file, ": not a JSON object"));
  const std::string type = json_string(j, "model_type", file);
  if (type != "llama" && type != "mistral" && type != "phi3" && type != "qwen2" && type != "qwen3" &&
      type != "smollm3")
    throw Error(str_cat(file, ": model_type '", type,
                        "' (retort runs llama, mistral, phi3, qwen2, qwen3 and smollm3 models)"));
  auto refuse = [&](const char* key, const std::string& why) {
    throw Error(str_cat(file, ": key '", key, "': ", why, " (not in retort's model, docs/MODEL.md)"));
  };
  if (given(j, "hidden_act") && json_string(j, "hidden_act", file) != "silu")
    refuse("hidden_act", str_cat("'", j["hidden_act"].get<std::string>(), "', retort's MLP is SwiGLU (silu)"));
  // Qwen2 always has q, k, v biases (and no attention_bias key); elsewhere the key adds an
  // o_proj bias as well
  if (type != "qwen2" && flag(j, "attention_bias", false, file)) refuse("attention_bias", "biases");
  if (flag(j, "mlp_bias", false, file)) refuse("mlp_bias", "biases");
  if (flag(j, "use_sliding_window", false, file))
    refuse("use_sliding_window", "a sliding window on some layers (max_window_layers); retort's "
                                 "model.sliding_window is on every layer");
  constexpr int64_t kMax = int64_t(1) << 40;  // the model's own checks bound each size
  const int64_t positions = json_int(j, "max_position_embeddings", file, 1, kMax);
  // Mistral's window (Mistral 7B v0.1: 4096) and Phi-3's (Phi-3-mini-4k: 2047): a query sees
  // itself and the window − 1 keys before it (transformers' sliding-window mask); one no
  // shorter than the context changes nothing. Qwen2 / Qwen3's keys are read as absent unless
  // use_sliding_window (refused above).
  int64_t window = 0;
  if ((type == "mistral" || type == "phi3") && given(j, "sliding_window")) {
    window = json_int(j, "sliding_window", file, 1, kMax);
    if (window >= positions) window = 0;
  }
  // SmolLM3's NoPE layers: no_rope_layers (1: RoPE, 0: none), which retort runs as every N-th
  // layer without RoPE (its no_rope_layer_interval's pattern)
  int64_t no_rope_interval = 0;
  if (type == "smollm3") {
    const int64_t layers = json_int(j, "num_hidden_layers", file, 1, kMax);
    std::vector<int64_t> uses;
    if (given(j, "no_rope_layers")) {
      uses = json_int_list(j, "no_rope_layers", file, 0, 1);
    } else if (given(j, "no_rope_layer_interval")) {
      const int64_t n = json_int(j, "no_rope_layer_interval", file, 1, kMax);
      for (int64_t i = 0; i < layers; ++i) uses.push_back((i + 1) % n != 0);
    } else {
      refuse("no_rope_layers", "absent, with no no_rope_layer_interval either");
    }
    if (int64_t(uses.size()) != layers)
      refuse("no_rope_layers", str_cat(uses.size(), " entries for ", layers, " layers"));
    for (int64_t i = 0; i < layers && no_rope_interval == 0; ++i)
      if (uses[size_t(i)] == 0) no_rope_interval = i + 1;  // the first NoPE layer is the N-th
    for (int64_t i = 0; i < layers; ++i)
      if ((uses[size_t(i)] == 1) != (no_rope_interval == 0 || (i + 1) % no_rope_interval != 0))
        refuse("no_rope_layers", str_cat("NoPE layers other than every ", no_rope_interval,
                                         "-th (retort's model.no_rope_interval)"));
  }
  // Phi-4-mini rotates only part of each head (partial_rotary_factor 0.75)
  if (given(j, "partial_rotary_factor") && json_number(j, "partial_rotary_factor", file) != 1.0)
    refuse("partial_rotary_factor", str_cat(j["partial_rotary_factor"].dump(), ", RoPE on part of each head"));
  double theta = given(j, "rope_theta") ? json_number(j, "rope_theta", file) : 10000.0;
  // RoPE scaling: none ("default") or Llama 3.1's "llama3" (models/rope_frequencies.h), from
  // rope_scaling (transformers 4; "type" in older files) or rope_parameters (transformers 5)
  std::string scaling = "  rope_scaling: none\n";
  auto read_scaling = [&](const char* key) {
    const auto& rs = j[key];
    const std::string where = str_cat(file, ": ", key);
    if (!rs.is_object()) throw Error(str_cat(where, ": not an object"));
    const char* type_key = given(rs, "rope_type") || !given(rs, "type") ? "rope_type" : "type";
    const std::string type = given(rs, type_key) ? json_string(rs, type_key, where) : "default";
    if (type == "default") return;
    if (type != "llama3") refuse(key, str_cat("RoPE scaling '", type, "' (retort has llama3)"));
    const double factor = json_number(rs, "factor", where);
    const double low = json_number(rs, "low_freq_factor", where), high = json_number(rs, "high_freq_factor", where);
    const int64_t original = json_int(rs, "original_max_position_embeddings", where, 1, int64_t(1) << 40);
    scaling = str_cat("  rope_scaling: llama3\n", "  rope_scaling_factor: ", number(factor), "\n",
                      "  rope_low_freq_factor: ", number(low), "\n", "  rope_high_freq_factor: ", number(high),
                      "\n", "  rope_original_max_position: ", original, "\n");
  };
  if (given(j, "rope_scaling")) read_scaling("rope_scaling");
  if (given(j, "rope_parameters")) {  // transformers 5: {"rope_type": ..., "rope_theta": θ, ...}
    read_scaling("rope_parameters");
    const std::string where = str_cat(file, ": rope_parameters");
    if (given(j["rope_parameters"], "rope_theta")) theta = json_number(j["rope_parameters"], "rope_theta", where);
  }
  const int64_t heads = json_int(j, "num_attention_heads", file, 1, kMax);
  const int64_t d = json_int(j, "hidden_size", file, 1, kMax);
  return str_cat("model:\n",
                 "  vocab_size: ", json_int(j, "vocab_size", file, 1, kMax), "\n",
                 "  d_model: ", d, "\n",
                 "  n_layers: ", json_int(j, "num_hidden_layers", file, 1, kMax), "\n",
                 "  n_heads: ", heads, "\n",
                 "  n_kv_heads: ", given(j, "num_key_value_heads") ? json_int(j, "num_key_value_heads", file, 1, kMax) : heads, "\n",
                 "  head_dim: ", given(j, "head_dim") ? json_int(j, "head_dim", file, 1, kMax) : 0, "\n",
                 "  d_ff: ", json_int(j, "intermediate_size", file, 1, kMax), "\n",
                 "  rope_theta: ", number(theta), "\n", scaling,
                 "  norm_eps: ", number(given(j, "rms_norm_eps") ? json_number(j, "rms_norm_eps", file) : 1e-6), "\n",
                 "  qk_norm: ", type == "qwen3" ? "true" : "false", "\n",
                 "  qkv_bias: ", type == "qwen2" ? "true" : "false", "\n",
                 "  sliding_window: ", window, "\n",
                 "  no_rope_interval: ", no_rope_interval, "\n",
                 "  tie_embeddings: ", flag(j, "tie_word_embeddings", false, file) ? "true" : "false", "\n",
                 "  seq_len: ", positions, "\n",
                 "  init_std: ", number(given(j, "initializer_range") ? json_number(j, "initializer_range", file) : 0.02), "\n");
}

}  // namespace retort
