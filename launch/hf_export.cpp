#include "launch/hf_export.h"

#include <filesystem>

#include "core/fs.h"
#include "launch/hf_tokenizer_export.h"
#include "models/hf_config.h"

namespace retort {

void write_hf_export(const LoadedModel& loaded, const HfExportOptions& opt,
                     const std::string& out_dir) {
  const ModelConfig& mc = loaded.model->config();
  const HfTokenizerFiles tokenizer =
      opt.tokenizer.empty() ? HfTokenizerFiles{} : hf_tokenizer_files(opt.tokenizer, mc.vocab_size, mc.seq_len);
  std::vector<NamedTensor> tensors;
  for (const auto& p : loaded.model->parameters()) tensors.push_back({p.name, p.value});

  fs::write_dir_via_temp(out_dir, [&](const std::string& tmp_dir, const std::string& final_dir) {
    const std::filesystem::path tmp(tmp_dir);
    write_safetensors((tmp / "model.safetensors").string(), tensors, opt.dtype);
    fs::write_file_atomic((tmp / "config.json").string(),
                          hf_config_json(mc, opt.dtype == SafetensorsDType::BF16 ? "bfloat16" : "float32",
                                         tokenizer.bos_id, tokenizer.eos_id).dump(2) + "\n");
    if (!tokenizer.bytes.empty()) {
      fs::write_file_atomic((tmp / tokenizer.name).string(), tokenizer.bytes);
      fs::write_file_atomic((tmp / "tokenizer_config.json").string(), tokenizer.config.dump(2) + "\n");
    }
    fs::rename_durable(tmp_dir, final_dir);
  });
}

}  // namespace retort
