// safetensors (core/safetensors.h): the writer's bytes as the format defines them, float32 and
// bfloat16; the reader's F16 and BF16 conversions against known values; headers it refuses.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/safetensors.h"
#include "test_support.h"

using namespace retort;
namespace stdfs = std::filesystem;

namespace {

std::string temp_path(const std::string& name) {
  return (stdfs::temp_directory_path() / ("retort_safetensors_" + name)).string();
}

// A file of the given header (JSON text, unpadded) and data bytes.
std::string write_raw(const std::string& name, const std::string& header, const std::string& data) {
  const std::string path = temp_path(name);
  std::ofstream f(path, std::ios::binary);
  const uint64_t n = header.size();
  f.write(reinterpret_cast<const char*>(&n), 8);
  f << header << data;
  return path;
}

std::string u16_bytes(std::initializer_list<uint16_t> v) {
  std::string s;
  for (uint16_t x : v) s.append(reinterpret_cast<const char*>(&x), 2);
  return s;
}

}  // namespace

TEST(Safetensors, WriterLaysOutHeaderAndDataAsTheFormatSays) {
  Tensor a = Tensor::empty({2, 3}), b = Tensor::empty({4});
  for (int i = 0; i < 6; ++i) a.host<float>()[i] = 0.25f * float(i) - 1.0f;
  for (int i = 0; i < 4; ++i) b.host<float>()[i] = 1.0f + std::ldexp(1.0f, -9) * float(i);  // rounds in bf16
  for (auto dtype : {SafetensorsDType::F32, SafetensorsDType::BF16}) {
    const std::string path = temp_path("writer");
    write_safetensors(path, {{"w.a", a}, {"w.b", b}}, dtype);
    std::ifstream in(path, std::ios::binary);
    const std::string blob((std::istreambuf_iterator<char>(in)), {});
    uint64_t n;
    std::memcpy(&n, blob.data(), 8);
    ASSERT_EQ(n % 8, 0u);  // the data starts 8-byte aligned
    const auto header = nlohmann::json::parse(blob.substr(8, n));
    const size_t elem = dtype == SafetensorsDType::F32 ? 4 : 2;
    EXPECT_EQ(header["__metadata__"]["format"], "pt");
    EXPECT_EQ(header["w.a"]["dtype"], elem == 4 ? "F32" : "BF16");
    EXPECT_EQ(header["w.a"]["shape"], nlohmann::json({2, 3}));
    EXPECT_EQ(header["w.a"]["data_offsets"], nlohmann::json({0, 6 * elem}));
    EXPECT_EQ(header["w.b"]["data_offsets"], nlohmann::json({6 * elem, 10 * elem}));
    ASSERT_EQ(blob.size(), 8 + n + 10 * elem);
    const char* data = blob.data() + 8 + n;
    for (int i = 0; i < 4; ++i) {
      const float want = b.host<float>()[i];
      if (elem == 4) {
        float got;
        std::memcpy(&got, data + 24 + 4 * i, 4);
        EXPECT_EQ(got, want);
      } else {
        uint16_t got;
        std::memcpy(&got, data + 12 + 2 * i, 2);
        EXPECT_EQ(got, f32_to_bf16(want));
      }
    }
    // and the reader gives back the values (bf16: rounded to nearest even)
    const SafetensorsFile f = SafetensorsFile::open(path);
    std::vector<float> back(4);
    f.read_f32("w.b", back.data());
    // 1 + i·2^-9 in bf16 (8 bits of mantissa, step 2^-7): 1 + 2^-8 is a tie, to the even 1
    const float expect_bf16[4] = {1.0f, 1.0f, 1.0f, 1.0f + std::ldexp(1.0f, -7)};
    for (int i = 0; i < 4; ++i) EXPECT_EQ(back[i], elem == 4 ? b.host<float>()[i] : expect_bf16[i]) << i;
    stdfs::remove(path);
  }
}

TEST(Safetensors, ReadsHalfAndBfloat16Exactly) {
  // F16: 1, -2.5, the smallest subnormal 2^-24, the largest normal 65504, 0x3555 ≈ 1/3
  // BF16: 1, -2.5, 2^-133 (a bf16 subnormal), 3.3895e38 (the largest finite)
  const std::string path = write_raw(
      "halves",
      R"({"h":{"dtype":"F16","shape":[5],"data_offsets":[0,10]},"b":{"dtype":"BF16","shape":[2,2],"data_offsets":[10,18]}})",
      u16_bytes({0x3C00, 0xC100, 0x0001, 0x7BFF, 0x3555}) + u16_bytes({0x3F80, 0xC020, 0x0001, 0x7F7F}));
  const SafetensorsFile f = SafetensorsFile::open(path);
  std::vector<float> h(5), b(4);
  f.read_f32("h", h.data());
  f.read_f32("b", b.data());
  EXPECT_EQ(h, (std::vector<float>{1.0f, -2.5f, std::ldexp(1.0f, -24), 65504.0f, 0.333251953125f}));
  EXPECT_EQ(b, (std::vector<float>{1.0f, -2.5f, std::ldexp(1.0f, -133), 0x1.FEp127f}));
  stdfs::remove(path);
}

TEST(Safetensors, RefusesHeadersThatDoNotDescribeTheFile) {
  const std::string eight(8, '\0');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "header is not JSON"},
      {"[1, 2]", "header is not a JSON object"},
      {R"({"t":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", "tensor 't': dtype F64"},
      {R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", "tensor 't': 8 bytes for shape [3] of F32"},
      {R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", "tensor 't': key 'data_offsets'"},
      {R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", "data_offsets must be [begin, end]"},
      {R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", "tensor 't': key 'shape'"},
      {R"({"t":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,8]}})", "exceeds the file"},
  };
  for (const auto& [header, why] : cases) {
    const std::string path = write_raw("bad", header, eight);
    const std::string err = test::error_of([&] { SafetensorsFile::open(path); });
    EXPECT_NE(err.find(path), std::string::npos) << err;
    EXPECT_NE(err.find(why), std::string::npos) << header << " -> " << err;
    stdfs::remove(path);
  }
  const std::string path = temp_path("short");
  { std::ofstream(path, std::ios::binary) << "abc"; }
  EXPECT_NE(test::error_of([&] { SafetensorsFile::open(path); }).find("shorter than its 8-byte header length"),
            std::string::npos);
  { std::ofstream f(path, std::ios::binary); const uint64_t n = 1000; f.write(reinterpret_cast<const char*>(&n), 8); f << "{}"; }
  EXPECT_NE(test::error_of([&] { SafetensorsFile::open(path); }).find("header length 1000 does not fit"),
            std::string::npos);
  stdfs::remove(path);
}
