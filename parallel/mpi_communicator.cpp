#include "parallel/mpi_communicator.h"

#include <exception>
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

void check_host(const Tensor& t) {
  RETORT_CHECK(t.device() == Device::CPU, "the MPI communicator needs host tensors");
}

int count_of(const Tensor& t) { return static_cast<int>(t.numel()); }

class MpiRequest : public Request {
 public:
  MpiRequest(MPI_Request req, CollectiveCall call) : req_(req), call_(std::move(call)) {}
  ~MpiRequest() override {
    // Unwinding past an unfinished collective: the job ends with that exception (abort_job), and
    // waiting here could deadlock, the other ranks waiting elsewhere. (MPI may not free it.)
    if (req_ == MPI_REQUEST_NULL || std::uncaught_exceptions() > 0) return;
    WatchedWait watched(call_);
    MPI_Wait(&req_, MPI_STATUS_IGNORE);
  }
  void wait() override {
    WatchedWait watched(call_);
    check_collective(MPI_Wait(&req_, MPI_STATUS_IGNORE), call_, "MPI_Wait");
  }
  bool test() override {
    int done = 0;
    check_collective(MPI_Test(&req_, &done, MPI_STATUS_IGNORE), call_, "MPI_Test");
    return done != 0;
  }

 private:
  MPI_Request req_;
  CollectiveCall call_;
};

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string axis) : comm_(comm), axis_(std::move(axis)) {
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  // Errors come back as codes (turned into exceptions naming the collective) instead of
  // aborting silently.
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Group group, world;
  MPI_Comm_group(comm_, &group);
  MPI_Comm_group(MPI_COMM_WORLD, &world);
  std::vector<int> mine(size_), in_world(size_);
  for (int r = 0; r < size_; ++r) mine[r] = r;
  MPI_Group_translate_ranks(group, size_, mine.data(), world, in_world.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world);
  members_ = std::make_shared<const std::vector<int>>(std::move(in_world));
  attach_collective_watchdog();
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized && comm_ != MPI_COMM_WORLD && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void MpiCommunicator::all_reduce(Tensor& x, ReduceOp op) {
  check_host(x);
  count(Kind::AllReduce, x.nbytes());
  const CollectiveCall call = next_call(CollectiveKind::AllReduce);
  WatchedWait watched(call);
  check_collective(MPI_Allreduce(MPI_IN_PLACE, x.raw(), count_of(x), mpi_type(x),
                                 op == ReduceOp::Sum ? MPI_SUM : MPI_MAX, comm_),
                   call, "MPI_Allreduce");
}

void MpiCommunicator::all_gather(Tensor& out, const Tensor& in) {
  check_host(out);
  check_host(in);
  RETORT_CHECK(out.numel() == in.numel() * size_ && out.dtype() == in.dtype(),
               "all_gather: out has ", out.numel(), " elements, expected ", size_, " x ", in.numel());
  count(Kind::AllGather, in.nbytes());
  const CollectiveCall call = next_call(CollectiveKind::AllGather);
  WatchedWait watched(call);
  check_collective(MPI_Allgather(in.raw(), count_of(in), mpi_type(in), out.raw(), count_of(in),
                                 mpi_type(in), comm_),
                   call, "MPI_Allgather");
}

void MpiCommunicator::reduce_scatter(Tensor& out, const Tensor& in) {
  check_host(out);
  check_host(in);
  RETORT_CHECK(in.numel() == out.numel() * size_ && out.dtype() == in.dtype(),
               "reduce_scatter: in has ", in.numel(), " elements, expected ", size_, " x ", out.numel());
  count(Kind::ReduceScatter, in.nbytes());
  const CollectiveCall call = next_call(CollectiveKind::ReduceScatter);
  WatchedWait watched(call);
  check_collective(MPI_Reduce_scatter_block(in.raw(), out.raw(), count_of(out), mpi_type(in),
                                            MPI_SUM, comm_),
                   call, "MPI_Reduce_scatter_block");
}

void MpiCommunicator::broadcast(Tensor& x, int root) {
  check_host(x);
  count(Kind::Broadcast, x.nbytes());
  const CollectiveCall call = next_call(CollectiveKind::Broadcast);
  WatchedWait watched(call);
  check_collective(MPI_Bcast(x.raw(), count_of(x), mpi_type(x), root, comm_), call, "MPI_Bcast");
}

void MpiCommunicator::barrier() {
  const CollectiveCall call = next_call(CollectiveKind::Barrier);
  WatchedWait watched(call);
  check_collective(MPI_Barrier(comm_), call, "MPI_Barrier");
}

std::unique_ptr<Request> MpiCommunicator::all_reduce_async(Tensor& x) {
  check_host(x);
  count(Kind::AllReduce, x.nbytes());
  CollectiveCall call = next_call(CollectiveKind::AllReduce);
  MPI_Request req = MPI_REQUEST_NULL;
  check_collective(MPI_Iallreduce(MPI_IN_PLACE, x.raw(), count_of(x), mpi_type(x), MPI_SUM, comm_, &req),
                   call, "MPI_Iallreduce");
  return std::make_unique<MpiRequest>(req, std::move(call));
}

std::unique_ptr<Request> MpiCommunicator::all_gather_async(Tensor& out, const Tensor& in) {
  check_host(out);
  check_host(in);
  RETORT_CHECK(out.numel() == in.numel() * size_, "all_gather_async: size mismatch");
  count(Kind::AllGather, in.nbytes());
  CollectiveCall call = next_call(CollectiveKind::AllGather);
  MPI_Request req = MPI_REQUEST_NULL;
  check_collective(MPI_Iallgather(in.raw(), count_of(in), mpi_type(in), out.raw(), count_of(in),
                                  mpi_type(in), comm_, &req),
                   call, "MPI_Iallgather");
  return std::make_unique<MpiRequest>(req, std::move(call));
}

std::unique_ptr<Request> MpiCommunicator::reduce_scatter_async(Tensor& out, const Tensor& in) {
  check_host(out);
  check_host(in);
  RETORT_CHECK(in.numel() == out.numel() * size_, "reduce_scatter_async: size mismatch");
  count(Kind::ReduceScatter, in.nbytes());
  CollectiveCall call = next_call(CollectiveKind::ReduceScatter);
  MPI_Request req = MPI_REQUEST_NULL;
  check_collective(MPI_Ireduce_scatter_block(in.raw(), out.raw(), count_of(out), mpi_type(in),
                                             MPI_SUM, comm_, &req),
                   call, "MPI_Ireduce_scatter_block");
  return std::make_unique<MpiRequest>(req, std::move(call));
}

}  // namespace retort
