#include "core/safetensors.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "core/json_fields.h"

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

namespace {

size_t dtype_bytes(const std::string& dtype) { return dtype == "F32" ? 4 : 2; }

// IEEE half → float (exact).
float f16_to_f32(uint16_t h) {
  const int exponent = (h >> 10) & 0x1F, mantissa = h & 0x3FF;
  float magnitude;
  if (exponent == 0) magnitude = std::ldexp(float(mantissa), -24);
  else if (exponent == 31) magnitude = mantissa ? NAN : INFINITY;
  else magnitude = std::ldexp(float(mantissa | 0x400), exponent - 25);
  return (h & 0x8000) ? -magnitude : magnitude;
}

std::ifstream open_binary(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(str_cat(path, ": cannot read: ", std::strerror(errno)));
  return in;
}

}  // namespace

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.path_ = path;
  std::ifstream in = open_binary(path);
  in.seekg(0, std::ios::end);
  const uint64_t size = uint64_t(in.tellg());
  in.seekg(0);
  uint64_t n = 0;
  if (size < 8 || !in.read(reinterpret_cast<char*>(&n), 8))
    throw Error(str_cat(path, ": not a safetensors file (shorter than its 8-byte header length)"));
  constexpr uint64_t kMaxHeader = 100 << 20;  // the safetensors library's own limit
  if (n > kMaxHeader || n > size - 8)
    throw Error(str_cat(path, ": header length ", n, " does not fit the file's ", size, " bytes"));
  std::string text(n, '\0');
  if (!in.read(text.data(), std::streamsize(n))) throw Error(str_cat(path, ": cannot read its header"));
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(path, ": header is not JSON: ", e.what()));
  }
  if (!header.is_object()) throw Error(str_cat(path, ": header is not a JSON object"));
  f.data_start_ = 8 + n;
  const uint64_t data_size = size - f.data_start_;
  for (const auto& [name, v] : header.items()) {
    if (name == "__metadata__") continue;
    const std::string where = str_cat(path, ": tensor '", name, "'");
    if (!v.is_object()) throw Error(str_cat(where, ": not an object"));
    Entry e;
    e.dtype = json_string(v, "dtype", where);
    if (e.dtype != "F32" && e.dtype != "BF16" && e.dtype != "F16")
      throw Error(str_cat(where, ": dtype ", e.dtype, " (retort reads F32, BF16 and F16)"));
    e.shape = json_int_list(v, "shape", where, 0, int64_t(1) << 40);
    const std::vector<int64_t> offsets =
        json_int_list(v, "data_offsets", where, 0, int64_t(data_size));
    if (offsets.size() != 2 || offsets[0] > offsets[1])
      throw Error(str_cat(where, ": data_offsets must be [begin, end] with begin <= end"));
    e.begin = uint64_t(offsets[0]);
    e.end = uint64_t(offsets[1]);
    uint64_t numel = 1;
    for (int64_t d : e.shape) {
      if (d != 0 && numel > data_size / uint64_t(d))
        throw Error(str_cat(where, ": shape ", shape_str(e.shape), " exceeds the file"));
      numel *= uint64_t(d);
    }
    if (e.end - e.begin != numel * dtype_bytes(e.dtype))
      throw Error(str_cat(where, ": ", e.end - e.begin, " bytes for shape ", shape_str(e.shape),
                          " of ", e.dtype));
    f.entries_.emplace(name, std::move(e));
  }
  return f;
}

void SafetensorsFile::read_f32(const std::string& name, float* out) const {
  const Entry& e = entries_.at(name);
  std::ifstream in = open_binary(path_);
  const size_t elem = dtype_bytes(e.dtype);
  const uint64_t count = (e.end - e.begin) / elem;
  constexpr uint64_t kChunk = 1 << 20;  // elements read per call
  std::vector<char> buf;
  in.seekg(std::streamoff(data_start_ + e.begin));
  for (uint64_t i = 0; i < count; i += kChunk) {
    const uint64_t m = std::min(kChunk, count - i);
    buf.resize(m * elem);
    if (!in.read(buf.data(), std::streamsize(buf.size())))
      throw Error(str_cat(path_, ": tensor '", name, "': cannot read its data"));
    if (elem == 4) {
      std::memcpy(out + i, buf.data(), m * 4);
      continue;
    }
    const bool bf16 = e.dtype == "BF16";
    for (uint64_t j = 0; j < m; ++j) {
      uint16_t h;
      std::memcpy(&h, &buf[j * 2], 2);
      out[i + j] = bf16 ? bf16_to_f32(h) : f16_to_f32(h);
    }
  }
}

}  // namespace retort
