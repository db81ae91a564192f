// Loading a model from a checkpoint directory (full or exported, SPEC §4).
#pragma once
#include <memory>
#include <string>

#include "models/transformer.h"

namespace retort {

struct LoadedModel {
  std::string dir;          // the directory holding model.h5
  std::string config_yaml;  // its config.yaml, verbatim
  std::unique_ptr<Transformer> model;
};

// `path`: checkpoint dir, exported dir, run dir or checkpoints/ dir. Only the `model:`
// section of config.yaml is read, so exports of other tools load too. With tp.size > 1 the
// model is built for that tensor-parallel layout and holds this rank's slices (any checkpoint
// form, any mesh wrote it); the caller sets its regions object before the first forward.
// The model lives on `device` (tp.size == 1 on a GPU).
LoadedModel load_checkpoint_model(const std::string& path, const TpLayout& tp = {},
                                  Device device = Device::CPU);

}  // namespace retort
