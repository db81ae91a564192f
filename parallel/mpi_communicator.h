// Communicator over an MPI communicator (host buffers). Every wait for a collective is watched
// (parallel/collective_watchdog.h): one longer than `parallel.timeout_s` ends the job with a
// line naming the ranks that hold it up.
#pragma once
#include <mpi.h>

#include <memory>
#include <string>
#include <vector>

#include "parallel/collective_watchdog.h"
#include "parallel/communicator.h"

namespace retort {

class MpiCommunicator : public Communicator {
 public:
  // Takes ownership of `comm` (freed in the destructor unless it is MPI_COMM_WORLD). `axis`
  // names it in messages ("world", "dp", "fsdp", "tp"). Call on every rank together (the first
  // one sets up the watchdog's channel, collectively over the world).
  explicit MpiCommunicator(MPI_Comm comm, std::string axis = "world");
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  MPI_Comm comm() const { return comm_; }
  const std::string& axis() const { return axis_; }

  void all_reduce(Tensor& x, ReduceOp op = ReduceOp::Sum) override;
  void all_gather(Tensor& out, const Tensor& in) override;
  void reduce_scatter(Tensor& out, const Tensor& in) override;
  void broadcast(Tensor& x, int root) override;
  void barrier() override;

  std::unique_ptr<Request> all_reduce_async(Tensor& x) override;
  std::unique_ptr<Request> all_gather_async(Tensor& out, const Tensor& in) override;
  std::unique_ptr<Request> reduce_scatter_async(Tensor& out, const Tensor& in) override;

  // The next collective on this communicator, numbered 1, 2, ... (a device communicator of the
  // same group numbers its collectives in the same sequence).
  CollectiveCall next_call(CollectiveKind kind) { return {kind, axis_, ++calls_, members_}; }

 private:
  MPI_Comm comm_;
  std::string axis_;
  int rank_ = 0, size_ = 1;
  int64_t calls_ = 0;
  std::shared_ptr<const std::vector<int>> members_;  // world rank of each rank of comm_
};

}  // namespace retort
