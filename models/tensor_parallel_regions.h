// Tensor-parallel regions (Megatron-LM): the marks the model puts where activations enter and
// leave the tensor-parallel parts of the network. The model never communicates itself; an
// object from parallel/tensor_parallel.h implements the marks over the mesh's tp axis. With
// tp = 1 the model has no regions object and skips the marks.
//
// Column-parallel layers (q, k, v, gate, up, logits) hold a slice of the output features;
// row-parallel layers (o, down) a slice of the input features and produce partial sums.
//
//                    forward                         backward
//   enter  (→ col.)  sp: all-gather rows             sp: reduce-scatter rows
//                    no sp: identity ("copy to")     no sp: all-reduce
//   leave  (row →)   sp: reduce-scatter rows         sp: all-gather rows
//                    no sp: all-reduce ("reduce from") no sp: identity
//
// Rows: with sp the residual stream (embedding output, norms, residual adds) holds R/tp of the
// R = B·T token rows per rank, rank r rows [r·R/tp, (r+1)·R/tp); inside the regions and without
// sp every rank holds all R rows. Outputs may alias inputs when the shapes agree (no sp).
#pragma once
#include "core/tensor.h"

namespace retort {

// Which slice of the tensor-parallel group this model instance is.
struct TpLayout {
  int size = 1;     // tp
  int rank = 0;     // index on the tp axis
  bool sp = false;  // sequence parallelism
};

class TensorParallelRegions {
 public:
  virtual ~TensorParallelRegions() = default;
  // full [R, c] ← local [R/tp or R, c]
  virtual void enter_forward(Tensor& full, const Tensor& local) = 0;
  // dlocal ← dL/dlocal from the partial dfull [R, c] (dfull may be overwritten)
  virtual void enter_backward(Tensor& dlocal, Tensor& dfull) = 0;
  // local ← Σ over tp of partial [R, c] (rows of this rank under sp; partial may be overwritten)
  virtual void leave_forward(Tensor& local, Tensor& partial) = 0;
  // dpartial [R, c] ← dlocal
  virtual void leave_backward(Tensor& dpartial, const Tensor& dlocal) = 0;
  // x ← Σ over tp ranks, in place: gradients of parameters every tp rank holds whole but sees
  // only part of the data for (norm gains under sp; q/k norm gains, shared by the heads), and
  // the target logits of the vocabulary-parallel cross-entropy.
  virtual void all_reduce_sum(Tensor& x) = 0;
  // out [tp·n] ← concat over tp ranks of in [n] (the shards' logsumexp).
  virtual void all_gather(Tensor& out, const Tensor& in) = 0;
};

}  // namespace retort
