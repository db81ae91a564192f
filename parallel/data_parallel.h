// Data parallelism: every data rank holds the full model, runs its slice of the global batch,
// and the gradients are summed over ranks with bucketed, non-blocking all-reduces that start
// while backward is still running on the layers below (the model's grad-ready hook).
//
// Each rank scales its loss by 1/(micro-batches · data ranks), so the sum over ranks is the
// gradient of the mean loss over the global batch, exactly as one process computes it.
// parallel.grad_reduce: bf16 sends each bucket as bfloat16 (communicator.h, GradReduce): the
// sum is then that of the rounded contributions, rounded at every partial sum.
#pragma once
#include <memory>
#include <vector>

#include "parallel/communicator.h"

namespace retort {

class DataParallel {
 public:
  // grads: the flat gradient buffer [P]; buckets hold at least bucket_elems elements and are
  // summed in `precision`.
  DataParallel(std::shared_ptr<Communicator> comm, Tensor grads, int64_t bucket_elems,
               GradReduce precision = GradReduce::F32);

  // Arm for the last micro-batch's backward: ranges reported from now on are final.
  void begin_final_backward();
  // The model's grad-ready hook: [begin, end) of the gradient buffer is final.
  void grads_ready(int64_t begin, int64_t end);
  // Launch what is left, wait for every bucket. Afterwards the buffer holds Σ over ranks.
  void finish();

  int ranks() const { return comm_->size(); }
  int64_t buckets_launched() const { return launched_; }

 private:
  void launch(int64_t begin, int64_t end);

  std::shared_ptr<Communicator> comm_;
  Tensor grads_;
  int64_t bucket_elems_;
  GradReduce precision_;
  bool armed_ = false;
  int64_t pending_begin_ = 0, pending_end_ = 0;  // contiguous ready range not yet launched
  std::vector<std::pair<int64_t, int64_t>> reduced_;  // ranges launched this step
  std::vector<std::unique_ptr<Request>> in_flight_;
  int64_t launched_ = 0;
};

}  // namespace retort
