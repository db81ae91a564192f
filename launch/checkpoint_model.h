// Loading a model from a checkpoint directory (full, exported or sharded, SPEC §4) or a Hugging
// Face transformers directory (core/hf_checkpoint.h).
#pragma once
#include <memory>
#include <string>

#include "models/transformer.h"

namespace retort {

struct LoadedModel {
  std::string dir;          // the checkpoint directory (resolve_checkpoint_dir)
  std::string config_yaml;  // its config.yaml, verbatim (a transformers dir: its model: section)
  std::unique_ptr<Transformer> model;
};

// The config of checkpoint directory `dir` (resolve_checkpoint_dir's): config.yaml (checked
// against state.json's sha256 when listed), or a transformers dir's config.json as a `model:`
// section (models/hf_config.h); and its `model:` section alone. Error naming the file.
struct CheckpointModelSection {
  std::string config_path;  // the file read
  std::string config_yaml;  // its text (a transformers dir: the model: section)
  std::string model_yaml;   // just the model: section
};
CheckpointModelSection checkpoint_model_section(const std::string& dir);

// `path`: checkpoint dir, exported dir, transformers dir (config.json + safetensors), run dir
// or checkpoints/ dir. Only the `model:` section of config.yaml is read, so exports of other
// tools load too. With tp.size > 1 the
// model is built for that tensor-parallel layout and holds this rank's slices (any checkpoint
// form, any mesh wrote it); the caller sets its regions object before the first forward.
// The model lives on `device` (tp.size == 1 on a GPU) and runs forward only (no gradient
// buffer: Transformer::Gradients::None).
LoadedModel load_checkpoint_model(const std::string& path, const TpLayout& tp = {},
                                  Device device = Device::CPU);

}  // namespace retort
