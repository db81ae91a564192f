// One optimizer step: gradient accumulation over micro-batches to the global batch,
// clipping by global norm, AdamW. Shared by `train` and `bench`.
#pragma once
#include <cstdint>
#include <functional>

#include "core/adamw.h"
#include "core/config.h"
#include "models/transformer.h"
#include "parallel/data_parallel.h"
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
  AdamW& optimizer() { return optimizer_; }

 private:
  Transformer& model_;
  BatchGeometry g_;
  const Mesh& mesh_;
  DataParallel dp_;
  float z_loss_;
  double grad_clip_;
  AdamW optimizer_;
  Tensor inputs_, targets_;
};

}  // namespace retort
