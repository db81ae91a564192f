// Tensor (and sequence) parallelism over the mesh's tp axis: the region marks of
// models/tensor_parallel_regions.h as collectives, and the conversions between a parameter's
// tp slices and the whole parameter (checkpoints are written and read whole, so any mesh can
// load them).
//
// Communication per layer and micro-batch (R token rows of width d, 2 regions per layer),
// forward + backward: no sp: 4 all-reduces of [R, d]; sp: 4 all-gathers and 4 reduce-scatters
// of [R, d] (the same volume, Korthikanti et al. 2022), plus the vocabulary-parallel
// embedding and cross-entropy.
#pragma once
#include <memory>

#include "models/tensor_parallel_regions.h"
#include "models/transformer.h"
#include "parallel/communicator.h"

namespace retort {

class TensorParallel : public TensorParallelRegions {
 public:
  TensorParallel(std::shared_ptr<Communicator> tp, bool sp) : tp_(std::move(tp)), sp_(sp) {}

  void enter_forward(Tensor& full, const Tensor& local) override;
  void enter_backward(Tensor& dlocal, Tensor& dfull) override;
  void leave_forward(Tensor& local, Tensor& partial) override;
  void leave_backward(Tensor& dpartial, const Tensor& dlocal) override;
  void all_reduce_sum(Tensor& x) override;
  void all_gather(Tensor& out, const Tensor& in) override;

 private:
  std::shared_ptr<Communicator> tp_;
  bool sp_;
};

// The whole parameter (p.global_shape, on local's device) from every tp rank's slice `local`
// (p.shape); every rank of `tp` must call it. A parameter that is not split is returned as is.
Tensor gather_tp_slices(Communicator& tp, const Parameter& p, const Tensor& local);
// local (p.shape) ← this rank's slice of the whole parameter `whole` (p.global_shape); either
// may be on a GPU (the slice is then cut on the host).
void copy_tp_slice(Tensor& local, const Parameter& p, const Tensor& whole);

}  // namespace retort
