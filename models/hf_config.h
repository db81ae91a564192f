// The model's shape as a Hugging Face transformers config.json, both ways. SPEC §1's model is
// exactly transformers' Qwen3 (qk_norm: a per-head RMSNorm on q and k before RoPE), Qwen2
// (qkv_bias: biases on the q, k, v projections, none on o) or Llama (neither; Mistral is Llama
// with an optional sliding window (model.sliding_window), SmolLM3 Llama with NoPE layers
// (model.no_rope_interval), Phi-3 / Phi-4 Llama with fused weights and an optional window,
// read only): RMSNorm,
// rotate-half RoPE, GQA, SwiGLU; the parameter names match.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

#include "models/model_config.h"

namespace retort {

// config.json for `mc`: Qwen3ForCausalLM when mc.qk_norm, Qwen2ForCausalLM when mc.qkv_bias,
// MistralForCausalLM with a sliding window shorter than seq_len, SmolLM3ForCausalLM with NoPE
// layers, else LlamaForCausalLM; two of qk_norm, qkv_bias, a window and NoPE layers together
// have no transformers class here (an Error).
// torch_dtype: "float32" | "bfloat16"; bos_id / eos_id < 0 leave the token ids out.
nlohmann::json hf_config_json(const ModelConfig& mc, const std::string& torch_dtype,
                              int64_t bos_id, int64_t eos_id);

// The `model:` section (YAML text, every key given) for a transformers config.json `j` read
// from `file`: model_type llama, mistral, phi3, qwen2, qwen3 or smollm3; seq_len from
// max_position_embeddings. Throws an Error naming the file and key for what retort cannot run
// exactly (another model_type, biases other than Qwen2's, an activation other than silu, RoPE
// scaling other than Llama 3.1's llama3, RoPE on part of a head, Qwen's per-layer windows).
std::string model_yaml_from_hf_config(const nlohmann::json& j, const std::string& file);

}  // namespace retort
