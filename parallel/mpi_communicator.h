// Communicator over an MPI communicator (host buffers).
#pragma once
#include <mpi.h>

#include "parallel/communicator.h"

namespace retort {

class MpiCommunicator : public Communicator {
 public:
  // Takes ownership of `comm` (freed in the destructor unless it is MPI_COMM_WORLD).
  explicit MpiCommunicator(MPI_Comm comm);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  MPI_Comm comm() const { return comm_; }

  void all_reduce(Tensor& x, ReduceOp op = ReduceOp::Sum) override;
  void all_gather(Tensor& out, const Tensor& in) override;
  void reduce_scatter(Tensor& out, const Tensor& in) override;
  void broadcast(Tensor& x, int root) override;
  void barrier() override;

  std::unique_ptr<Request> all_reduce_async(Tensor& x) override;
  std::unique_ptr<Request> all_gather_async(Tensor& out, const Tensor& in) override;
  std::unique_ptr<Request> reduce_scatter_async(Tensor& out, const Tensor& in) override;

 private:
  MPI_Comm comm_;
  int rank_ = 0, size_ = 1;
};

}  // namespace retort
