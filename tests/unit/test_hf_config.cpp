// models/hf_config.h: config.json written for a model reads back as the same model; keys
// transformers leaves out take its defaults; transformers 5's rope_parameters; refusals.
#include <gtest/gtest.h>

#include <cmath>

#include "core/config.h"
#include "models/hf_config.h"
#include "models/rope_frequencies.h"
#include "test_support.h"

using namespace retort;

namespace {

ModelConfig read_back(const nlohmann::json& j) {
  return ModelConfig::from_config(Config::from_yaml(model_yaml_from_hf_config(j, "config.json"), "config.json"));
}

}  // namespace

TEST(HfConfig, WrittenConfigReadsBackAsTheSameModel) {
  for (const auto& [qk_norm, qkv_bias] : {std::pair{true, false}, {false, false}, {false, true}})
    for (bool tie : {true, false}) {
      ModelConfig mc;
      mc.vocab_size = 151936, mc.d_model = 1024, mc.n_layers = 28, mc.n_heads = 16;
      mc.n_kv_heads = 8, mc.head_dim = 128, mc.d_ff = 3072, mc.seq_len = 40960;
      mc.rope_theta = 1e6, mc.norm_eps = 1e-6, mc.init_std = 0.02;
      mc.qk_norm = qk_norm, mc.qkv_bias = qkv_bias, mc.tie_embeddings = tie;
      if (!qk_norm) mc.rope_scaling = "llama3", mc.rope_scaling_factor = 32, mc.rope_original_max_position = 4096;
      mc.resolve();
      const nlohmann::json j = hf_config_json(mc, "bfloat16", 1, 2);
      EXPECT_EQ(j["model_type"], qk_norm ? "qwen3" : qkv_bias ? "qwen2" : "llama");
      const ModelConfig back = read_back(j);
      EXPECT_EQ(back.vocab_size, mc.vocab_size);
      EXPECT_EQ(back.d_model, mc.d_model);
      EXPECT_EQ(back.n_layers, mc.n_layers);
      EXPECT_EQ(back.n_heads, mc.n_heads);
      EXPECT_EQ(back.n_kv_heads, mc.n_kv_heads);
      EXPECT_EQ(back.head_dim, mc.head_dim);
      EXPECT_EQ(back.d_ff, mc.d_ff);
      EXPECT_EQ(back.seq_len, mc.seq_len);
      EXPECT_EQ(back.rope_theta, mc.rope_theta);
      EXPECT_EQ(back.norm_eps, mc.norm_eps);
      EXPECT_EQ(back.qk_norm, qk_norm);
      EXPECT_EQ(back.qkv_bias, qkv_bias);
      EXPECT_EQ(back.tie_embeddings, tie);
      EXPECT_EQ(back.rope_scaling, mc.rope_scaling);
      EXPECT_EQ(back.rope_scaling_factor, mc.rope_scaling_factor);
      EXPECT_EQ(back.rope_low_freq_factor, mc.rope_low_freq_factor);
      EXPECT_EQ(back.rope_high_freq_factor, mc.rope_high_freq_factor);
      EXPECT_EQ(back.rope_original_max_position, mc.rope_original_max_position);
      EXPECT_EQ(back.n_params(), mc.n_params());
    }
  ModelConfig both;
  both.vocab_size = 64, both.d_model = 16, both.n_layers = 1, both.n_heads = 2, both.seq_len = 8;
  both.qk_norm = true, both.qkv_bias = true;
  both.resolve();
  EXPECT_NE(test::error_of([&] { hf_config_json(both, "float32", -1, -1); }).find("no transformers model has both"),
            std::string::npos);
  // A sliding window: Mistral, and back; one no shorter than seq_len is no window (Llama).
  ModelConfig windowed = both;
  windowed.qk_norm = false, windowed.qkv_bias = false, windowed.sliding_window = 5;
  const nlohmann::json mistral = hf_config_json(windowed, "float32", -1, -1);
  EXPECT_EQ(mistral["model_type"], "mistral");
  EXPECT_EQ(mistral["architectures"][0], "MistralForCausalLM");
  EXPECT_EQ(mistral["sliding_window"], 5);
  EXPECT_EQ(read_back(mistral).sliding_window, 5);
  windowed.sliding_window = 8;
  EXPECT_EQ(hf_config_json(windowed, "float32", -1, -1)["model_type"], "llama");
  windowed.sliding_window = 5, windowed.qk_norm = true;
  EXPECT_NE(test::error_of([&] { hf_config_json(windowed, "float32", -1, -1); })
                .find("model.sliding_window with model.qk_norm"),
            std::string::npos);
  // NoPE layers: SmolLM3 (every 2nd of 4 layers unrotated), and back
  ModelConfig nope = both;
  nope.qk_norm = false, nope.qkv_bias = false, nope.n_layers = 4, nope.no_rope_interval = 2;
  const nlohmann::json smollm3 = hf_config_json(nope, "float32", -1, -1);
  EXPECT_EQ(smollm3["model_type"], "smollm3");
  EXPECT_EQ(smollm3["architectures"][0], "SmolLM3ForCausalLM");
  EXPECT_EQ(smollm3["no_rope_layers"], nlohmann::json({1, 0, 1, 0}));
  EXPECT_EQ(read_back(smollm3).no_rope_interval, 2);
  nope.qk_norm = true;
  EXPECT_NE(test::error_of([&] { hf_config_json(nope, "float32", -1, -1); })
                .find("model.no_rope_interval with model.qk_norm: transformers has no model with both"),
            std::string::npos);
}

