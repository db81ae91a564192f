// A Hugging Face transformers directory read as a checkpoint (docs/FORMATS.md, "Hugging Face
// checkpoints"): config.json (its model: section from models/hf_config.h) and the weights in
// model.safetensors, or in the files model.safetensors.index.json's weight_map names.
#pragma once
#include <string>
#include <vector>

#include "core/checkpoint.h"

namespace retort {

// config.json and model.safetensors (or its index) and no model.h5.
bool is_hf_checkpoint_dir(const std::string& dir);

// Fills `params` (names and shapes given, SPEC §1 names) from the directory's safetensors:
// every name present with the same shape and finite values (F32, BF16 or F16, read as
// float32); Phi-3's fused qkv_proj and gate_up_proj stand for the q, k, v and gate, up
// projections they stack by rows. A tensor the model lacks is an Error naming the file, except
// RoPE's rotary_emb.inv_freq buffers and a tied model's lm_head.weight, unused as transformers
// leaves it (with a warning when it is not a copy of model.embed_tokens.weight).
void load_hf_weights(const std::string& dir, std::vector<NamedTensor>& params);

// sha256 of model.safetensors; with an index, of the sha256 hex digests of the files it names,
// concatenated in name order.
std::string hf_weights_sha256(const std::string& dir);

}  // namespace retort
