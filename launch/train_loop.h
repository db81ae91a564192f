// The training job shared by `retort train` and `retort distill` (SPEC §6): run directory,
// model init from train.seed, resume from the latest checkpoint, the step loop (TrainStep:
// micro-batches, DP/FSDP, clipping, AdamW) with metrics.jsonl, periodic validation on the
// val split (SPEC §3, plain CE), atomic checkpoints, and summary.json. SIGUSR1/SIGTERM on any
// rank: checkpoint after the current step and return kPreemptedExitCode (core/preemption.h). The caller builds the
// mesh, the model (with any LogitsLoss attached) and the batch source; the data order must
// depend only on (seed, global sample index) so that meshes agree and resume is bitwise.
#pragma once
#include <functional>
#include <nlohmann/json.hpp>

#include "core/config.h"
#include "data/loader.h"
#include "data/token_dataset.h"
#include "launch/train_step.h"
#include "models/transformer.h"
#include "parallel/mesh.h"

namespace retort {

struct TrainLoopJob {
  Transformer* model = nullptr;  // constructed, not initialised (the loop inits or resumes)
  BatchGeometry geometry;
  const Tensor* val_tokens = nullptr;  // 1-D I32 stream of data.val
  BatchSource source;                  // fills each micro-batch
  // Adds job-specific fields to every logged training line (e.g. "kl").
  std::function<void(const StepResult&, nlohmann::json& line)> extra_metrics;
  nlohmann::json extra_summary = nlohmann::json::object();  // merged into summary.json
  // Called before each step, so a source can prepare per-step state (may be empty).
  std::function<void(int64_t step)> before_step;
};

// Opens the token dataset at config key `key` (data.train / data.val): required, vocabulary
// within model.vocab_size (ConfigError), at least one window of seq_len + 1 tokens (Error).
TokenDataset open_token_split(const Config& cfg, const std::string& key, const ModelConfig& mc);

// How often a run reads its data: train.steps × batch_seqs over `items` (windows of data.train,
// or a corpus' sequences) from `source`. Prints one "data:" line on rank 0 and a warning when
// items repeat (scaling laws assume data seen once); returns the epochs (summary.json's
// data_epochs).
double report_data_epochs(const Config& cfg, const Mesh& mesh, const std::string& source,
                          int64_t items, const char* item_name, int64_t batch_seqs);
// "PATH: N tokens (memory-mapped), W windows of T" for report_data_epochs.
std::string windows_source(const TokenDataset& data, const WindowLoader& windows);

// Runs the job; returns the exit code (0). Errors are thrown.
int run_train_loop(const Config& cfg, bool resume, const Mesh& mesh, TrainLoopJob& job);

}  // namespace retort
