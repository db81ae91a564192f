// retort export CHECKPOINT --out DIR: a consolidated model.h5 + config.yaml (SPEC §4), or with
// --format hf a Hugging Face transformers directory (launch/hf_export.h).
#include <cstdio>
#include <filesystem>

#include "core/checkpoint.h"
#include "launch/checkpoint_model.h"
#include "launch/commands.h"
#include "launch/hf_export.h"

namespace retort {

int run_export(const std::string& checkpoint, const std::string& out_dir, const ExportArgs& args) {
  const bool hf = args.format == "hf";
  if (!hf && (args.dtype != "float32" || !args.tokenizer.empty()))
    throw ConfigError("--dtype and --tokenizer apply to --format hf only");
  if (std::filesystem::exists(out_dir))
    throw Error(str_cat(out_dir, ": already exists; export never overwrites (choose a new --out)"));
  LoadedModel loaded = load_checkpoint_model(checkpoint);
  const auto& params = loaded.model->parameters();
  if (hf) {
    HfExportOptions opt;
    opt.dtype = args.dtype == "bfloat16" ? SafetensorsDType::BF16 : SafetensorsDType::F32;
    opt.tokenizer = args.tokenizer;
    write_hf_export(loaded, opt, out_dir);
  } else {
    CheckpointData data;
    for (const auto& p : params) data.model.push_back({p.name, p.value});
    data.config_yaml = loaded.config_yaml;
    write_checkpoint_dir(out_dir, data);
  }
  std::printf("exported %s -> %s (%s%s, %zu tensors, %lld parameters)\n", loaded.dir.c_str(),
              out_dir.c_str(), hf ? "Hugging Face safetensors, " : "model.h5",
              hf ? args.dtype.c_str() : "", params.size(),
              static_cast<long long>(loaded.model->config().n_params()));
  return 0;
}

}  // namespace retort
