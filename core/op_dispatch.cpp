#include "core/op_dispatch.h"

namespace retort::ops {

Device common_device(const char* op, std::initializer_list<const Tensor*> tensors) {
  const Device dev = (*tensors.begin())->device();
  for (const Tensor* t : tensors)
    RETORT_CHECK(t->device() == dev, op, ": tensors on different devices (",
                 dev == Device::CPU ? "cpu" : "cuda", " and ",
                 t->device() == Device::CPU ? "cpu" : "cuda", "); move them with Tensor::to()");
  return dev;
}

int64_t first_id_out_of_range(const Tensor& ids, int32_t lo, int32_t hi) {
#if RETORT_HAVE_CUDA
  if (ids.device() == Device::CUDA)
    return cuda::first_id_out_of_range(ids.data<int32_t>(), ids.numel(), lo, hi);
#endif
  const int32_t* p = ids.host<int32_t>();
  for (int64_t i = 0; i < ids.numel(); ++i)
    if (p[i] < lo || p[i] >= hi) return i;
  return -1;
}

}  // namespace retort::ops
