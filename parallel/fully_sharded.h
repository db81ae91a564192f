// Fully sharded data parallelism (ZeRO-3) over the mesh's fsdp axis, composed with dp.
//
// The model's flat layout is cut into units (embedding, each layer, head; models/transformer.h).
// Unit u has n_u elements, padded to P_u = F·c_u (F = fsdp ranks); fsdp rank k owns chunk k,
// elements [k·c_u, (k+1)·c_u) of the padded unit. A rank's shard is the concatenation of its
// chunks over units (S = Σ_u c_u elements): parameters, gradients and AdamW moments live only
// there. Around each unit's use in forward and backward (the model's unit hooks):
//
//   before forward/backward(u):  full_u [P_u] ← all_gather(chunk_u)      (next unit prefetched)
//   after backward(u):           gshard_u [c_u] += reduce_scatter(dfull_u) (Σ over fsdp ranks)
//   after the last micro-batch:  gshard ← all_reduce over dp              (dp > 1)
//   clip:                        ‖g‖² = Σ over fsdp ranks of Σ gshard²   (grad_sq; padding is 0)
//
// The reduce-scatters and the dp all-reduce sum in the precision of parallel.grad_reduce
// (communicator.h, GradReduce): with bf16 each rank's dfull_u (and gshard) is rounded to
// bfloat16 for the wire and the sum converted back to fp32; the shard accumulates in fp32.
// The all-gathers move parameters in the precision of parallel.param_gather (ParamGather):
// with bf16 each rank's chunk is rounded to bfloat16 (half the bytes on the wire), so the model
// sees its parameters rounded to bf16 — what bf16 products round the weights to anyway; the
// norm gains and the embedding rows the lookup reads are rounded too (as under FSDP2's
// param_dtype). The model reads the bf16 gather itself (Transformer::bind_unit's params16):
// the products their weights, the lookup its rows; only the norm gains (and q, k, v biases)
// are widened to fp32 (a small buffer per unit), so a gathered unit costs 2 bytes per parameter, not 2 + 4. The
// shard, its gradient and AdamW stay fp32.
//
// Gradients are reduce-scattered after every micro-batch's backward into the shard accumulator
// (ZeRO-3 style), so no full-size gradient outlives one unit. Parameters are re-gathered for
// backward unless keep_params (then forward-gathered units stay until their backward). Tied
// embeddings: unit 0 is gathered (and its gradient reduce-scattered) once for the lookup and
// once for the logits.
#pragma once
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <vector>

#include "core/adamw.h"
#include "core/checkpoint.h"
#include "models/transformer.h"
#include "parallel/communicator.h"

namespace retort {

// Precision of fsdp's parameter all-gathers (parallel.param_gather).
enum class ParamGather { F32, BF16 };

class FullyShardedDP : public Transformer::UnitHooks {
 public:
  // Keeps this rank's shard of the model's current (full, identical on every rank) parameters,
  // releases the model's flat buffers and installs itself as the model's unit hooks.
  FullyShardedDP(Transformer& model, std::shared_ptr<Communicator> fsdp,
                 std::shared_ptr<Communicator> dp, bool keep_params,
                 GradReduce precision = GradReduce::F32, ParamGather gather = ParamGather::F32);
  ~FullyShardedDP() override;
  FullyShardedDP(const FullyShardedDP&) = delete;
  FullyShardedDP& operator=(const FullyShardedDP&) = delete;

  // ---- step protocol (launch/train_step.cpp) ----
  void zero_grad();                 // gradient shard ← 0
  void set_training(bool on);       // keep_params applies only to training forwards
  void finish_backward();           // complete this backward's reduce-scatters
  void reduce_over_dp();            // gradient shard ← Σ over dp replicas
  // Σ g² over the fsdp group's shards of the parameters `counted` selects (padding is 0).
  double grad_sq(const std::function<bool(const Parameter&)>& counted) const;
  // The AdamW pieces: shard ∩ parameter, each with its parameter's decay setting.
  std::vector<OptimizedTensor> optimizer_pieces() const;
  // For each optimizer piece: (index in model.parameters(), its first element in the parameter).
  std::vector<std::pair<size_t, int64_t>> piece_positions() const;

