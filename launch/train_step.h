// One optimizer step: gradient accumulation over micro-batches to the global batch,
// clipping by global norm, AdamW. Shared by `train` and `bench`. With parallel.tp > 1 the model
// holds this rank's tensor-parallel slices (build it with mesh.tp_layout()). With parallel.fsdp > 1 the
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
#include "core/sharded_checkpoint.h"
#include "parallel/data_parallel.h"
#include "parallel/fully_sharded.h"
#include "parallel/mesh.h"
#include "parallel/tensor_parallel.h"

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
  bool skipped = false;  // non-finite loss or gradient norm under train.nonfinite: skip
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
  // Writes checkpoint `step` under checkpoints_dir and prunes to keep_last (never a step of
  // keep_steps); every rank calls it.
  // checkpoint.format auto: sharded when fsdp·tp > 1 (each rank with distinct state writes its
  // shard file, core/sharded_checkpoint.h), else consolidated (the root writes). Returns the dir.
  std::string save(const std::string& checkpoints_dir, int64_t step, const std::string& config_yaml,
                   const nlohmann::json& state, int64_t keep_last, const std::vector<int64_t>& keep_steps);
  // Loads a checkpoint of either form (any mesh wrote it): weights, moments, optimizer steps.
  // Returns state.json.
  nlohmann::json load_checkpoint(const std::string& dir);
  MemoryUse memory() const;

 private:
  // ‖g‖ over the whole model (all ranks).
  double gradient_norm();
  // Name of a parameter whose gradient (this rank's part) is not finite, or "".
  std::string nonfinite_gradient() const;
  // This rank's pieces of every parameter and its moments (sharded checkpoints).
  std::vector<ShardPiece> shard_pieces();
  // Whole parameters (and moments) from this rank's tp slices, on tp rank 0 (tp > 1).
  std::vector<NamedTensor> whole(const std::vector<NamedTensor>& local);
  // Reads a checkpoint into views named like model.parameters() holding this rank's tp slices.
  nlohmann::json load_sliced(const std::string& dir, std::vector<NamedTensor>& weights,
                             std::vector<NamedTensor>& exp_avg, std::vector<NamedTensor>& exp_avg_sq);

  Transformer& model_;
  BatchGeometry g_;
  const Mesh& mesh_;
  std::unique_ptr<FullyShardedDP> fsdp_;  // fsdp > 1
  std::unique_ptr<DataParallel> dp_;      // fsdp == 1
  std::unique_ptr<TensorParallel> tp_;    // tp > 1
  float z_loss_;
  double grad_clip_;
  bool skip_nonfinite_;       // train.nonfinite: skip (else stop)
  int64_t inject_nan_step_;   // fault injection for the tests: RETORT_FAULT_NAN_GRAD_STEP
  bool sharded_checkpoints_;
  std::unique_ptr<AdamW> optimizer_;
  Tensor inputs_, targets_;
};

}  // namespace retort
