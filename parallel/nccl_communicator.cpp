#include "parallel/nccl_communicator.h"

#include <nccl.h>

#include <cstring>

#include "core/cuda/runtime.h"
#include "parallel/mpi_communicator.h"

namespace retort {

namespace {

#define RETORT_NCCL_CHECK(expr)                                                               \
  do {                                                                                        \
    const ncclResult_t r_ = (expr);                                                           \
    if (r_ != ncclSuccess)                                                                    \
      throw Error(str_cat(__FILE__, ":", __LINE__, ": NCCL error ", int(r_), " (",            \
                          ncclGetErrorString(r_), ") in `" #expr "`",                         \
                          r_ == ncclSystemError || r_ == ncclRemoteError                      \
                              ? std::string("; last: ") + ncclGetLastError(nullptr)           \
                              : std::string()));                                              \
  } while (0)

ncclDataType_t nccl_type(const Tensor& t) {
  switch (t.dtype()) {
    case DType::F32: return ncclFloat32;
    case DType::BF16: return ncclBfloat16;
    case DType::I32: return ncclInt32;
  }
  return ncclFloat32;
}

bool on_gpu(const Tensor& t) { return t.device() == Device::CUDA; }

// A collective queued on the communication stream; wait() orders the compute stream after it.
class NcclRequest : public Request {
 public:
  NcclRequest() { RETORT_CUDA_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming)); }
  ~NcclRequest() override { cudaEventDestroy(done_); }
  void record() { RETORT_CUDA_CHECK(cudaEventRecord(done_, cuda::comm_stream())); }
  void wait() override { RETORT_CUDA_CHECK(cudaStreamWaitEvent(cuda::compute_stream(), done_, 0)); }
  bool test() override {
    const cudaError_t e = cudaEventQuery(done_);
    if (e == cudaErrorNotReady) return false;
    RETORT_CUDA_CHECK(e);
    return true;
  }

 private:
  cudaEvent_t done_ = nullptr;
};

// A host-tensor request that is already complete (the MPI fallback runs blocking).
class DoneRequest : public Request {
 public:
  void wait() override {}
  bool test() override { return true; }
};

}  // namespace

struct NcclCommunicator::Impl {
  ncclComm_t comm = nullptr;
  int end_hook = -1;  // ncclCommAbort when the watchdog ends the job
  MpiCommunicator* mpi = nullptr;  // host_ when it is one: numbers the collectives

  // After queuing a collective on the communication stream: the watchdog sees it pending until
  // an event recorded behind it completes, so a stalled peer cannot hang the stream unseen.
  void watch(CollectiveKind kind) {
    if (!mpi || !collective_watchdog_running()) return;
    const CollectiveCall call = mpi->next_call(kind);
    cudaEvent_t ev;
    RETORT_CUDA_CHECK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    RETORT_CUDA_CHECK(cudaEventRecord(ev, cuda::comm_stream()));
    auto event = std::shared_ptr<CUevent_st>(ev, [](cudaEvent_t e) { cudaEventDestroy(e); });
    // Polled (and destroyed) on the watchdog thread, whose current device is its own setting.
    const int device = cuda::current_device();
    watch_queued_collective(call, [event, device] {
      cudaSetDevice(device);
      return cudaEventQuery(event.get()) != cudaErrorNotReady;
    });
  }
};

NcclCommunicator::NcclCommunicator(std::shared_ptr<Communicator> host)
    : host_(std::move(host)), impl_(std::make_unique<Impl>()) {
  impl_->mpi = dynamic_cast<MpiCommunicator*>(host_.get());
  ncclUniqueId id;
  static_assert(sizeof id % 4 == 0);
  Tensor buf = Tensor::empty({int64_t(sizeof id / 4)}, DType::I32);
  if (host_->rank() == 0) {
    RETORT_NCCL_CHECK(ncclGetUniqueId(&id));
    std::memcpy(buf.host<int32_t>(), &id, sizeof id);
  }
  host_->broadcast(buf, 0);
  std::memcpy(&id, buf.host<int32_t>(), sizeof id);
  RETORT_NCCL_CHECK(ncclCommInitRank(&impl_->comm, host_->size(), id, host_->rank()));
  impl_->end_hook = add_job_end_hook([comm = impl_->comm] { ncclCommAbort(comm); });
}

NcclCommunicator::~NcclCommunicator() {
  if (!impl_ || !impl_->comm) return;
  remove_job_end_hook(impl_->end_hook);
  ncclCommDestroy(impl_->comm);
}

void NcclCommunicator::all_reduce(Tensor& x, ReduceOp op) {
  count(Kind::AllReduce, int64_t(x.nbytes()));
  if (!on_gpu(x)) return host_->all_reduce(x, op);
  cuda::comm_waits_for_compute();
  RETORT_NCCL_CHECK(ncclAllReduce(x.raw(), x.raw(), size_t(x.numel()), nccl_type(x),
                                  op == ReduceOp::Sum ? ncclSum : ncclMax, impl_->comm,
                                  cuda::comm_stream()));
  impl_->watch(CollectiveKind::AllReduce);
  cuda::compute_waits_for_comm();
}

