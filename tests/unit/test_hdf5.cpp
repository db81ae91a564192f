// h5::File: round trips, type/rank validation, attributes, hyperslabs, h5py interop, errors.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <algorithm>

#include "core/hdf5.h"
#include "tests/unit/test_support.h"

using namespace retort;
using retort::test::error_of;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir() {
  fs::path d = fs::path(RETORT_BINARY_DIR) / "test_tmp" / "hdf5";
  fs::create_directories(d);
  return d;
}

bool has_h5py() { return std::system("/usr/bin/python3 -c 'import h5py' 2>/dev/null") == 0; }

}  // namespace

TEST(Hdf5, RoundTripTensorsAndVectors) {
  std::string path = (temp_dir() / "rt.h5").string();
  Tensor a = Tensor::empty({2, 3, 4}, DType::F32);
  for (int i = 0; i < 24; ++i) a.data<float>()[i] = 0.5f * i - 3;
  Tensor b = Tensor::empty({5}, DType::I32);
  for (int i = 0; i < 5; ++i) b.data<int32_t>()[i] = -7 * i;
  {
    h5::File f = h5::File::create(path);
    f.write("a", a);
    f.write("grp/b", b);
    f.write("off", std::vector<int64_t>{0, 5, 1ll << 40});
    f.write("fl", std::vector<float>{1.5f, 2.5f});
    f.write("empty", std::vector<int32_t>{});
    f.set_attr("name", std::string("héllo"));
    f.set_attr("n", int64_t(42));
    f.set_attr("x", 0.25);
    f.close();
  }
  h5::File f = h5::File::open_read(path);
  EXPECT_EQ(f.list(), (std::vector<std::string>{"a", "empty", "fl", "grp/b", "off"}));
  EXPECT_TRUE(f.has("grp/b"));
  EXPECT_FALSE(f.has("nope"));
  EXPECT_FALSE(f.has("nope/deeper"));
  EXPECT_FALSE(f.has("grp"));  // a group, not a dataset
  EXPECT_EQ(f.shape("a"), (Shape{2, 3, 4}));
  EXPECT_EQ(f.type_name("off"), "int64");
  Tensor a2 = f.read("a", DType::F32, 3);
  for (int i = 0; i < 24; ++i) EXPECT_EQ(a2.data<float>()[i], a.data<float>()[i]);
  Tensor b2 = f.read("grp/b", DType::I32);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(b2.data<int32_t>()[i], -7 * i);
  EXPECT_EQ(f.read_i64("off"), (std::vector<int64_t>{0, 5, 1ll << 40}));
  EXPECT_EQ(f.read_f32("fl"), (std::vector<float>{1.5f, 2.5f}));
  EXPECT_EQ(f.read("empty", DType::I32).numel(), 0);
  int32_t part[3];
  f.read_i32_range("grp/b", 1, 3, part);
  EXPECT_EQ(part[0], -7);
  EXPECT_EQ(part[2], -21);
  EXPECT_EQ(f.attr_string("name"), "héllo");
  EXPECT_EQ(f.attr_int("n"), 42);
  EXPECT_EQ(f.attr_float("x"), 0.25);
  EXPECT_EQ(f.attr_float("n"), 42.0);
  EXPECT_TRUE(f.has_attr("n"));
  EXPECT_FALSE(f.has_attr("m"));
  auto names = f.attr_names();
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"n", "name", "x"}));
}

