// Tensor: a contiguous, row-major view (shape, dtype, offset) into shared device storage.
// Copies share storage; Tensor::empty/zeros allocate. Kernels and ops take Tensors; only
// core/ touches raw memory.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/check.h"

namespace retort {

enum class DType : uint8_t { F32, BF16, I32 };
enum class Device : uint8_t { CPU, CUDA };
using Shape = std::vector<int64_t>;

size_t dtype_size(DType t);
const char* dtype_name(DType t);
std::string shape_str(const Shape& s);
int64_t shape_numel(const Shape& s);

// Owns `bytes` bytes on one device (64-byte aligned on the CPU; the CUDA backend's
// stream-ordered pool on the GPU, see core/device.h), or a read-only mapping of part of a file
// (Tensor::map_file; unmapped when the last tensor on it goes).
struct Storage {
  Storage(size_t bytes, Device device);
  Storage(const std::string& path, size_t offset, size_t bytes);  // mapped; throws naming path
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  void* data = nullptr;
  size_t bytes = 0;
  Device device;
  void* map_base = nullptr;  // the mapping (page-aligned, at or before data); null: allocated
  size_t map_length = 0;
};

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<uint16_t>() { return DType::BF16; }  // raw bf16 bits

class Tensor {
 public:
  Tensor() = default;
  static Tensor empty(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  // A read-only host tensor over the bytes [offset, offset + numel · size) of the file at
  // `path`, memory-mapped: pages are read on first touch and shared by every process that maps
  // the file (one copy per node in the page cache). Writing through it faults. The file must
  // not be rewritten in place while mapped (renaming a new file over it is safe).
  static Tensor map_file(const std::string& path, int64_t offset, const Shape& shape, DType dtype);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return static_cast<int>(shape_.size()); }
  int64_t dim(int i) const;  // negative i counts from the end
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return numel() * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device : Device::CPU; }

  // A copy on `target` (host <-> GPU or same device).
  Tensor to(Device target) const;
  // Same storage, new shape with the same numel.
  Tensor view(const Shape& shape) const;
  // Rows [begin, end) along dim 0 (contiguous sub-range of storage).
  Tensor slice(int64_t begin, int64_t end) const;
  // Flat elements [begin, begin + n) as a 1-D tensor.
  Tensor flat(int64_t begin, int64_t n) const;
  // Same start, any shape: may reach past this view into the rest of its storage (checked
  // against the storage's size). Tensors laid out one after another, seen as one (e.g. the q,
  // k and v weights stacked as one matrix for a single product).
  Tensor span(const Shape& shape) const;

  void* raw() const { return static_cast<char*>(storage_->data) + offset_ * dtype_size(dtype_); }
  template <class T> T* data() const {
    RETORT_CHECK(dtype_of<T>() == dtype_, "tensor dtype is ", dtype_name(dtype_));
    return static_cast<T*>(raw());
  }
  // Host pointer; checks that the tensor lives in host memory.
  template <class T> T* host() const {
    RETORT_CHECK(device() == Device::CPU, "tensor is not in host memory");
    return data<T>();
  }
  bool same_storage(const Tensor& o) const { return storage_ == o.storage_; }
  bool is_mapped() const { return storage_ && storage_->map_base; }  // by map_file

 private:
  std::shared_ptr<Storage> storage_;
  int64_t offset_ = 0;  // in elements
  Shape shape_;
  DType dtype_ = DType::F32;
};

// Matrices [r_i, c] that lie one after another in one storage, as one [Σ r_i, c] view (the q,
// k, v weights of a layer for one product), or vectors [n_i] as one [Σ n_i] (their biases);
// undefined when any part is undefined or they do not.
Tensor stack_rows(const std::vector<Tensor>& parts);

// bf16 <-> f32 (round to nearest even).
uint16_t f32_to_bf16(float x);
float bf16_to_f32(uint16_t x);

}  // namespace retort