void NcclCommunicator::all_gather(Tensor& out, const Tensor& in) {
  RETORT_CHECK(out.numel() == in.numel() * size() && out.dtype() == in.dtype(),
               "all_gather: out must hold size() x in elements of the same dtype");
  count(Kind::AllGather, int64_t(in.nbytes()));
  if (!on_gpu(in)) return host_->all_gather(out, in);
  RETORT_CHECK(on_gpu(out), "all_gather: in is on the GPU but out is not");
  cuda::comm_waits_for_compute();
  RETORT_NCCL_CHECK(ncclAllGather(in.raw(), out.raw(), size_t(in.numel()), nccl_type(in),
                                  impl_->comm, cuda::comm_stream()));
  impl_->watch(CollectiveKind::AllGather);
  cuda::compute_waits_for_comm();
}

void NcclCommunicator::reduce_scatter(Tensor& out, const Tensor& in) {
  RETORT_CHECK(in.numel() == out.numel() * size() && out.dtype() == in.dtype(),
               "reduce_scatter: in must hold size() x out elements of the same dtype");
  count(Kind::ReduceScatter, int64_t(in.nbytes()));
  if (!on_gpu(in)) return host_->reduce_scatter(out, in);
  RETORT_CHECK(on_gpu(out), "reduce_scatter: in is on the GPU but out is not");
  cuda::comm_waits_for_compute();
  RETORT_NCCL_CHECK(ncclReduceScatter(in.raw(), out.raw(), size_t(out.numel()), nccl_type(in),
                                      ncclSum, impl_->comm, cuda::comm_stream()));
  impl_->watch(CollectiveKind::ReduceScatter);
  cuda::compute_waits_for_comm();
}

void NcclCommunicator::broadcast(Tensor& x, int root) {
  count(Kind::Broadcast, int64_t(x.nbytes()));
  if (!on_gpu(x)) return host_->broadcast(x, root);
  cuda::comm_waits_for_compute();
  RETORT_NCCL_CHECK(ncclBroadcast(x.raw(), x.raw(), size_t(x.numel()), nccl_type(x), root,
                                  impl_->comm, cuda::comm_stream()));
  impl_->watch(CollectiveKind::Broadcast);
  cuda::compute_waits_for_comm();
}

void NcclCommunicator::barrier() {
  cuda::synchronize();
  host_->barrier();
}

std::unique_ptr<Request> NcclCommunicator::all_reduce_async(Tensor& x) {
  if (!on_gpu(x)) {
    all_reduce(x);
    return std::make_unique<DoneRequest>();
  }
  count(Kind::AllReduce, int64_t(x.nbytes()));
  auto req = std::make_unique<NcclRequest>();
  cuda::comm_waits_for_compute();
  RETORT_NCCL_CHECK(ncclAllReduce(x.raw(), x.raw(), size_t(x.numel()), nccl_type(x), ncclSum,
                                  impl_->comm, cuda::comm_stream()));
  impl_->watch(CollectiveKind::AllReduce);
  req->record();
  return req;
}

std::unique_ptr<Request> NcclCommunicator::all_gather_async(Tensor& out, const Tensor& in) {
  if (!on_gpu(in)) {
    all_gather(out, in);
    return std::make_unique<DoneRequest>();
  }
  RETORT_CHECK(out.numel() == in.numel() * size() && on_gpu(out) && out.dtype() == in.dtype(),
               "all_gather_async: out must be a GPU tensor of size() x in elements");
  count(Kind::AllGather, int64_t(in.nbytes()));
  auto req = std::make_unique<NcclRequest>();
  cuda::comm_waits_for_compute();
  RETORT_NCCL_CHECK(ncclAllGather(in.raw(), out.raw(), size_t(in.numel()), nccl_type(in),
                                  impl_->comm, cuda::comm_stream()));
  impl_->watch(CollectiveKind::AllGather);
  req->record();
  return req;
}

std::unique_ptr<Request> NcclCommunicator::reduce_scatter_async(Tensor& out, const Tensor& in) {
  if (!on_gpu(in)) {
    reduce_scatter(out, in);
    return std::make_unique<DoneRequest>();
  }
  RETORT_CHECK(in.numel() == out.numel() * size() && on_gpu(out) && out.dtype() == in.dtype(),
               "reduce_scatter_async: out must be a GPU tensor of in / size() elements");
  count(Kind::ReduceScatter, int64_t(in.nbytes()));
  auto req = std::make_unique<NcclRequest>();
  cuda::comm_waits_for_compute();
  RETORT_NCCL_CHECK(ncclReduceScatter(in.raw(), out.raw(), size_t(out.numel()), nccl_type(in),
                                      ncclSum, impl_->comm, cuda::comm_stream()));
  impl_->watch(CollectiveKind::ReduceScatter);
  req->record();
  return req;
}

}  // namespace retort
