#include "parallel/communicator.h"

#include "core/ops.h"

namespace retort {

namespace {

// A bf16 collective in flight on temporary buffers: `wire` holds the bf16 result (and, for a
// reduce-scatter, `send` the bf16 input); wait() converts the result into the fp32 `dst`.
class Bf16GradRequest : public Request {
 public:
  Bf16GradRequest(Tensor dst, Tensor wire, Tensor send = Tensor())
      : dst_(std::move(dst)), wire_(std::move(wire)), send_(std::move(send)) {}
  void start(std::unique_ptr<Request> inner) { inner_ = std::move(inner); }
  void wait() override {
    if (!inner_) return;
    inner_->wait();
    inner_.reset();
    ops::convert(dst_, wire_);  // fp32 ← bf16 (exact)
  }
  bool test() override { return !inner_ || inner_->test(); }

 private:
  Tensor dst_, wire_, send_;
  std::unique_ptr<Request> inner_;  // declared last: destroyed (and waited for) before the buffers
};

Tensor bf16_like(const Tensor& t) { return Tensor::empty({t.numel()}, DType::BF16, t.device()); }

void check_f32_grads(const char* what, const Tensor& t) {
  RETORT_CHECK(t.dtype() == DType::F32, what, ": gradients must be float32, got ", dtype_name(t.dtype()));
}

}  // namespace

void all_reduce_grads(Communicator& comm, Tensor& grads, GradReduce precision) {
  check_f32_grads("all_reduce_grads", grads);
  if (precision == GradReduce::F32) return comm.all_reduce(grads);
  Tensor wire = bf16_like(grads);
  ops::convert(wire, grads);  // bf16 ← fp32, round to nearest even
  comm.all_reduce(wire);
  ops::convert(grads, wire);  // fp32 ← bf16 (exact)
}

std::unique_ptr<Request> all_reduce_grads_async(Communicator& comm, Tensor& grads, GradReduce precision) {
  check_f32_grads("all_reduce_grads_async", grads);
  if (precision == GradReduce::F32) return comm.all_reduce_async(grads);
  Tensor wire = bf16_like(grads);
  ops::convert(wire, grads);  // bf16 ← fp32, round to nearest even
  auto req = std::make_unique<Bf16GradRequest>(grads, wire);
  req->start(comm.all_reduce_async(wire));
  return req;
}

std::unique_ptr<Request> reduce_scatter_grads_async(Communicator& comm, Tensor& out, const Tensor& in,
                                                    GradReduce precision) {
  check_f32_grads("reduce_scatter_grads_async", out);
  check_f32_grads("reduce_scatter_grads_async", in);
  if (precision == GradReduce::F32) return comm.reduce_scatter_async(out, in);
  Tensor send = bf16_like(in), wire = bf16_like(out);
  ops::convert(send, in);
  auto req = std::make_unique<Bf16GradRequest>(out, wire, send);
  req->start(comm.reduce_scatter_async(wire, send));
  return req;
}

double sum_over_ranks(Communicator& comm, double x) {
  if (comm.size() == 1) return x;
  Tensor mine = Tensor::empty({2}), all = Tensor::empty({2 * int64_t(comm.size())});
  mine.host<float>()[0] = static_cast<float>(x);
  mine.host<float>()[1] = static_cast<float>(x - double(mine.host<float>()[0]));
  comm.all_gather(all, mine);
  double total = 0;
  for (int r = 0; r < comm.size(); ++r)
    total += double(all.host<float>()[2 * r]) + double(all.host<float>()[2 * r + 1]);
  return total;
}

}  // namespace retort