TEST(Hdf5, ValidationErrorsNameFileAndDataset) {
  std::string path = (temp_dir() / "val.h5").string();
  {
    h5::File f = h5::File::create(path);
    f.write("ints", std::vector<int64_t>{1, 2});
    f.write("fl", std::vector<float>{1, 2});
    f.set_attr("s", std::string("x"));
  }
  h5::File f = h5::File::open_read(path);
  EXPECT_EQ(error_of([&] { f.read("ints", DType::I32); }),
            path + ": dataset 'ints': expected int32, found int64");
  EXPECT_EQ(error_of([&] { f.read("ints", DType::F32); }),
            path + ": dataset 'ints': expected float32, found int64");
  EXPECT_EQ(error_of([&] { f.read("fl", DType::F32, 2); }),
            path + ": dataset 'fl': expected rank 2, found shape [2]");
  EXPECT_EQ(error_of([&] { f.read("missing", DType::F32); }),
            path + ": dataset 'missing' not found");
  EXPECT_EQ(error_of([&] { f.attr_int("s"); }),
            path + ": attribute 's': expected integer, found string");
  EXPECT_EQ(error_of([&] { f.attr_string("zz"); }), path + ": attribute 'zz' not found");
  int32_t buf[4];
  EXPECT_NE(error_of([&] { f.read_i32_range("fl", 0, 1, buf); }).find("expected int32"),
            std::string::npos);
}

TEST(Hdf5, FileLevelErrors) {
  fs::path d = temp_dir();
  std::string missing = (d / "does_not_exist.h5").string();
  EXPECT_EQ(error_of([&] { h5::File::open_read(missing); }), missing + ": file not found");

  std::string text = (d / "text.h5").string();
  { std::ofstream(text) << "this is not hdf5\n"; }
  EXPECT_EQ(error_of([&] { h5::File::open_read(text); }), text + ": not an HDF5 file");

  std::string full = (d / "full.h5").string(), cut = (d / "cut.h5").string();
  {
    h5::File f = h5::File::create(full);
    f.write("x", std::vector<float>(10000, 1.0f));
  }
  fs::copy_file(full, cut, fs::copy_options::overwrite_existing);
  fs::resize_file(cut, fs::file_size(full) / 2);
  std::string msg = error_of([&] { h5::File::open_read(cut); });
  EXPECT_EQ(msg.rfind(cut + ": cannot open HDF5 file (truncated or corrupt?)", 0), 0u) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
}

TEST(Hdf5, ReadsH5pyConventions) {
  if (!has_h5py()) GTEST_SKIP() << "h5py not available";
  std::string path = (temp_dir() / "py.h5").string();
  std::string cmd =
      "/usr/bin/python3 -c \"import h5py, numpy as np\n"
      "with h5py.File('" + path + "', 'w') as f:\n"
      "  f['i32'] = np.arange(6, dtype=np.int32).reshape(2, 3)\n"
      "  f['f64'] = np.array([0.5, -1.25])\n"
      "  f['f16'] = np.array([1.0, -2.5, 65504, 6e-8], dtype=np.float16)\n"
      "  f['u8'] = np.array([200, 3], dtype=np.uint8)\n"
      "  f.create_dataset('chunked', data=np.arange(100, dtype=np.int32), chunks=(7,), compression='gzip')\n"
      "  f.attrs['vl'] = 'variable length'\n"
      "  f.attrs['fixed'] = np.bytes_('fixed')\n"
      "  f.attrs['i'] = np.int32(7)\n"
      "  f.attrs['arr1'] = [9]\n"
      "\"";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  h5::File f = h5::File::open_read(path);
  Tensor t = f.read("i32", DType::I32, 2);
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.data<int32_t>()[5], 5);
  Tensor d = f.read("f64", DType::F32);
  EXPECT_EQ(d.data<float>()[1], -1.25f);
  Tensor h = f.read("f16", DType::F32);
  EXPECT_EQ(h.data<float>()[0], 1.0f);
  EXPECT_EQ(h.data<float>()[1], -2.5f);
  EXPECT_EQ(h.data<float>()[2], 65504.0f);
  EXPECT_NEAR(h.data<float>()[3], 6e-8f, 1e-8f);  // subnormal
  EXPECT_EQ(f.read("u8", DType::I32).data<int32_t>()[0], 200);
  int32_t part[5];
  f.read_i32_range("chunked", 50, 5, part);
  EXPECT_EQ(part[0], 50);
  EXPECT_EQ(part[4], 54);
  EXPECT_EQ(f.attr_string("vl"), "variable length");
  EXPECT_EQ(f.attr_string("fixed"), "fixed");
  EXPECT_EQ(f.attr_int("i"), 7);
  EXPECT_EQ(f.attr_int("arr1"), 9);
}
