#include "parallel/mpi_communicator.h"

#include <string>

namespace retort {

namespace {

MPI_Datatype mpi_type(const Tensor& t) {
  switch (t.dtype()) {
    case DType::F32: return MPI_FLOAT;
    case DType::I32: return MPI_INT32_T;
    case DType::BF16: break;
  }
  throw Error(str_cat("MPI collectives take float32 or int32 tensors, got ", dtype_name(t.dtype())));
}

void check_mpi(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Error(str_cat(what, " failed: ", std::string(msg, len)));
}

void check_host(const Tensor& t) {
  RETORT_CHECK(t.device() == Device::CPU, "the MPI communicator needs host tensors");
}

class MpiRequest : public Request {
 public:
  MpiRequest() = default;
  ~MpiRequest() override {
    if (req_ != MPI_REQUEST_NULL) MPI_Wait(&req_, MPI_STATUS_IGNORE);
  }
  MPI_Request* handle() { return &req_; }
  void wait() override { check_mpi(MPI_Wait(&req_, MPI_STATUS_IGNORE), "MPI_Wait"); }
  bool test() override {
    int done = 0;
    check_mpi(MPI_Test(&req_, &done, MPI_STATUS_IGNORE), "MPI_Test");
    return done != 0;
  }

 private:
  MPI_Request req_ = MPI_REQUEST_NULL;
};

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm) : comm_(comm) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  // Errors come back as codes (turned into exceptions) instead of aborting silently.
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_WORLD && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void MpiCommunicator::all_reduce(Tensor& x, ReduceOp op) {
  check_host(x);
  count(Kind::AllReduce, x.nbytes());
  check_mpi(MPI_Allreduce(MPI_IN_PLACE, x.raw(), static_cast<int>(x.numel()), mpi_type(x),
                          op == ReduceOp::Sum ? MPI_SUM : MPI_MAX, comm_),
            "MPI_Allreduce");
}

void MpiCommunicator::all_gather(Tensor& out, const Tensor& in) {
  check_host(out);
  check_host(in);
  RETORT_CHECK(out.numel() == in.numel() * size_ && out.dtype() == in.dtype(),
               "all_gather: out has ", out.numel(), " elements, expected ", size_, " x ", in.numel());
  count(Kind::AllGather, in.nbytes());
  check_mpi(MPI_Allgather(in.raw(), static_cast<int>(in.numel()), mpi_type(in), out.raw(),
                          static_cast<int>(in.numel()), mpi_type(in), comm_),
            "MPI_Allgather");
}

void MpiCommunicator::reduce_scatter(Tensor& out, const Tensor& in) {
  check_host(out);
  check_host(in);
  RETORT_CHECK(in.numel() == out.numel() * size_ && out.dtype() == in.dtype(),
               "reduce_scatter: in has ", in.numel(), " elements, expected ", size_, " x ", out.numel());
  count(Kind::ReduceScatter, in.nbytes());
  check_mpi(MPI_Reduce_scatter_block(in.raw(), out.raw(), static_cast<int>(out.numel()),
                                     mpi_type(in), MPI_SUM, comm_),
            "MPI_Reduce_scatter_block");
}

void MpiCommunicator::broadcast(Tensor& x, int root) {
  check_host(x);
  count(Kind::Broadcast, x.nbytes());
  check_mpi(MPI_Bcast(x.raw(), static_cast<int>(x.numel()), mpi_type(x), root, comm_), "MPI_Bcast");
}

void MpiCommunicator::barrier() { check_mpi(MPI_Barrier(comm_), "MPI_Barrier"); }

std::unique_ptr<Request> MpiCommunicator::all_reduce_async(Tensor& x) {
  check_host(x);
  count(Kind::AllReduce, x.nbytes());
  auto r = std::make_unique<MpiRequest>();
  check_mpi(MPI_Iallreduce(MPI_IN_PLACE, x.raw(), static_cast<int>(x.numel()), mpi_type(x), MPI_SUM,
                           comm_, r->handle()),
            "MPI_Iallreduce");
  return r;
}

std::unique_ptr<Request> MpiCommunicator::all_gather_async(Tensor& out, const Tensor& in) {
  check_host(out);
  check_host(in);
  RETORT_CHECK(out.numel() == in.numel() * size_, "all_gather_async: size mismatch");
  count(Kind::AllGather, in.nbytes());
  auto r = std::make_unique<MpiRequest>();
  check_mpi(MPI_Iallgather(in.raw(), static_cast<int>(in.numel()), mpi_type(in), out.raw(),
                           static_cast<int>(in.numel()), mpi_type(in), comm_, r->handle()),
            "MPI_Iallgather");
  return r;
}

std::unique_ptr<Request> MpiCommunicator::reduce_scatter_async(Tensor& out, const Tensor& in) {
  check_host(out);
  check_host(in);
  RETORT_CHECK(in.numel() == out.numel() * size_, "reduce_scatter_async: size mismatch");
  count(Kind::ReduceScatter, in.nbytes());
  auto r = std::make_unique<MpiRequest>();
  check_mpi(MPI_Ireduce_scatter_block(in.raw(), out.raw(), static_cast<int>(out.numel()),
                                      mpi_type(in), MPI_SUM, comm_, r->handle()),
            "MPI_Ireduce_scatter_block");
  return r;
}

}  // namespace retort
