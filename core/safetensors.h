// The safetensors format (Hugging Face): how `retort export --format hf` writes a model and
// how a transformers directory is read as a checkpoint.
//   bytes 0..7   N, the header's length (little-endian u64)
//   bytes 8..    the header: JSON {name: {"dtype": "F32"|"BF16", "shape": [...],
//                "data_offsets": [begin, end]}, "__metadata__": {"format": "pt"}}, padded
//                with spaces so the data starts at a multiple of 8
//   then         the tensors' bytes, row-major, little-endian, one after another in the
//                order given (offsets count from the first data byte)
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/checkpoint.h"

namespace retort {

enum class SafetensorsDType { F32, BF16 };

// Writes host float32 tensors to `path` as `dtype` (BF16: rounded to nearest even). Streams
// tensor by tensor; an Error names the file on failure (the caller removes the partial file).
void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       SafetensorsDType dtype);

// A safetensors file opened for reading. open() reads and validates the header only (any
// file, hostile ones included: its length within the file and at most 100 MB, JSON, each
// entry a known dtype, a shape of non-negative sizes, data_offsets [begin, end] inside the
// data with end - begin = numel · the dtype's size; the header's own metadata ignored), and
// throws an Error naming the file and tensor otherwise.
class SafetensorsFile {
 public:
  struct Entry {
    std::string dtype;  // "F32" | "BF16" | "F16"
    Shape shape;
    uint64_t begin = 0, end = 0;  // byte range within the data
  };
  static SafetensorsFile open(const std::string& path);
  const std::string& path() const { return path_; }
  const std::map<std::string, Entry>& entries() const { return entries_; }
  // Tensor `name` converted to float32 into `out` (entries().at(name)'s numel values).
  void read_f32(const std::string& name, float* out) const;

 private:
  std::string path_;
  uint64_t data_start_ = 0;
  std::map<std::string, Entry> entries_;
};

}  // namespace retort