TEST(HfConfig, AbsentKeysTakeTransformersDefaults) {
  const nlohmann::json j = {{"model_type", "llama"}, {"vocab_size", 32000}, {"hidden_size", 512},
                            {"intermediate_size", 1376}, {"num_hidden_layers", 2},
                            {"num_attention_heads", 8}, {"max_position_embeddings", 2048},
                            {"head_dim", nullptr}};
  const ModelConfig m = read_back(j);
  EXPECT_EQ(m.n_kv_heads, 8);  // num_key_value_heads: the heads
  EXPECT_EQ(m.head_dim, 64);   // hidden_size / heads
  EXPECT_EQ(m.rope_theta, 10000.0);
  EXPECT_EQ(m.norm_eps, 1e-6);
  EXPECT_FALSE(m.tie_embeddings);
  EXPECT_FALSE(m.qk_norm);
  nlohmann::json v5 = j;
  v5["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 500000.0}};
  EXPECT_EQ(read_back(v5).rope_theta, 500000.0);
}

TEST(HfConfig, RefusesWhatRetortCannotRunExactly) {
  const nlohmann::json base = {{"model_type", "qwen3"}, {"vocab_size", 64}, {"hidden_size", 16},
                               {"intermediate_size", 32}, {"num_hidden_layers", 1},
                               {"num_attention_heads", 2}, {"max_position_embeddings", 8}};
  const std::vector<std::pair<nlohmann::json, std::string>> cases = {
      {{{"model_type", "gemma"}}, "model_type 'gemma' (retort runs llama, mistral, phi3, qwen2, qwen3 and smollm3 models)"},
      {{{"model_type", "smollm3"}, {"no_rope_layers", {1, 1}}}, "key 'no_rope_layers': 2 entries for 1 layers"},
      {{{"model_type", "smollm3"}}, "key 'no_rope_layers': absent, with no no_rope_layer_interval either"},
      {{{"partial_rotary_factor", 0.75}}, "key 'partial_rotary_factor': 0.75, RoPE on part of each head"},
      {{{"rope_scaling", {{"type", "longrope"}, {"short_factor", {1.0}}, {"long_factor", {1.0}}}}},
       "key 'rope_scaling': RoPE scaling 'longrope'"},
      {{{"attention_bias", true}}, "key 'attention_bias': biases"},
      {{{"mlp_bias", true}}, "key 'mlp_bias': biases"},
      {{{"use_sliding_window", true}}, "key 'use_sliding_window'"},
      {{{"model_type", "mistral"}, {"sliding_window", 0}}, "key 'sliding_window'"},
      {{{"rope_parameters", {{"rope_type", "yarn"}}}}, "key 'rope_parameters': RoPE scaling 'yarn'"},
      {{{"rope_scaling", {{"type", "linear"}, {"factor", 2.0}}}}, "key 'rope_scaling': RoPE scaling 'linear'"},
      {{{"rope_scaling", {{"rope_type", "llama3"}, {"factor", 8.0}}}}, "rope_scaling: key 'low_freq_factor'"},
      {{{"tie_word_embeddings", 1}}, "key 'tie_word_embeddings' must be true or false"},
      {{{"num_attention_heads", 2.5}}, "key 'num_attention_heads' must be an integer"},
  };
  for (const auto& [edit, why] : cases) {
    nlohmann::json j = base;
    j.update(edit);
    const std::string err = test::error_of([&] { read_back(j); });
    EXPECT_NE(err.find("config.json: "), std::string::npos) << err;
    EXPECT_NE(err.find(why), std::string::npos) << edit.dump() << " -> " << err;
  }
  EXPECT_NO_THROW(read_back(base));
  nlohmann::json qwen2 = base;  // Qwen2's window is off unless use_sliding_window says so
  qwen2.update({{"model_type", "qwen2"}, {"sliding_window", 4}, {"max_window_layers", 1}});
  EXPECT_TRUE(read_back(qwen2).qkv_bias);
  qwen2["use_sliding_window"] = true;
  EXPECT_NE(test::error_of([&] { read_back(qwen2); }).find("key 'use_sliding_window'"), std::string::npos);
  // a window as long as the positions (or none) never binds: Mistral is then Llama
  for (const nlohmann::json& window : {nlohmann::json(8), nlohmann::json(nullptr)}) {
    nlohmann::json mistral = base;
    mistral.update({{"model_type", "mistral"}, {"sliding_window", window}});
    EXPECT_FALSE(read_back(mistral).qk_norm);
    EXPECT_EQ(read_back(mistral).sliding_window, 0);
  }
  // a shorter one is the model's (Mistral 7B v0.1's 4096 of 32768; Phi-3-mini-4k's 2047)
  for (const char* type : {"mistral", "phi3"}) {
    nlohmann::json windowed = base;
    windowed.update({{"model_type", type}, {"sliding_window", 7}});
    EXPECT_EQ(read_back(windowed).sliding_window, 7) << type;
  }
}

TEST(HfConfig, PublishedConfigsReadAsTheirModels) {
  // Qwen/Qwen3-0.6B's config.json (transformers 4.51): 0.44B non-embedding parameters, 0.6B in
  // all (its model card), tied, per-head q/k norms.
  const auto qwen3 = nlohmann::json::parse(R"({
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151645, "head_dim": 128, "hidden_act": "silu",
    "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 3072,
    "max_position_embeddings": 40960, "max_window_layers": 28, "model_type": "qwen3",
    "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06, "rope_scaling": null, "rope_theta": 1000000, "sliding_window": null,
    "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.51.0",
    "use_cache": true, "use_sliding_window": false, "vocab_size": 151936})");
  const ModelConfig q = read_back(qwen3);
  EXPECT_TRUE(q.qk_norm);
  EXPECT_EQ(q.n_params_nonemb(), 440467456);  // 28 · 15 730 944 + the final norm's 1024
  EXPECT_EQ(q.n_params(), 596049920);
  // HuggingFaceTB/SmolLM2-135M's (transformers 4.48, Llama): 134 515 008 parameters.
  const auto smollm2 = nlohmann::json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 0, "eos_token_id": 0, "head_dim": 64, "hidden_act": "silu",
    "hidden_size": 576, "initializer_range": 0.041666666666666664, "intermediate_size": 1536,
    "is_llama_config": true, "max_position_embeddings": 8192, "mlp_bias": false,
    "model_type": "llama", "num_attention_heads": 9, "num_hidden_layers": 30,
    "num_key_value_heads": 3, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_interleaved": false, "rope_scaling": null, "rope_theta": 100000,
    "tie_word_embeddings": true, "torch_dtype": "bfloat16", "transformers_version": "4.48.0",
    "use_cache": true, "vocab_size": 49152})");
  const ModelConfig s = read_back(smollm2);
  EXPECT_FALSE(s.qk_norm);
  EXPECT_EQ(s.n_kv_heads, 3);
  EXPECT_EQ(s.rope_theta, 100000.0);
  EXPECT_EQ(s.n_params(), 134515008);
  // mistralai/Mistral-Nemo-Base-2407's shape (as its config.json gives it; "12B" on its card):
  // Llama with head_dim 128 ≠ 5120 / 32, no sliding window.
  const auto nemo = nlohmann::json::parse(R"({
    "architectures": ["MistralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1,
    "eos_token_id": 2, "head_dim": 128, "hidden_act": "silu", "hidden_size": 5120,
    "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 1024000,
    "model_type": "mistral", "num_attention_heads": 32, "num_hidden_layers": 40,
    "num_key_value_heads": 8, "rms_norm_eps": 1e-05, "rope_theta": 1000000.0,
    "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "use_cache": true, "vocab_size": 131072})");
  const ModelConfig n = read_back(nemo);
  EXPECT_EQ(n.head_dim, 128);
  EXPECT_EQ(n.n_params(), 12247782400);  // 40 · 272 640 000 + 2 · 131072 · 5120 + 5120
  // meta-llama/Llama-3.2-1B's shape (its config.json as published, from memory): tied, GQA 32/8,
  // RoPE with Llama 3.1's "llama3" scaling, factor 32 — 1 235 814 400 parameters ("1.23B").
  const auto llama32 = nlohmann::json::parse(R"({
    "architectures": ["LlamaForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": 128001, "head_dim": 64, "hidden_act": "silu",
    "hidden_size": 2048, "initializer_range": 0.02, "intermediate_size": 8192,
    "max_position_embeddings": 131072, "mlp_bias": false, "model_type": "llama",
    "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
    "use_cache": true, "vocab_size": 128256})");
  const ModelConfig l = read_back(llama32);
  EXPECT_EQ(l.rope_scaling, "llama3");
  EXPECT_EQ(l.rope_scaling_factor, 32.0);
  EXPECT_EQ(l.rope_original_max_position, 8192);
  EXPECT_EQ(l.n_params(), 1235814400);
  // Qwen/Qwen2.5-0.5B's config.json (from memory): q, k, v biases, no head_dim key (896 / 14),
  // its window off — 494 032 768 parameters, 357 898 112 non-embedding (0.49B and 0.36B on its
  // model card).
  const auto qwen25 = nlohmann::json::parse(R"({
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151643, "hidden_act": "silu", "hidden_size": 896, "initializer_range": 0.02,
    "intermediate_size": 4864, "max_position_embeddings": 32768, "max_window_layers": 24,
    "model_type": "qwen2", "num_attention_heads": 14, "num_hidden_layers": 24,
    "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_theta": 1000000.0,
    "sliding_window": 32768, "tie_word_embeddings": true, "torch_dtype": "bfloat16",
    "transformers_version": "4.40.1", "use_cache": true, "use_sliding_window": false,
    "vocab_size": 151936})");
  const ModelConfig q25 = read_back(qwen25);
  EXPECT_TRUE(q25.qkv_bias);
  EXPECT_FALSE(q25.qk_norm);
  EXPECT_EQ(q25.head_dim, 64);
  EXPECT_EQ(q25.n_params_nonemb(), 357898112);
  EXPECT_EQ(q25.n_params(), 494032768);
  // microsoft/phi-4's config.json (from memory): Phi3ForCausalLM, Llama's math (its fused
  // qkv_proj / gate_up_proj are a weights matter, core/hf_checkpoint.h), GQA 40/10, untied —
  // 14 659 507 200 parameters ("14.7B" on its card).
  const auto phi4 = nlohmann::json::parse(R"({
    "architectures": ["Phi3ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 100257,
    "embd_pdrop": 0.0, "eos_token_id": 100265, "hidden_act": "silu", "hidden_size": 5120,
    "initializer_range": 0.02, "intermediate_size": 17920, "max_position_embeddings": 16384,
    "model_type": "phi3", "num_attention_heads": 40, "num_hidden_layers": 40,
    "num_key_value_heads": 10, "original_max_position_embeddings": 16384, "pad_token_id": 100349,
    "resid_pdrop": 0.0, "rms_norm_eps": 1e-05, "rope_scaling": null, "rope_theta": 250000,
    "sliding_window": null, "tie_word_embeddings": false, "torch_dtype": "bfloat16",
    "use_cache": true, "vocab_size": 100352})");
  const ModelConfig p4 = read_back(phi4);
  EXPECT_FALSE(p4.qk_norm);
  EXPECT_FALSE(p4.qkv_bias);
  EXPECT_EQ(p4.head_dim, 128);
  EXPECT_EQ(p4.rope_theta, 250000.0);
  EXPECT_EQ(p4.n_params(), 14659507200);
  // mistralai/Mistral-7B-v0.1's config.json (from memory): Llama's math with a 4096-token
  // window over 32768 positions, GQA 32/8, untied — 7 241 732 096 parameters ("7.24B").
  const auto mistral = nlohmann::json::parse(R"({
    "architectures": ["MistralForCausalLM"], "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
    "intermediate_size": 14336, "max_position_embeddings": 32768, "model_type": "mistral",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "sliding_window": 4096,
    "tie_word_embeddings": false, "torch_dtype": "bfloat16", "transformers_version": "4.34.0",
    "use_cache": true, "vocab_size": 32000})");
  const ModelConfig m7 = read_back(mistral);
  EXPECT_EQ(m7.sliding_window, 4096);
  EXPECT_EQ(m7.max_keys_seen(), 4096);
  EXPECT_EQ(m7.n_params(), 7241732096);
  // microsoft/Phi-3-mini-4k-instruct's (from memory): a 2047-token window over 4096 positions,
  // head_dim 96, no GQA, untied — 3 821 079 552 parameters ("3.8B").
  const auto phi3 = nlohmann::json::parse(R"({
    "architectures": ["Phi3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": 1, "embd_pdrop": 0.0, "eos_token_id": 32000, "hidden_act": "silu",
    "hidden_size": 3072, "initializer_range": 0.02, "intermediate_size": 8192,
    "max_position_embeddings": 4096, "model_type": "phi3", "num_attention_heads": 32,
    "num_hidden_layers": 32, "num_key_value_heads": 32, "original_max_position_embeddings": 4096,
    "pad_token_id": 32000, "resid_pdrop": 0.0, "rms_norm_eps": 1e-05, "rope_scaling": null,
    "rope_theta": 10000.0, "sliding_window": 2047, "tie_word_embeddings": false,
    "torch_dtype": "bfloat16", "use_cache": true, "vocab_size": 32064})");
  const ModelConfig p3 = read_back(phi3);
  EXPECT_EQ(p3.sliding_window, 2047);
  EXPECT_EQ(p3.head_dim, 96);
  EXPECT_EQ(p3.n_params(), 3821079552);
  // HuggingFaceTB/SmolLM3-3B's (from memory): Llama's math with every 4th layer NoPE, GQA 16/4,
  // tied — 3 075 098 624 parameters ("3B"). The same list read from no_rope_layer_interval
  // alone; a list that is not every N-th layer is refused.
  nlohmann::json smollm3 = nlohmann::json::parse(R"({
    "architectures": ["SmolLM3ForCausalLM"], "attention_bias": false, "attention_dropout": 0.0,
    "bos_token_id": null, "eos_token_id": 128012, "hidden_act": "silu", "hidden_size": 2048,
    "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 65536,
    "max_window_layers": 28, "mlp_bias": false, "model_type": "smollm3",
    "no_rope_layer_interval": 4, "num_attention_heads": 16, "num_hidden_layers": 36,
    "num_key_value_heads": 4, "pad_token_id": 128004, "pretraining_tp": 2, "rms_norm_eps": 1e-06,
    "rope_scaling": null, "rope_theta": 5000000.0, "sliding_window": null,
    "tie_word_embeddings": true, "torch_dtype": "bfloat16", "use_cache": false,
    "use_sliding_window": false, "vocab_size": 128256})");
  EXPECT_EQ(read_back(smollm3).no_rope_interval, 4);
  std::vector<int> uses;
  for (int i = 0; i < 36; ++i) uses.push_back((i + 1) % 4 != 0);
  smollm3["no_rope_layers"] = uses;
  const ModelConfig s3 = read_back(smollm3);
  EXPECT_EQ(s3.no_rope_interval, 4);
  EXPECT_FALSE(s3.rope_on_layer(3));
  EXPECT_TRUE(s3.rope_on_layer(4));
  EXPECT_EQ(s3.n_params(), 3075098624);
  smollm3["no_rope_layers"][35] = 1;
  EXPECT_NE(test::error_of([&] { read_back(smollm3); })
                .find("key 'no_rope_layers': NoPE layers other than every 4-th"),
            std::string::npos);
}

