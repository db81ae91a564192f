// The safetensors format (Hugging Face): how `retort export --format hf` writes a model.
//   bytes 0..7   N, the header's length (little-endian u64)
//   bytes 8..    the header: JSON {name: {"dtype": "F32"|"BF16", "shape": [...],
//                "data_offsets": [begin, end]}, "__metadata__": {"format": "pt"}}, padded
//                with spaces so the data starts at a multiple of 8
//   then         the tensors' bytes, row-major, little-endian, one after another in the
//                order given (offsets count from the first data byte)
#pragma once
#include <string>
#include <vector>

#include "core/checkpoint.h"

namespace retort {

enum class SafetensorsDType { F32, BF16 };

// Writes host float32 tensors to `path` as `dtype` (BF16: rounded to nearest even). Streams
// tensor by tensor; an Error names the file on failure (the caller removes the partial file).
void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       SafetensorsDType dtype);

}  // namespace retort
