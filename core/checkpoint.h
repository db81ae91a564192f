// Checkpoints (SPEC §4). A checkpoint is a directory:
//   model.h5       one float32 dataset per parameter, full shape, at its SPEC §1 name
//   config.yaml    the resolved config of the run that wrote it
//   optimizer.h5   AdamW moments "exp_avg/<name>", "exp_avg_sq/<name>"      (training state)
//   state.json     step, tokens seen, wall time, sha256 of the .h5 files and config.yaml
// Exported checkpoints hold only model.h5 + config.yaml; every reader accepts both, and the
// sharded form multi-rank runs write (core/sharded_checkpoint.h) in place of the .h5 files.
// Writes go to "<dir>.tmp-PID", are fsynced, then renamed: a crash leaves either the previous
// checkpoint set or the new complete one, never a half-written directory that looks complete.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace retort {

struct NamedTensor {
  std::string name;
  Tensor tensor;
};

struct CheckpointData {
  std::vector<NamedTensor> model;
  std::vector<NamedTensor> exp_avg, exp_avg_sq;  // empty → no optimizer.h5 (export)
  std::string config_yaml;
  nlohmann::json state;  // empty → no state.json (export)
};

// Writes `dir` atomically (replacing an existing checkpoint at that path only once the new
// one is complete).
void write_checkpoint_dir(const std::string& dir, const CheckpointData& data);

// Writes <checkpoints_dir>/step_NNNNNNNN and then deletes the oldest complete checkpoints
// beyond `keep_last` (0 keeps all) except those of `keep_steps`. Returns the new directory.
std::string save_checkpoint(const std::string& checkpoints_dir, int64_t step,
                            const CheckpointData& data, int64_t keep_last,
                            const std::vector<int64_t>& keep_steps = {});

// <checkpoints_dir>/step_NNNNNNNN
std::string checkpoint_step_dir(const std::string& checkpoints_dir, int64_t step);
// The step a checkpoint directory is named for ("…/step_00000100" → 100); -1 for any other
// name (temporaries included).
int64_t checkpoint_dir_step(const std::string& dir);
// Finishes a checkpoint whose data files `written` (names relative to tmp_dir) are complete in
// tmp_dir: config.yaml, state.json with their sha256 (unless state is null), fsync, then
// renames tmp_dir over final_dir (an existing one is replaced only then).
void commit_checkpoint_dir(const std::string& tmp_dir, const std::string& final_dir,
                           const std::vector<std::string>& written, const std::string& config_yaml,
                           const nlohmann::json& state);
// Deletes the oldest complete checkpoints beyond keep_last (0 keeps all), never those at a step
// of keep_steps (checkpoint.keep_steps: branch points). Called only after a new checkpoint was
// committed, so the newest complete one (the new one) is always kept; temporaries of failed
// writes never count as complete.
void prune_checkpoints(const std::string& checkpoints_dir, int64_t keep_last,
                       const std::vector<int64_t>& keep_steps = {});
// Removes what crashed or failed writes left in checkpoints_dir: step_*.tmp* directories
// (never complete) and step_*.old-PID copies (put back when their step is missing).
void remove_stale_checkpoint_temps(const std::string& checkpoints_dir);

// Newest complete step_* directory, or "" when there is none.
std::string find_latest_checkpoint(const std::string& checkpoints_dir);

// A checkpoint dir, an exported dir, a transformers dir (core/hf_checkpoint.h), a run dir or
// a run's checkpoints/ dir → the directory holding the checkpoint. Error naming the path when
// there is none.
std::string resolve_checkpoint_dir(const std::string& path);

// Fill `params` (names and shapes given) from model.h5; every name must exist with the same
// shape and finite values, and the file must hold no parameter that `params` lacks. When the
// directory has a state.json (a training checkpoint), the files read are first checked
// against its sha256, before libhdf5 parses them.
void load_model_weights(const std::string& checkpoint_dir, std::vector<NamedTensor>& params);

// What identifies a checkpoint's weights (a corpus's teacher_sha256): the sha256 of model.h5;
// of a sharded checkpoint, the sha256 of its shard files' sha256 hex digests concatenated in
// name order; of a transformers directory, hf_weights_sha256 (core/hf_checkpoint.h).
std::string checkpoint_weights_sha256(const std::string& checkpoint_dir);

// Checks file `name` of a training checkpoint against the sha256 its state.json lists (no-op
// for an exported checkpoint or a file state.json does not list, e.g. config.yaml of a
// checkpoint written before config.yaml was checksummed).
void verify_checkpoint_file(const std::string& checkpoint_dir, const std::string& name);

// Values read from checkpoint `file`: finite; second moments (dataset "exp_avg_sq/...") >= 0.
// Error naming the file, dataset and index otherwise.
void check_checkpoint_values(const std::string& file, const std::string& dataset, const float* v,
                             int64_t n);

// Training state: checks state.json (step, sha256 and the counters' types) and the sha256 of
// every file it lists, fills the moments, returns state.json.
nlohmann::json load_training_state(const std::string& checkpoint_dir,
                                   std::vector<NamedTensor>& exp_avg,
                                   std::vector<NamedTensor>& exp_avg_sq);

}  // namespace retort
