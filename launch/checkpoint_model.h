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
