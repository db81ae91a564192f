#include "launch/checkpoint_model.h"

#include <yaml-cpp/yaml.h>

#include "core/checkpoint.h"
#include "core/config.h"
#include "core/fs.h"
#include "core/hf_checkpoint.h"
#include "core/json_fields.h"
#include "core/ops.h"
#include "models/hf_config.h"
#include "parallel/tensor_parallel.h"

namespace retort {

CheckpointModelSection checkpoint_model_section(const std::string& dir) {
  CheckpointModelSection out;
  const bool hf = is_hf_checkpoint_dir(dir);
  out.config_path = dir + (hf ? "/config.json" : "/config.yaml");
  if (hf) {
    out.config_yaml = model_yaml_from_hf_config(read_json_file(out.config_path), out.config_path);
  } else {
    verify_checkpoint_file(dir, "config.yaml");
    out.config_yaml = fs::read_file(out.config_path);
  }
  YAML::Node model_section;
  try {
    model_section = YAML::Load(out.config_yaml)["model"];
  } catch (const YAML::Exception& e) {
    throw Error(str_cat(out.config_path, ": malformed YAML: ", e.what()));
  }
  if (!model_section || !model_section.IsMap())
    throw Error(str_cat(out.config_path, ": no 'model:' section"));
  YAML::Emitter emitter;
  emitter << YAML::BeginMap << YAML::Key << "model" << YAML::Value << model_section << YAML::EndMap;
  out.model_yaml = emitter.c_str();
  return out;
}

LoadedModel load_checkpoint_model(const std::string& path, const TpLayout& tp, Device device) {
  LoadedModel out;
  out.dir = resolve_checkpoint_dir(path);
  const CheckpointModelSection section = checkpoint_model_section(out.dir);
  out.config_yaml = section.config_yaml;
  const std::string& config_path = section.config_path;
  ModelConfig mc;
  try {
    mc = ModelConfig::from_config(Config::from_yaml(section.model_yaml, config_path));
  } catch (const ConfigError& e) {
    throw Error(e.what());  // a bad checkpoint is a runtime error, not a usage error
  }
  if (tp.size > 1 && (mc.n_kv_heads % tp.size || mc.d_ff % tp.size || mc.vocab_size % tp.size))
    throw ConfigError(str_cat(config_path, ": parallel.tp = ", tp.size, " needs the model's n_kv_heads (",
                              mc.n_kv_heads, "), d_ff (", mc.d_ff, ") and vocab_size (", mc.vocab_size,
                              ") divisible by it"));
  out.model = std::make_unique<Transformer>(mc, tp, device, Transformer::Gradients::None);
  const auto& ps = out.model->parameters();
  // Read into host tensors: whole ones under tp (then this rank's slices), copies on a GPU.
  const bool direct = tp.size == 1 && device == Device::CPU;
  std::vector<NamedTensor> weights;
  for (const auto& p : ps)
    weights.push_back({p.name, direct ? p.value : Tensor::empty(tp.size > 1 ? p.global_shape : p.shape)});
  load_model_weights(out.dir, weights);
  for (size_t i = 0; i < ps.size() && !direct; ++i) {
    Tensor local = ps[i].value;
    if (tp.size > 1) copy_tp_slice(local, ps[i], weights[i].tensor);  // host → this rank's slice
    else ops::copy(local, weights[i].tensor);
  }
  return out;
}

}  // namespace retort
