// Communicator for GPU ranks (built with the CUDA backend): device tensors go through NCCL on
// the communication stream, host tensors (small control values: losses, flags, digests)
// through the MPI communicator of the same group, so parallel/ code is unchanged.
//
// Ordering: before a collective the communication stream waits for the compute stream (the
// data is ready); after a blocking collective the compute stream waits for the communication
// stream (nothing reads the result early). The host never blocks on device collectives; an
// async request's wait() only orders the compute stream after it, which is what lets a
// reduce-scatter of one bucket overlap the backward of the next.
#pragma once
#include <memory>

#include "parallel/communicator.h"

namespace retort {

class NcclCommunicator : public Communicator {
 public:
  // Creates the NCCL communicator of `host`'s group: rank 0 makes the unique id and broadcasts
  // it over `host` (MPI), then every rank joins (ncclCommInitRank). The GPU must be selected.
  explicit NcclCommunicator(std::shared_ptr<Communicator> host);
  ~NcclCommunicator() override;
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }

  void all_reduce(Tensor& x, ReduceOp op = ReduceOp::Sum) override;
  void all_gather(Tensor& out, const Tensor& in) override;
  void reduce_scatter(Tensor& out, const Tensor& in) override;
  void broadcast(Tensor& x, int root) override;
  void barrier() override;

  std::unique_ptr<Request> all_reduce_async(Tensor& x) override;
  std::unique_ptr<Request> all_gather_async(Tensor& out, const Tensor& in) override;
  std::unique_ptr<Request> reduce_scatter_async(Tensor& out, const Tensor& in) override;

 private:
  struct Impl;
  std::shared_ptr<Communicator> host_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace retort
