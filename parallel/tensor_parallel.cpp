#include "parallel/tensor_parallel.h"

#include <cstring>

#include "core/ops.h"

namespace retort {

namespace {
bool same(const Tensor& a, const Tensor& b) { return a.raw() == b.raw(); }
void copy_unless_same(Tensor& dst, const Tensor& src) {
  if (!same(dst, src)) ops::copy(dst, src);
}
}  // namespace

void TensorParallel::enter_forward(Tensor& full, const Tensor& local) {
  if (sp_) tp_->all_gather(full, local);
  else copy_unless_same(full, local);
}

void TensorParallel::enter_backward(Tensor& dlocal, Tensor& dfull) {
  if (sp_) {
    tp_->reduce_scatter(dlocal, dfull);
    return;
  }
  tp_->all_reduce(dfull);
  copy_unless_same(dlocal, dfull);
}

void TensorParallel::leave_forward(Tensor& local, Tensor& partial) {
  if (sp_) {
    tp_->reduce_scatter(local, partial);
    return;
  }
  tp_->all_reduce(partial);
  copy_unless_same(local, partial);
}

void TensorParallel::leave_backward(Tensor& dpartial, const Tensor& dlocal) {
  if (sp_) tp_->all_gather(dpartial, dlocal);
  else copy_unless_same(dpartial, dlocal);
}

void TensorParallel::all_reduce_sum(Tensor& x) { tp_->all_reduce(x); }

void TensorParallel::all_gather(Tensor& out, const Tensor& in) { tp_->all_gather(out, in); }

// Row slices concatenate in rank order; column slices arrive as [tp, rows, cols/tp] and are
// interleaved into [rows, cols]. The whole parameter is on local's device; on a GPU the
// interleave runs on a host copy (checkpoint plumbing, not the training step).
Tensor gather_tp_slices(Communicator& tp, const Parameter& p, const Tensor& local) {
  if (p.shard_dim < 0 || tp.size() == 1) return local;
  const Device dev = local.device();
  Tensor whole = Tensor::empty(p.global_shape, DType::F32, dev);
  if (p.shard_dim == 0) {
    tp.all_gather(whole, local);
    return whole;
  }
  Tensor parts = Tensor::empty({int64_t(tp.size()) * local.numel()}, DType::F32, dev);
  tp.all_gather(parts, local);
  const Tensor parts_h = dev == Device::CPU ? parts : parts.to(Device::CPU);
  Tensor whole_h = dev == Device::CPU ? whole : Tensor::empty(p.global_shape);
  const int64_t rows = p.shape[0], cols = p.shape[1], n = tp.size();
  const float* src = parts_h.host<float>();
  float* dst = whole_h.host<float>();
  for (int64_t r = 0; r < n; ++r)
    for (int64_t i = 0; i < rows; ++i)
      std::memcpy(dst + i * cols * n + r * cols, src + (r * rows + i) * cols, sizeof(float) * cols);
  if (dev != Device::CPU) ops::copy(whole, whole_h);  // host → GPU
  return whole;
}

void copy_tp_slice(Tensor& local, const Parameter& p, const Tensor& whole) {
  RETORT_CHECK(whole.shape() == p.global_shape && local.shape() == p.shape, "copy_tp_slice: ",
               p.name, " whole ", shape_str(whole.shape()), " local ", shape_str(local.shape()));
  if (p.shard_dim < 0) {
    ops::copy(local, whole);  // a transfer when the devices differ
    return;
  }
  if (local.device() != Device::CPU || whole.device() != Device::CPU) {  // slice on the host
    const Tensor whole_h = whole.device() == Device::CPU ? whole : whole.to(Device::CPU);
    Tensor local_h = Tensor::empty(p.shape);
    copy_tp_slice(local_h, p, whole_h);
    ops::copy(local, local_h);
    return;
  }
  const bool vector = p.shape.size() == 1;  // a bias: rows of one element
  const int64_t rows = p.shape[0], cols = vector ? 1 : p.shape[1],
                global_cols = vector ? 1 : p.global_shape[1];
  const float* src = whole.host<float>();
  float* dst = local.host<float>();
  if (p.shard_dim == 0) {
    std::memcpy(dst, src + p.shard_offset * cols, sizeof(float) * rows * cols);
    return;
  }
  for (int64_t i = 0; i < rows; ++i)
    std::memcpy(dst + i * cols, src + i * global_cols + p.shard_offset, sizeof(float) * cols);
}

}  // namespace retort
