#include "parallel/mpi_communicator.h"

#include <exception>
#include <string>

namespace retort {

namespace {

// bfloat16 over MPI. MPI has no bfloat16 type, so bf16 tensors travel as a 2-byte type of our
// own and are summed by a user-defined op: inout[i] ← bf16(f32(in[i]) + f32(inout[i])), rounded
// to nearest even (core/tensor.h), so every partial sum is rounded to bf16 as NCCL's ncclBfloat16
// sum does. The op is declared commutative (a + b and b + a are the same float, hence the same
// bf16), so MPI may combine the ranks' contributions in any tree: the association, and with it
// the rounding, is MPI's choice, not ours. Open MPI 4.1 picks its algorithm from the group size,
// the message size and the op's commutativity only (coll/tuned's fixed decision rules for the
// blocking calls, coll/libnbc's for the non-blocking ones), and each algorithm combines the ranks
// in an order fixed by their ranks, not by arrival, so a job on the same number of ranks gets the
// same bits every time, and every rank the same bits (tests/mpi/test_communicator.cpp checks
// both). A different group size, MPI library or coll tuning parameters may round differently.
void bf16_sum(void* in, void* inout, int* len, MPI_Datatype*) {
  const auto* a = static_cast<const uint16_t*>(in);
  auto* b = static_cast<uint16_t*>(inout);
  for (int i = 0; i < *len; ++i) b[i] = f32_to_bf16(bf16_to_f32(a[i]) + bf16_to_f32(b[i]));
}

struct Bf16Mpi {
  MPI_Datatype type;
  MPI_Op sum;
};

// Made on first use (after MPI_Init), once per process, and never freed (MPI allows that).
const Bf16Mpi& bf16_mpi() {
  static const Bf16Mpi made = [] {
    Bf16Mpi m;
    MPI_Type_contiguous(2, MPI_BYTE, &m.type);
    MPI_Type_set_name(m.type, "retort_bfloat16");
    MPI_Type_commit(&m.type);
    MPI_Op_create(&bf16_sum, /*commute=*/1, &m.sum);
    return m;
  }();
  return made;
}

MPI_Datatype mpi_type(const Tensor& t) {
  switch (t.dtype()) {
    case DType::F32: return MPI_FLOAT;
    case DType::I32: return MPI_INT32_T;
    case DType::BF16: return bf16_mpi().type;
  }
  throw Error(str_cat("MPI collectives: unsupported tensor type ", dtype_name(t.dtype())));
}

MPI_Op mpi_op(const Tensor& t, ReduceOp op) {
  if (t.dtype() != DType::BF16) return op == ReduceOp::Sum ? MPI_SUM : MPI_MAX;
  RETORT_CHECK(op == ReduceOp::Sum, "MPI collectives reduce bfloat16 tensors by sum only");
  return bf16_mpi().sum;
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
                                 mpi_op(x, op), comm_),
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
                                            mpi_op(in, ReduceOp::Sum), comm_),
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
  check_collective(MPI_Iallreduce(MPI_IN_PLACE, x.raw(), count_of(x), mpi_type(x),
                                  mpi_op(x, ReduceOp::Sum), comm_, &req),
                   call, "MPI_Iallreduce");
  return std::make_unique<MpiRequest>(req, std::move(call));
}

std::unique_ptr<Request> MpiCommunicator::all_gather_async(Tensor& out, const Tensor& in) {
  check_host(out);
  check_host(in);
  RETORT_CHECK(out.numel() == in.numel() * size_ && out.dtype() == in.dtype(), "all_gather_async: size mismatch");
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
  RETORT_CHECK(in.numel() == out.numel() * size_ && out.dtype() == in.dtype(), "reduce_scatter_async: size mismatch");
  count(Kind::ReduceScatter, in.nbytes());
  CollectiveCall call = next_call(CollectiveKind::ReduceScatter);
  MPI_Request req = MPI_REQUEST_NULL;
  check_collective(MPI_Ireduce_scatter_block(in.raw(), out.raw(), count_of(out), mpi_type(in),
                                             mpi_op(in, ReduceOp::Sum), comm_, &req),
                   call, "MPI_Ireduce_scatter_block");
  return std::make_unique<MpiRequest>(req, std::move(call));
}

}  // namespace retort
