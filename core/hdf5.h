// Thin RAII wrapper over the HDF5 C API for the files retort reads and writes
// (token datasets, checkpoints, distillation shards).
//
// Every failure throws retort::Error with one line naming the file and the dataset or
// attribute, e.g. "run/x.h5: dataset 'tokens': expected int32, found float64". HDF5's own
// error printing is switched off (process-wide) the first time a File is opened.
//
// Dataset names may contain '/' (groups are created on write and walked by list()).
// Not thread-safe (neither is the HDF5 build we link); use from one thread at a time.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace retort::h5 {

class File {
 public:
  // Open an existing file read-only. Distinguishes: missing file, not an HDF5 file,
  // HDF5 file that cannot be opened (truncated / corrupt; HDF5's reason is appended).
  static File open_read(const std::string& path);
  // How many open_read calls of this process have handed a file to libhdf5 (tests: a check
  // that must come before libhdf5 parses a file, such as a checksum, did).
  static int64_t libhdf5_opens();
  // Create a file, truncating any existing one.
  static File create(const std::string& path);

  File() = default;
  File(File&& o) noexcept;
  File& operator=(File&& o) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();  // closes (errors on close are swallowed; call close() to see them)

  void close();  // flushes and closes; throws on failure
  bool is_open() const { return id_ >= 0; }
  const std::string& path() const { return path_; }

  // ---- datasets ----
  bool has(const std::string& name) const;        // a dataset of that name exists
  std::vector<std::string> list() const;          // all dataset paths, sorted ("a", "g/b")
  Shape shape(const std::string& name) const;     // dataset dims
  std::string type_name(const std::string& name) const;  // "int32", "float64", "string", ...

  // Write a new dataset (contiguous layout). Tensor must be F32 or I32, in host memory;
  // any rank (rank 0 = scalar dataset). BF16 is rejected.
  void write(const std::string& name, const Tensor& t);
  void write(const std::string& name, const std::vector<int64_t>& v);  // int64 [n]
  void write(const std::string& name, const std::vector<int32_t>& v);  // int32 [n]
  void write(const std::string& name, const std::vector<float>& v);    // float32 [n]
  // A contiguous int32 [n] dataset written piece by piece, for data larger than memory:
  // fill(begin, count, out) puts elements [begin, begin + count) (count <= piece) in `out`.
  void write_i32_pieces(const std::string& name, int64_t n, int64_t piece,
                        const std::function<void(int64_t begin, int64_t count, int32_t* out)>& fill);

  // Write an int32 or float dataset of `shape` from host memory with storage options:
  // `fp16` stores floats as IEEE binary16 (h5py's float16 type; round to nearest even);
  // `gzip` 1..9 stores chunked (chunks of whole rows along dim 0, about 64 KiB) with the
  // byte-shuffle and deflate filters; 0 = contiguous.
  struct Storage {
    bool fp16 = false;
    int gzip = 0;
  };
  void write(const std::string& name, const Shape& shape, const int32_t* data, Storage st);
  void write(const std::string& name, const Shape& shape, const float* data, Storage st);

  // Rows [begin, begin+count) along dim 0 of an N-D dataset, as a host Tensor of `dtype`
  // with the same accepted file types as read(). Shape [count, dims[1:]...].
  Tensor read_rows(const std::string& name, DType dtype, int64_t begin, int64_t count) const;

  // Read a whole dataset as a host Tensor of `dtype`:
  //   I32 accepts integer datasets that fit in int32 (int8/16/32, uint8/16);
  //   F32 accepts float16, float32, float64 (converted).
  // rank >= 0 additionally requires that rank.
  Tensor read(const std::string& name, DType dtype, int rank = -1) const;
  // Whole 1-D integer dataset (any integer width) as int64 / float dataset as float.
  std::vector<int64_t> read_i64(const std::string& name) const;
  std::vector<float> read_f32(const std::string& name) const;
  // Elements [begin, begin+count) of a 1-D integer dataset (int32-compatible) into `out`.
  void read_i32_range(const std::string& name, int64_t begin, int64_t count, int32_t* out) const;
  // Where an int32 dataset's elements lie in the file as they are in memory (contiguous
  // layout, no filters, little-endian int32, written): their byte offset, so the file can be
  // mapped in place (Tensor::map_file); -1 for any other dataset (chunked, compressed, compact,
  // another type or byte order, no data written yet).
  int64_t int32_data_offset(const std::string& name) const;

  // ---- attributes on the file root ----
  bool has_attr(const std::string& name) const;
  void set_attr(const std::string& name, const std::string& value);  // variable-length UTF-8
  void set_attr(const std::string& name, const char* value) { set_attr(name, std::string(value)); }
  void set_attr(const std::string& name, int64_t value);             // int64 scalar
  void set_attr(const std::string& name, double value);              // float64 scalar
  std::vector<std::string> attr_names() const;
  // Readers accept fixed- and variable-length strings, any integer width, any float width;
  // scalars or 1-element arrays.
  std::string attr_string(const std::string& name) const;
  int64_t attr_int(const std::string& name) const;
  double attr_float(const std::string& name) const;  // float or integer attribute

 private:
  File(int64_t id, std::string path) : id_(id), path_(std::move(path)) {}
  [[noreturn]] void fail(const std::string& what) const;  // "<path>: <what>"
  int64_t open_dataset(const std::string& name) const;    // hid_t; throws if missing
  void write_raw(const std::string& name, const Shape& shape, int64_t file_type,
                 int64_t mem_type, const void* data, int gzip = 0);
  // hid_t of a new dataset (contiguous, or chunked with deflate for gzip 1..9); throws.
  int64_t create_dataset(const std::string& name, const Shape& shape, int64_t file_type, int gzip);
  Tensor read_impl(const std::string& name, DType dtype, int rank, int64_t begin,
                   int64_t count) const;  // count < 0: whole dataset

  int64_t id_ = -1;  // hid_t
  std::string path_;
};

// IEEE binary16 <-> binary32 (round to nearest even; subnormals, inf and nan kept).
uint16_t float_to_half(float f);
float half_to_float(uint16_t h);

// The innermost message of the current HDF5 error stack ("" if none); for error lines.
std::string last_hdf5_error();

}  // namespace retort::h5
