#include "core/safetensors.h"

#include <cstdint>
#include <nlohmann/json.hpp>

#include "core/fs.h"

namespace retort {

void write_safetensors(const std::string& path, const std::vector<NamedTensor>& tensors,
                       SafetensorsDType dtype) {
  static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors is little-endian");
  const size_t elem = dtype == SafetensorsDType::BF16 ? 2 : 4;
  nlohmann::json header = {{"__metadata__", {{"format", "pt"}}}};
  uint64_t offset = 0;
  for (const auto& t : tensors) {
    RETORT_CHECK(t.tensor.dtype() == DType::F32, t.name, ": safetensors export takes float32");
    if (header.contains(t.name)) throw Error(str_cat(path, ": tensor '", t.name, "' given twice"));
    const uint64_t bytes = uint64_t(t.tensor.numel()) * elem;
    header[t.name] = {{"dtype", elem == 2 ? "BF16" : "F32"},
                      {"shape", t.tensor.shape()},
                      {"data_offsets", {offset, offset + bytes}}};
    offset += bytes;
  }
  std::string text = header.dump();
  text.resize((text.size() + 7) / 8 * 8, ' ');
  const uint64_t n = text.size();

  fs::FileWriter out(path);
  out.write(&n, sizeof n);
  out.write(text.data(), text.size());
  std::vector<uint16_t> bf16;
  for (const auto& t : tensors) {
    const float* v = t.tensor.host<float>();
    const int64_t count = t.tensor.numel();
    if (elem == 4) {
      out.write(v, size_t(count) * 4);
      continue;
    }
    constexpr int64_t kChunk = 1 << 20;  // elements converted per write
    for (int64_t i = 0; i < count; i += kChunk) {
      const int64_t m = std::min(kChunk, count - i);
      bf16.resize(size_t(m));
      for (int64_t j = 0; j < m; ++j) bf16[size_t(j)] = f32_to_bf16(v[i + j]);
      out.write(bf16.data(), size_t(m) * 2);
    }
  }
  out.close();
}

}  // namespace retort