  // ---- shard ↔ full flat buffers (checkpoints) ----
  // Shards, gradients, unit buffers and AdamW state live on the model's device (a GPU under
  // parallel.device: cuda); the full buffers of checkpoints may be on either device.
  // full [N] in host memory on fsdp rank 0 (undefined elsewhere) ← the chunks of `shard` [S]
  // of every rank (gathered unit by unit on the shard's device, each unit copied to the host).
  Tensor gather_full(const Tensor& shard);
  // shard [S] ← this rank's chunks of full [N] (padding 0); either may be on the host.
  void scatter_full(Tensor& shard, const Tensor& full) const;
  // Moments of optimizer_pieces() order ↔ a shard-shaped buffer (pack: on the shard's device).
  Tensor pack_pieces(const std::vector<NamedTensor>& pieces) const;
  void unpack_pieces(std::vector<NamedTensor>& pieces, const Tensor& shard) const;
  // Views named like model.parameters() into a full flat buffer [N].
  std::vector<NamedTensor> named_views(const Tensor& full) const;

  Tensor& param_shard() { return params_; }
  Tensor& grad_shard() { return grads_; }
  int64_t shard_elems() const { return shard_elems_; }
  // Bytes of the transient full-size unit buffers allocated so far (gathers, gradients).
  int64_t gather_buffer_bytes() const;

  // UnitHooks
  void before_forward(int unit) override;
  void after_forward(int unit) override;
  void before_backward(int unit) override;
  void after_backward(int unit) override;

 private:
  struct Unit {
    int64_t begin, n;     // flat range of the unit in the model
    int64_t chunk;        // c_u = ceil(n / F)
    int64_t shard_off;    // offset of this rank's chunk in the shard
  };
  struct Piece {          // shard ∩ parameter
    size_t param;
    int64_t begin;        // first element of the parameter in the piece
    int64_t shard_off, n;
  };
  struct Gathered {       // a unit's full parameters, maybe still arriving
    Tensor buf;             // what the model reads in fp32: the unit [P_u] (F32 gathers) or
                            // its norm gains and biases, packed (BF16: widened from buf16)
    Tensor buf16, chunk16;  // ParamGather::BF16: the gather's bf16 output (the products' weights
                            // while resident) and input
    std::unique_ptr<Request> req;
  };
  struct Scatter {        // a unit's gradient reduce-scatter in flight
    int unit;
    Tensor full, chunk;
    std::unique_ptr<Request> req;
  };

  Tensor chunk_of(const Tensor& shard, int u) const { return shard.flat(units_[u].shard_off, units_[u].chunk); }
  Tensor take(std::vector<Tensor>& pool, int64_t& allocated, int64_t n, DType dtype = DType::F32);
  // Returns a Gathered's buffers to their pools.
  void recycle(Gathered& g);
  // Unit u's fp32 parameters (Gathered::buf), gathered (started now if not resident or in
  // flight).
  Tensor& gathered(int u);
  // Binds unit u's gathered parameters (and under ParamGather::BF16 their bf16 gather, for the
  // products) and `grads` to the model.
  void bind(int u, const Tensor& grads);
  void prefetch(int u);
  void release(int u);
  void release_all();
  void complete_oldest_scatter();
  void progress();
  // Pass bookkeeping: the expected unit order of a forward/backward, for prefetching.
  int next_in(const std::vector<int>& order, size_t& pos, int u) const;
  bool needed_later(const std::vector<int>& order, size_t pos, int u) const;

  Transformer& model_;
  std::shared_ptr<Communicator> fsdp_, dp_;
  bool keep_params_, training_ = false;
  GradReduce precision_;
  ParamGather gather_;
  int F_, k_;
  Device device_ = Device::CPU;  // the model's: shards and unit buffers live there
  std::vector<Unit> units_;
  std::vector<Piece> pieces_;
  int64_t shard_elems_ = 0, max_padded_ = 0, max_chunk_ = 0, max_gains_ = 0;
  Tensor params_, grads_;  // the shards [S]

  std::map<int, Gathered> resident_;
  std::deque<Scatter> scatters_;
  std::map<int, Tensor> grad_bound_;  // unit → full gradient buffer of the running backward
  std::vector<Tensor> free_full_, free_chunk_, free_full16_, free_chunk16_, free_gains_;
  int64_t full_allocated_ = 0, chunk_allocated_ = 0, full16_allocated_ = 0, chunk16_allocated_ = 0,
          gains_allocated_ = 0;
  std::vector<int> fwd_order_, bwd_order_;
  size_t fwd_pos_ = 0, bwd_pos_ = 0;
};

}  // namespace retort
