// One optimizer step: gradient accumulation over micro-batches to the global batch,
// clipping by global norm, AdamW. Shared by `train` and `bench`. With parallel.fsdp > 1 the
// model's parameters, gradients and AdamW state live in parallel/fully_sharded.h's shards;
// otherwise every rank holds them whole and parallel/data_parallel.h sums the gradients.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/adamw.h"
#include "core/config.h"
#include "models/transformer.h"
#include "core/checkpoint.h"
#include "parallel/data_parallel.h"
#include "parallel/fully_sharded.h"
#include "parallel/mesh.h"

namespace retort {

// Global batch of batch_seqs sequences of seq_len tokens, split evenly over data_ranks; each
// rank runs its local_seqs as n_micro micro-batches of micro_seqs.
struct BatchGeometry {
  int64_t seq_len = 0, batch_seqs = 0, data_ranks = 1, local_seqs = 0, micro_seqs = 0, n_micro = 0;
  int64_t tokens_per_step() const { return seq_len * batch_seqs; }
  // From train.batch_tokens and train.micro_batch (sequences per micro-batch per rank);
  // ConfigError naming the key if they do not divide.
  static BatchGeometry from_config(const Config& cfg, int64_t seq_len, int64_t data_ranks = 1);
};

struct StepResult {
  double loss = 0, ce = 0, grad_norm = 0;
  double extra = 0;  // global-batch mean of the model's LogitsLoss term (LossResult::extra)
};

// Per-rank bytes of the training state (summary.json `memory`).
struct MemoryUse {
  int64_t params = 0, grads = 0, optimizer = 0;
  int64_t gather_buffers = 0;  // fsdp: transient full-size unit buffers (gathers, gradients)
};

// Fills inputs/targets [micro_seqs, T] for global sample indices [first, first + count).
using BatchSource = std::function<void(int64_t first, int64_t count, Tensor& inputs, Tensor& targets)>;

class TrainStep {
 public:
  TrainStep(Transformer& model, const Config& cfg, const BatchGeometry& geometry, const Mesh& mesh);
  // Runs optimizer step number `step` (0-based) over global samples
  // [step·batch_seqs, (step+1)·batch_seqs); this rank reads its data-rank slice. Returns the
  // global-batch mean loss (identical on every rank).
  StepResult run(int64_t step, double lr, const BatchSource& source);
  AdamW& optimizer() { return *optimizer_; }

  // Consolidated checkpoint content (full parameters and moments by name, as one process
  // holds them) on the mesh's root; empty tensors lists elsewhere. Every rank must call it.
  CheckpointData checkpoint_data();
  // Loads a consolidated checkpoint (any mesh wrote it): weights, moments, optimizer steps.
  // Returns state.json.
  nlohmann::json load_checkpoint(const std::string& dir);
  MemoryUse memory() const;

 private:
  Transformer& model_;
  BatchGeometry g_;
  const Mesh& mesh_;
  std::unique_ptr<FullyShardedDP> fsdp_;  // fsdp > 1
  std::unique_ptr<DataParallel> dp_;      // fsdp == 1
  float z_loss_;
  double grad_clip_;
  std::unique_ptr<AdamW> optimizer_;
  Tensor inputs_, targets_;
};

}  // namespace retort
