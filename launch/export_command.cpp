// retort export CHECKPOINT --out DIR: a consolidated model.h5 + config.yaml (SPEC §4).
#include <cstdio>
#include <filesystem>

#include "core/checkpoint.h"
#include "launch/checkpoint_model.h"
#include "launch/commands.h"

namespace retort {

int run_export(const std::string& checkpoint, const std::string& out_dir) {
  if (std::filesystem::exists(out_dir))
    throw Error(str_cat(out_dir, ": already exists; export never overwrites (choose a new --out)"));
  LoadedModel loaded = load_checkpoint_model(checkpoint);
  CheckpointData data;
  for (const auto& p : loaded.model->parameters()) data.model.push_back({p.name, p.value});
  data.config_yaml = loaded.config_yaml;
  write_checkpoint_dir(out_dir, data);
  std::printf("exported %s -> %s (%zu tensors, %lld parameters)\n", loaded.dir.c_str(),
              out_dir.c_str(), data.model.size(),
              static_cast<long long>(loaded.model->config().n_params()));
  return 0;
}

}  // namespace retort