TEST(HfConfig, Llama3RopeScalingKeepsShortWavelengthsAndStretchesLongOnes) {
  // Llama 3.1's rule (models/rope_frequencies.h) at hd 128, θ 500000, C 8192, s 8, l 1, h 4:
  // wavelengths below 2048 kept, above 8192 divided by 8, blended between.
  ModelConfig mc;
  mc.vocab_size = 8, mc.d_model = 128, mc.n_layers = 1, mc.n_heads = 1, mc.seq_len = 8;
  mc.rope_theta = 500000;
  mc.resolve();
  const std::vector<double> plain = rope_inverse_frequencies(mc);
  mc.rope_scaling = "llama3";
  const std::vector<double> scaled = rope_inverse_frequencies(mc);
  ASSERT_EQ(plain.size(), 64u);
  int kept = 0, divided = 0, blended = 0;
  for (size_t i = 0; i < plain.size(); ++i) {
    const double wavelength = 2 * M_PI / plain[i];
    EXPECT_DOUBLE_EQ(plain[i], std::pow(500000.0, -2.0 * double(i) / 128));
    if (wavelength < 2048) {
      EXPECT_EQ(scaled[i], plain[i]) << i;
      ++kept;
    } else if (wavelength > 8192) {
      EXPECT_DOUBLE_EQ(scaled[i], plain[i] / 8) << i;
      ++divided;
    } else {  // between f/8 and f, closer to f the shorter the wavelength
      EXPECT_GT(scaled[i], plain[i] / 8) << i;
      EXPECT_LT(scaled[i], plain[i]) << i;
      EXPECT_NEAR(scaled[i], plain[i] / 8 + (plain[i] - plain[i] / 8) * (8192 / wavelength - 1) / 3, 1e-15) << i;
      ++blended;
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(divided, 0);
  EXPECT_GT(blended, 0);
}
