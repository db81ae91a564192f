#include "launch/checkpoint_model.h"

#include <yaml-cpp/yaml.h>

#include "core/checkpoint.h"
#include "core/config.h"
#include "core/fs.h"

namespace retort {

LoadedModel load_checkpoint_model(const std::string& path) {
  LoadedModel out;
  out.dir = resolve_checkpoint_dir(path);
  const std::string config_path = out.dir + "/config.yaml";
  out.config_yaml = fs::read_file(config_path);
  YAML::Node model_section;
  try {
    model_section = YAML::Load(out.config_yaml)["model"];
  } catch (const YAML::Exception& e) {
    throw Error(str_cat(config_path, ": malformed YAML: ", e.what()));
  }
  if (!model_section || !model_section.IsMap())
    throw Error(str_cat(config_path, ": no 'model:' section"));
  YAML::Emitter emitter;
  emitter << YAML::BeginMap << YAML::Key << "model" << YAML::Value << model_section << YAML::EndMap;
  ModelConfig mc;
  try {
    mc = ModelConfig::from_config(Config::from_yaml(emitter.c_str(), config_path));
  } catch (const ConfigError& e) {
    throw Error(e.what());  // a bad checkpoint is a runtime error, not a usage error
  }
  out.model = std::make_unique<Transformer>(mc);
  std::vector<NamedTensor> weights;
  for (const auto& p : out.model->parameters()) weights.push_back({p.name, p.value});
  load_model_weights(out.dir, weights);
  return out;
}

}  // namespace retort
