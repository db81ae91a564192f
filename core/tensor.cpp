#include "core/tensor.h"

#include "core/cpu/bf16.h"
#include "core/device.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace retort {

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32: return 4;
    case DType::BF16: return 2;
    case DType::I32: return 4;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32: return "float32";
    case DType::BF16: return "bfloat16";
    case DType::I32: return "int32";
  }
  return "?";
}

std::string shape_str(const Shape& s) {
  std::ostringstream os;
  os << "[";
  for (size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << "]";
  return os.str();
}

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

Storage::Storage(size_t nbytes, Device dev) : bytes(nbytes), device(dev) {
  if (dev == Device::CUDA) {
    data = device::gpu_allocate(nbytes);
    return;
  }
  size_t rounded = (nbytes + 63) / 64 * 64;
  data = std::aligned_alloc(64, rounded ? rounded : 64);
  RETORT_CHECK(data != nullptr, "out of host memory allocating ", nbytes, " bytes");
}

Storage::Storage(const std::string& path, size_t offset, size_t nbytes)
    : bytes(nbytes), device(Device::CPU) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(str_cat(path, ": cannot open for mapping: ", std::strerror(errno)));
  struct stat st {};
  const bool sized = ::fstat(fd, &st) == 0;
  if (!sized || offset + nbytes > size_t(st.st_size) || offset + nbytes < offset) {
    ::close(fd);
    throw Error(str_cat(path, ": bytes [", offset, ", ", offset + nbytes, ") are not all in the file (",
                        sized ? str_cat(st.st_size, " bytes)") : str_cat("fstat: ", std::strerror(errno), ")")));
  }
  const size_t page = size_t(::sysconf(_SC_PAGESIZE));
  const size_t start = offset / page * page;
  map_length = std::max<size_t>(1, offset + nbytes - start);
  void* p = ::mmap(nullptr, map_length, PROT_READ, MAP_SHARED, fd, off_t(start));
  const int err = errno;
  ::close(fd);  // the mapping keeps the file open
  if (p == MAP_FAILED) throw Error(str_cat(path, ": cannot map ", nbytes, " bytes: ", std::strerror(err)));
  map_base = p;
  data = static_cast<char*>(p) + (offset - start);
}

Storage::~Storage() {
  if (map_base) {
    ::munmap(map_base, map_length);
    return;
  }
  if (device == Device::CUDA) {
    try {
      device::gpu_release(data);
    } catch (...) {  // a destructor must not throw; the pool is torn down with the context
    }
    return;
  }
  std::free(data);
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  size_t bytes = dtype_size(dtype);  // numel · dtype size, refusing overflow (a wrapped size
  for (int64_t d : shape) {          // would under-allocate and let readers write past it)
    RETORT_CHECK(d >= 0, "negative dimension in shape ", shape_str(shape));
    RETORT_CHECK(!__builtin_mul_overflow(bytes, size_t(d), &bytes) && bytes <= size_t(INT64_MAX),
                 "shape ", shape_str(shape), " is too large to allocate");
  }
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.storage_ = std::make_shared<Storage>(bytes, device);
  return t;
}

Tensor Tensor::map_file(const std::string& path, int64_t offset, const Shape& shape, DType dtype) {
  RETORT_CHECK(offset >= 0, "negative offset mapping ", path);
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  RETORT_CHECK(t.numel() >= 0, "negative dimension in shape ", shape_str(shape));
  t.storage_ = std::make_shared<Storage>(path, size_t(offset), t.nbytes());
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  device::zero_bytes(t.raw(), device, t.nbytes());
  return t;
}

Tensor Tensor::to(Device target) const {
  RETORT_CHECK(defined(), "to(): undefined tensor");
  Tensor t = empty(shape_, dtype_, target);
  device::copy_bytes(t.raw(), target, raw(), device(), nbytes());
  return t;
}

int64_t Tensor::dim(int i) const {
  int n = ndim();
  if (i < 0) i += n;
  RETORT_CHECK(i >= 0 && i < n, "dim ", i, " out of range for shape ", shape_str(shape_));
  return shape_[i];
}

Tensor Tensor::view(const Shape& shape) const {
  RETORT_CHECK(shape_numel(shape) == numel(), "cannot view ", shape_str(shape_), " as ",
               shape_str(shape));
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  RETORT_CHECK(ndim() >= 1 && 0 <= begin && begin <= end && end <= shape_[0],
               "slice [", begin, ", ", end, ") out of range for ", shape_str(shape_));
  int64_t row = numel() / (shape_[0] ? shape_[0] : 1);
  Tensor t = *this;
  t.shape_[0] = end - begin;
  t.offset_ += begin * row;
  return t;
}

Tensor Tensor::flat(int64_t begin, int64_t n) const {
  RETORT_CHECK(begin >= 0 && n >= 0 && begin + n <= numel(), "flat range out of bounds");
  Tensor t = *this;
  t.shape_ = {n};
  t.offset_ += begin;
  return t;
}

Tensor Tensor::span(const Shape& shape) const {
  RETORT_CHECK(defined(), "span of an undefined tensor");
  const int64_t n = shape_numel(shape);
  RETORT_CHECK(n >= 0 && size_t(offset_ + n) * dtype_size(dtype_) <= storage_->bytes, "span ",
               shape_str(shape), " reaches past the end of its storage");
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor stack_rows(const std::vector<Tensor>& parts) {
  if (parts.empty() || !parts[0].defined() || (parts[0].ndim() != 2 && parts[0].ndim() != 1))
    return Tensor();
  const Tensor& first = parts[0];
  const char* next = static_cast<const char*>(first.raw());
  int64_t rows = 0;
  for (const Tensor& t : parts) {
    if (!t.defined() || !t.same_storage(first) || t.ndim() != first.ndim() ||
        (t.ndim() == 2 && t.dim(1) != first.dim(1)) || t.raw() != next)
      return Tensor();
    next += t.nbytes();
    rows += t.dim(0);
  }
  return first.ndim() == 1 ? first.span({rows}) : first.span({rows, first.dim(1)});
}

uint16_t f32_to_bf16(float x) { return cpu::round_to_bf16(x); }

float bf16_to_f32(uint16_t x) { return cpu::load(&x); }

}  // namespace retort
