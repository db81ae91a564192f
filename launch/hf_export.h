// `retort export CKPT --out DIR --format hf`: a Hugging Face transformers directory.
//   config.json        Qwen3ForCausalLM (model.qk_norm: true) or LlamaForCausalLM (false), the
//                      same math as SPEC §1 (models/hf_config.h)
//   model.safetensors  every parameter at its SPEC §1 name, float32 or bfloat16; tied models
//                      hold no lm_head.weight (transformers ties it to embed_tokens)
//   tokenizer.model or tokenizer.json, tokenizer_config.json   with --tokenizer F: encoding
//                      as the training data was (launch/hf_tokenizer_export.h)
#pragma once
#include <string>

#include "core/safetensors.h"
#include "launch/checkpoint_model.h"

namespace retort {

struct HfExportOptions {
  SafetensorsDType dtype = SafetensorsDType::F32;
  std::string tokenizer;  // a tokenizer.model or tokenizer.json to include, or ""
};

// Writes the directory `out_dir` (which must not exist) atomically: into out_dir.tmp-PID,
// renamed once complete.
void write_hf_export(const LoadedModel& loaded, const HfExportOptions& opt,
                     const std::string& out_dir);

}  // namespace retort
