// HDF5 C API wrapper; see hdf5.h. hid_t is int64_t since HDF5 1.10.
#include "core/hdf5.h"

#include <hdf5.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <utility>

#include "core/fs.h"

namespace retort::h5 {
namespace {

static_assert(sizeof(hid_t) == sizeof(int64_t), "HDF5 >= 1.10 expected");

void quiet_hdf5() {
  static bool done = [] {
    // No HDF5 atexit handler: after a failed H5Fclose (disk full) HDF5 1.10 keeps a dangling
    // file id, and closing it again at exit crashes. Every File is closed by its owner.
    H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    return true;
  }();
  (void)done;
}

// Owns one hid_t and closes it with the matching H5*close.
class Hid {
 public:
  using Closer = herr_t (*)(hid_t);
  Hid(hid_t id, Closer c) : id_(id), close_(c) {}
  ~Hid() { if (id_ >= 0) close_(id_); }
  Hid(const Hid&) = delete;
  Hid& operator=(const Hid&) = delete;
  hid_t get() const { return id_; }
  bool ok() const { return id_ >= 0; }
  operator hid_t() const { return id_; }

 private:
  hid_t id_;
  Closer close_;
};

std::string str_join(const std::vector<hsize_t>& d) {
  std::string out;
  for (size_t i = 0; i < d.size(); ++i) out += (i ? ", " : "") + std::to_string(d[i]);
  return out;
}

herr_t walk_cb(unsigned n, const H5E_error2_t* err, void* data) {
  auto* out = static_cast<std::string*>(data);
  if (n == 0 && err->desc) *out = err->desc;  // upward walk: 0 is the innermost error
  return 0;
}

// The first "errno = N" (N > 0) that HDF5's POSIX driver wrote into an error description.
herr_t errno_cb(unsigned, const H5E_error2_t* err, void* data) {
  int* out = static_cast<int*>(data);
  const char* at = err->desc ? std::strstr(err->desc, "errno = ") : nullptr;
  if (*out == 0 && at) *out = std::atoi(at + 8);
  return 0;
}

// Why a write to `path` failed, for one line: the OS reason when HDF5 recorded an errno
// ("No space left on device"), else what statvfs says (read-only, almost no space left),
// else HDF5's innermost message.
std::string write_error(const std::string& path) {
  int err = 0;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, errno_cb, &err);
  std::string hdf5 = last_hdf5_error();  // also clears the stack
  if (err > 0) return std::strerror(err);
  std::string os = fs::write_trouble(path);
  return os.empty() ? hdf5 : os;
}

std::string describe_type(hid_t type) {
  H5T_class_t cls = H5Tget_class(type);
  size_t size = H5Tget_size(type);
  switch (cls) {
    case H5T_INTEGER: {
      bool sgn = H5Tget_sign(type) == H5T_SGN_2;
      return str_cat(sgn ? "int" : "uint", size * 8);
    }
    case H5T_FLOAT: return str_cat("float", size * 8);
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    case H5T_ARRAY: return "array";
    case H5T_VLEN: return "vlen";
    case H5T_OPAQUE: return "opaque";
    case H5T_BITFIELD: return "bitfield";
    case H5T_REFERENCE: return "reference";
    default: return "unknown type";
  }
}

bool fits_int32(hid_t type) {
  if (H5Tget_class(type) != H5T_INTEGER) return false;
  size_t size = H5Tget_size(type);
  bool sgn = H5Tget_sign(type) == H5T_SGN_2;
  return sgn ? size <= 4 : size <= 2;
}

// h5py's float16: a copy of IEEE f32 with binary16 fields (sign 15, exponent 10..14,
// mantissa 0..9, bias 15). HDF5 1.10 has no predefined half type.
hid_t make_half_type() {
  hid_t t = H5Tcopy(H5T_IEEE_F32LE);
  H5Tset_fields(t, 15, 10, 5, 0, 10);
  H5Tset_size(t, 2);
  H5Tset_ebias(t, 15);
  return t;
}

Shape space_dims(hid_t space) {
  int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0) return {};
  std::vector<hsize_t> d(rank);
  H5Sget_simple_extent_dims(space, d.data(), nullptr);
  return Shape(d.begin(), d.end());
}

// Whether the link `name` in `loc` stays inside this file: hard and soft links do (HDF5
// bounds soft-link chains); external links open another file (which could be anything, a
// FIFO included) and user-defined links run a callback, so readers refuse both.
bool internal_link(hid_t loc, const std::string& name) {
  H5L_info_t info;
  if (H5Lget_info(loc, name.c_str(), &info, H5P_DEFAULT) < 0) {
    H5Eclear2(H5E_DEFAULT);
    return false;
  }
  return info.type == H5L_TYPE_HARD || info.type == H5L_TYPE_SOFT;
}

// Why a dataset's declared extent cannot be read into memory ("" if it can): a null
// dataspace, dims beyond int64, or more bytes than the file could hold behind it. deflate
// compresses at most about 1032:1, so a dataset that claims over 2048 bytes per file byte
// (plus 64 MiB of slack for fill values) is hostile or corrupt, and reading it would only
// allocate memory for nothing.
std::string extent_problem(hid_t space, hid_t type, int64_t file_bytes) {
  if (H5Sget_simple_extent_type(space) == H5S_NULL) return "has an empty (null) dataspace";
  const int rank = H5Sget_simple_extent_ndims(space);
  if (rank < 0) return "has an unreadable dataspace";
  std::vector<hsize_t> d(rank);
  H5Sget_simple_extent_dims(space, d.data(), nullptr);
  uint64_t bytes = std::max<size_t>(H5Tget_size(type), 1);
  for (hsize_t x : d) {
    if (x > hsize_t(INT64_MAX) || (x > 0 && __builtin_mul_overflow(bytes, uint64_t(x), &bytes)))
      return str_cat("declares dims [", str_join(d), "] beyond any file");
  }
  const uint64_t limit = 2048 * uint64_t(std::max<int64_t>(file_bytes, 0)) + (uint64_t(64) << 20);
  if (bytes > limit)
    return str_cat("declares dims [", str_join(d), "] (", bytes, " bytes) but the file holds ", file_bytes,
                   " bytes (truncated or corrupt)");
  return "";
}

// h5py's float16 (and ours): IEEE binary16 fields. Other 2-byte float layouts (bfloat16 and
// custom ones) would be misread by half_to_float.
bool ieee_half(hid_t type) {
  size_t spos, epos, esize, mpos, msize;
  if (H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize) < 0) return false;
  return spos == 15 && epos == 10 && esize == 5 && mpos == 0 && msize == 10 && H5Tget_ebias(type) == 15;
}

}  // namespace

// IEEE binary16 -> binary32 (exact).
float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0) {
    if (man == 0) {
      bits = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do { man <<= 1; ++e; } while (!(man & 0x400));
      bits = sign | uint32_t(127 - 15 - e) << 23 | (man & 0x3ff) << 13;
    }
  } else if (exp == 31) {
    bits = sign | 0x7f800000u | man << 13;
  } else {
    bits = sign | (exp + 127 - 15) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// binary32 -> binary16, round to nearest even; overflow -> inf, nan stays nan.
uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000);
  const uint32_t absx = x & 0x7fffffffu;
  if (absx >= 0x7f800000u)  // inf or nan
    return sign | 0x7c00 | (absx > 0x7f800000u ? 0x200 : 0);
  if (absx >= 0x477ff000u) return sign | 0x7c00;  // >= 65520 rounds to inf
  if (absx < 0x38800000u) {                       // below 2^-14: subnormal half (or 0)
    if (absx < 0x33000000u) return sign;          // < 2^-25 rounds to 0
    const uint32_t e = absx >> 23, man = (absx & 0x7fffff) | 0x800000;
    const uint32_t shift = 126 - e;  // 14 - (e - 127) + 13 - 1 ... value = man * 2^(e-150)
    // half subnormal unit is 2^-24: h = man * 2^(e-150+24) = man >> (126 - e)
    uint32_t h = man >> shift;
    const uint32_t rem = man & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rem > halfway || (rem == halfway && (h & 1))) ++h;
    return sign | uint16_t(h);
  }
  // normal: rebias exponent, keep 10 mantissa bits, round on the 13 dropped bits
  uint32_t h = ((absx >> 23) - 112) << 10 | ((absx >> 13) & 0x3ff);
  const uint32_t rem = absx & 0x1fff;
  if (rem > 0x1000 || (rem == 0x1000 && (h & 1))) ++h;  // carry may roll into the exponent
  return sign | uint16_t(h);
}

std::string last_hdf5_error() {
  std::string msg;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, &msg);
  H5Eclear2(H5E_DEFAULT);
  return msg;
}

// ---- File lifetime ----------------------------------------------------------

namespace {
std::atomic<int64_t> g_libhdf5_opens{0};
}  // namespace

int64_t File::libhdf5_opens() { return g_libhdf5_opens.load(); }

File File::open_read(const std::string& path) {
  quiet_hdf5();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw Error(str_cat(path, ": file not found"));
  if (std::filesystem::is_directory(path, ec))
    throw Error(str_cat(path, ": is a directory, expected an HDF5 file"));
  ++g_libhdf5_opens;
  htri_t is = H5Fis_hdf5(path.c_str());
  if (is == 0) throw Error(str_cat(path, ": not an HDF5 file"));
  if (is < 0) throw Error(str_cat(path, ": cannot read file (", last_hdf5_error(), ")"));
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  if (id < 0)
    throw Error(str_cat(path, ": cannot open HDF5 file (truncated or corrupt?): ",
                        last_hdf5_error()));
  return File(id, path);
}

File File::create(const std::string& path) {
  quiet_hdf5();
  hid_t id = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (id < 0) throw Error(str_cat(path, ": cannot create HDF5 file: ", write_error(path)));
  return File(id, path);
}

File::File(File&& o) noexcept : id_(std::exchange(o.id_, -1)), path_(std::move(o.path_)) {}

File& File::operator=(File&& o) noexcept {
  if (this != &o) {
    if (id_ >= 0) H5Fclose(id_);
    id_ = std::exchange(o.id_, -1);
    path_ = std::move(o.path_);
  }
  return *this;
}

File::~File() {
  if (id_ >= 0) H5Fclose(id_);
}

void File::close() {
  if (id_ < 0) return;
  hid_t id = std::exchange(id_, -1);
  if (H5Fclose(id) < 0) fail(str_cat("cannot write (closing the file): ", write_error(path_)));
}

void File::fail(const std::string& what) const { throw Error(str_cat(path_, ": ", what)); }

// ---- datasets ---------------------------------------------------------------

bool File::has(const std::string& name) const {
  RETORT_CHECK(id_ >= 0, "HDF5 file is not open");
  // Walk the path one link at a time (H5Lexists needs every parent to exist).
  size_t pos = 0;
  while ((pos = name.find('/', pos + 1)) != std::string::npos) {
    if (H5Lexists(id_, name.substr(0, pos).c_str(), H5P_DEFAULT) <= 0 ||
        !internal_link(id_, name.substr(0, pos))) {
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
  }
  if (H5Lexists(id_, name.c_str(), H5P_DEFAULT) <= 0 || !internal_link(id_, name)) {
    H5Eclear2(H5E_DEFAULT);
    return false;
  }
  Hid obj(H5Oopen(id_, name.c_str(), H5P_DEFAULT), H5Oclose);
  if (!obj.ok()) { H5Eclear2(H5E_DEFAULT); return false; }
  return H5Iget_type(obj) == H5I_DATASET;
}

std::vector<std::string> File::list() const {
  RETORT_CHECK(id_ >= 0, "HDF5 file is not open");
  std::vector<std::string> out;
  // Depth-first over groups by link index (portable across HDF5 1.10 / 1.12 / 1.14).
  std::vector<std::string> stack = {""};
  while (!stack.empty()) {
    std::string prefix = stack.back();
    stack.pop_back();
    Hid g(H5Gopen2(id_, prefix.empty() ? "/" : prefix.c_str(), H5P_DEFAULT), H5Gclose);
    if (!g.ok()) fail(str_cat("cannot open group '", prefix, "': ", last_hdf5_error()));
    H5G_info_t info;
    if (H5Gget_info(g, &info) < 0) fail(str_cat("cannot list group '", prefix, "'"));
    for (hsize_t i = 0; i < info.nlinks; ++i) {
      ssize_t n = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT);
      if (n < 0) continue;
      std::string nm(n, '\0');
      H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, nm.data(), n + 1, H5P_DEFAULT);
      std::string full = prefix.empty() ? nm : prefix + "/" + nm;
      if (!internal_link(g, nm)) continue;  // external / user-defined: not followed
      Hid obj(H5Oopen(g, nm.c_str(), H5P_DEFAULT), H5Oclose);
      if (!obj.ok()) { H5Eclear2(H5E_DEFAULT); continue; }  // dangling soft/external link
      H5I_type_t t = H5Iget_type(obj);
      if (t == H5I_DATASET) out.push_back(full);
      else if (t == H5I_GROUP) stack.push_back(full);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

int64_t File::open_dataset(const std::string& name) const {
  RETORT_CHECK(id_ >= 0, "HDF5 file is not open");
  if (!has(name)) fail(str_cat("dataset '", name, "' not found"));
  hid_t d = H5Dopen2(id_, name.c_str(), H5P_DEFAULT);
  if (d < 0) fail(str_cat("dataset '", name, "': cannot open: ", last_hdf5_error()));
  // Raw data must live in this file: external raw-data files and virtual datasets read
  // other files (anything the writer named).
  Hid dcpl(H5Dget_create_plist(d), H5Pclose);
  const bool outside = !dcpl.ok() || H5Pget_layout(dcpl) == H5D_VIRTUAL || H5Pget_external_count(dcpl) != 0;
  std::string why = outside ? "keeps its data outside this file (external or virtual storage)" : "";
  if (why.empty()) {
    Hid sp(H5Dget_space(d), H5Sclose), ty(H5Dget_type(d), H5Tclose);
    hsize_t file_bytes = 0;
    H5Fget_filesize(id_, &file_bytes);
    why = !sp.ok() || !ty.ok() ? "has an unreadable dataspace or type" : extent_problem(sp, ty, int64_t(file_bytes));
  }
  if (!why.empty()) {
    H5Dclose(d);
    fail(str_cat("dataset '", name, "' ", why));
  }
  return d;
}

Shape File::shape(const std::string& name) const {
  Hid d(open_dataset(name), H5Dclose);
  Hid sp(H5Dget_space(d), H5Sclose);
  return space_dims(sp);
}

std::string File::type_name(const std::string& name) const {
  Hid d(open_dataset(name), H5Dclose);
  Hid ty(H5Dget_type(d), H5Tclose);
  return describe_type(ty);
}

void File::write_raw(const std::string& name, const Shape& shape, int64_t file_type,
                     int64_t mem_type, const void* data, int gzip) {
  Hid d(create_dataset(name, shape, file_type, gzip), H5Dclose);
  if (shape_numel(shape) > 0 &&
      H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
    fail(str_cat("dataset '", name, "': write failed: ", write_error(path_)));
}

void File::write_i32_pieces(const std::string& name, int64_t n, int64_t piece,
                            const std::function<void(int64_t, int64_t, int32_t*)>& fill) {
  RETORT_CHECK(piece > 0, "write_i32_pieces: piece must be positive");
  Hid d(create_dataset(name, {n}, H5T_STD_I32LE, 0), H5Dclose);
  Hid file_space(H5Dget_space(d), H5Sclose);
  std::vector<int32_t> buffer(size_t(std::min(n, piece)));
  for (int64_t begin = 0; begin < n; begin += piece) {
    const hsize_t start = hsize_t(begin), count = hsize_t(std::min(piece, n - begin));
    fill(begin, int64_t(count), buffer.data());
    H5Sselect_hyperslab(file_space, H5S_SELECT_SET, &start, nullptr, &count, nullptr);
    Hid mem_space(H5Screate_simple(1, &count, nullptr), H5Sclose);
    if (H5Dwrite(d, H5T_NATIVE_INT32, mem_space, file_space, H5P_DEFAULT, buffer.data()) < 0)
      fail(str_cat("dataset '", name, "': write failed: ", write_error(path_)));
  }
}

int64_t File::create_dataset(const std::string& name, const Shape& shape, int64_t file_type, int gzip) {
  RETORT_CHECK(id_ >= 0, "HDF5 file is not open");
  std::vector<hsize_t> dims(shape.begin(), shape.end());
  Hid sp(dims.empty() ? H5Screate(H5S_SCALAR)
                      : H5Screate_simple(int(dims.size()), dims.data(), nullptr),
         H5Sclose);
  if (!sp.ok()) fail(str_cat("dataset '", name, "': bad shape ", shape_str(shape)));
  Hid lcpl(H5Pcreate(H5P_LINK_CREATE), H5Pclose);
  H5Pset_create_intermediate_group(lcpl, 1);
  Hid dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_obj_track_times(dcpl, 0);  // no timestamps: same content -> same bytes
  if (gzip > 0 && !dims.empty() && shape_numel(shape) > 0) {
    if (gzip > 9) fail(str_cat("dataset '", name, "': gzip level ", gzip, " outside 1..9"));
    if (H5Zfilter_avail(H5Z_FILTER_DEFLATE) <= 0)
      fail(str_cat("dataset '", name, "': this HDF5 build has no gzip (deflate) filter"));
    // chunk = whole rows along dim 0, about 64 KiB
    std::vector<hsize_t> chunk = dims;
    const hsize_t row_bytes =
        std::max<hsize_t>(1, hsize_t(shape_numel(shape) / shape[0]) * H5Tget_size(file_type));
    chunk[0] = std::clamp<hsize_t>((64 << 10) / row_bytes, 1, dims[0]);
    H5Pset_chunk(dcpl, int(chunk.size()), chunk.data());
    H5Pset_shuffle(dcpl);
    H5Pset_deflate(dcpl, unsigned(gzip));
  }
  const hid_t d = H5Dcreate2(id_, name.c_str(), file_type, sp, lcpl, dcpl, H5P_DEFAULT);
  if (d < 0) fail(str_cat("dataset '", name, "': cannot create: ", write_error(path_)));
  return d;
}

void File::write(const std::string& name, const Tensor& t) {
  RETORT_CHECK(t.defined(), "writing an undefined tensor to ", path_, ":", name);
  RETORT_CHECK(t.device() == Device::CPU, "HDF5 write needs a host tensor (", name, ")");
  if (t.dtype() == DType::F32)
    write_raw(name, t.shape(), H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, t.raw());
  else if (t.dtype() == DType::I32)
    write_raw(name, t.shape(), H5T_STD_I32LE, H5T_NATIVE_INT32, t.raw());
  else
    fail(str_cat("dataset '", name, "': cannot write dtype ", dtype_name(t.dtype()),
                 " (F32 or I32 only)"));
}

void File::write(const std::string& name, const std::vector<int64_t>& v) {
  write_raw(name, {int64_t(v.size())}, H5T_STD_I64LE, H5T_NATIVE_INT64, v.data());
}
void File::write(const std::string& name, const std::vector<int32_t>& v) {
  write_raw(name, {int64_t(v.size())}, H5T_STD_I32LE, H5T_NATIVE_INT32, v.data());
}
void File::write(const std::string& name, const std::vector<float>& v) {
  write_raw(name, {int64_t(v.size())}, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, v.data());
}

void File::write(const std::string& name, const Shape& shape, const int32_t* data, Storage st) {
  write_raw(name, shape, H5T_STD_I32LE, H5T_NATIVE_INT32, data, st.gzip);
}

void File::write(const std::string& name, const Shape& shape, const float* data, Storage st) {
  if (!st.fp16) return write_raw(name, shape, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, data, st.gzip);
  const int64_t n = shape_numel(shape);
  std::vector<uint16_t> half(n);
  for (int64_t i = 0; i < n; ++i) half[i] = float_to_half(data[i]);
  Hid ty(make_half_type(), H5Tclose);  // memory and file: the same little-endian half type
  write_raw(name, shape, ty, ty, half.data(), st.gzip);
}

Tensor File::read(const std::string& name, DType dtype, int rank) const {
  return read_impl(name, dtype, rank, 0, -1);
}

Tensor File::read_rows(const std::string& name, DType dtype, int64_t begin, int64_t count) const {
  return read_impl(name, dtype, -1, begin, count);
}

Tensor File::read_impl(const std::string& name, DType dtype, int rank, int64_t begin,
                       int64_t count) const {
  Hid d(open_dataset(name), H5Dclose);
  Hid ty(H5Dget_type(d), H5Tclose);
  Hid sp(H5Dget_space(d), H5Sclose);
  Shape shape = space_dims(sp);
  if (rank >= 0 && int(shape.size()) != rank)
    fail(str_cat("dataset '", name, "': expected rank ", rank, ", found shape ",
                 shape_str(shape)));
  hid_t mem_space = H5S_ALL;
  std::unique_ptr<Hid> mem_holder;
  if (count >= 0) {  // hyperslab of rows [begin, begin+count) along dim 0
    if (shape.empty())
      fail(str_cat("dataset '", name, "': cannot read rows of a scalar dataset"));
    if (begin < 0 || begin + count > shape[0])
      fail(str_cat("dataset '", name, "': rows [", begin, ", ", begin + count, ") outside [0, ",
                   shape[0], ")"));
    std::vector<hsize_t> start(shape.size(), 0), n(shape.begin(), shape.end());
    start[0] = hsize_t(begin);
    n[0] = hsize_t(count);
    shape[0] = count;
    if (count > 0) {
      H5Sselect_hyperslab(sp, H5S_SELECT_SET, start.data(), nullptr, n.data(), nullptr);
      mem_holder = std::make_unique<Hid>(H5Screate_simple(int(n.size()), n.data(), nullptr),
                                         H5Sclose);
      mem_space = mem_holder->get();
    }
  }
  const hid_t file_space = count >= 0 ? hid_t(sp) : H5S_ALL;
  H5T_class_t cls = H5Tget_class(ty);
  const size_t size = H5Tget_size(ty);
  if (dtype == DType::I32 && !fits_int32(ty))
    fail(str_cat("dataset '", name, "': expected int32, found ", describe_type(ty)));
  if (dtype == DType::F32 && (cls != H5T_FLOAT || (size != 2 && size != 4 && size != 8)))
    fail(str_cat("dataset '", name, "': expected float32, found ", describe_type(ty)));
  if (dtype == DType::F32 && size == 2 && !ieee_half(ty))
    fail(str_cat("dataset '", name, "': 16-bit floats that are not IEEE float16 (bfloat16?) are not supported"));
  if (dtype != DType::I32 && dtype != DType::F32)
    fail(str_cat("dataset '", name, "': cannot read into dtype ", dtype_name(dtype)));
  Tensor t = Tensor::empty(shape, dtype);
  if (t.numel() == 0) return t;
  herr_t st = -1;
  if (dtype == DType::I32) {
    st = H5Dread(d, H5T_NATIVE_INT32, mem_space, file_space, H5P_DEFAULT, t.raw());
  } else {  // F32
    if (size == 2) {  // float16: HDF5 1.10 has no native half type; convert by hand
      std::vector<uint16_t> raw(t.numel());
      Hid mt(H5Tcopy(ty), H5Tclose);  // same half type, little-endian in memory
      H5Tset_order(mt, H5T_ORDER_LE);
      st = H5Dread(d, mt, mem_space, file_space, H5P_DEFAULT, raw.data());
      float* out = t.data<float>();
      for (size_t i = 0; i < raw.size(); ++i) out[i] = half_to_float(raw[i]);
    } else {
      st = H5Dread(d, H5T_NATIVE_FLOAT, mem_space, file_space, H5P_DEFAULT, t.raw());
    }
  }
  if (st < 0) fail(str_cat("dataset '", name, "': read failed: ", last_hdf5_error()));
  return t;
}

int64_t File::int32_data_offset(const std::string& name) const {
  Hid d(open_dataset(name), H5Dclose);
  Hid dcpl(H5Dget_create_plist(d), H5Pclose), ty(H5Dget_type(d), H5Tclose);
  if (!dcpl.ok() || !ty.ok() || H5Pget_layout(dcpl) != H5D_CONTIGUOUS ||
      H5Tequal(ty, H5T_STD_I32LE) <= 0 || std::endian::native != std::endian::little)
    return -1;
  const haddr_t at = H5Dget_offset(d);  // from the file's first byte (user block included)
  H5Eclear2(H5E_DEFAULT);
  return at == HADDR_UNDEF ? -1 : int64_t(at);
}

std::vector<int64_t> File::read_i64(const std::string& name) const {
  Hid d(open_dataset(name), H5Dclose);
  Hid ty(H5Dget_type(d), H5Tclose);
  Hid sp(H5Dget_space(d), H5Sclose);
  Shape shape = space_dims(sp);
  if (shape.size() != 1)
    fail(str_cat("dataset '", name, "': expected rank 1, found shape ", shape_str(shape)));
  if (H5Tget_class(ty) != H5T_INTEGER)
    fail(str_cat("dataset '", name, "': expected int64, found ", describe_type(ty)));
  std::vector<int64_t> v(shape[0]);
  if (!v.empty() && H5Dread(d, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v.data()) < 0)
    fail(str_cat("dataset '", name, "': read failed: ", last_hdf5_error()));
  return v;
}

std::vector<float> File::read_f32(const std::string& name) const {
  Tensor t = read(name, DType::F32, 1);
  const float* p = t.numel() ? t.data<float>() : nullptr;
  return std::vector<float>(p, p + t.numel());
}

void File::read_i32_range(const std::string& name, int64_t begin, int64_t count,
                          int32_t* out) const {
  Hid d(open_dataset(name), H5Dclose);
  Hid ty(H5Dget_type(d), H5Tclose);
  Hid sp(H5Dget_space(d), H5Sclose);
  Shape shape = space_dims(sp);
  if (shape.size() != 1)
    fail(str_cat("dataset '", name, "': expected rank 1, found shape ", shape_str(shape)));
  if (!fits_int32(ty))
    fail(str_cat("dataset '", name, "': expected int32, found ", describe_type(ty)));
  if (begin < 0 || count < 0 || begin + count > shape[0])
    fail(str_cat("dataset '", name, "': range [", begin, ", ", begin + count,
                 ") outside [0, ", shape[0], ")"));
  if (count == 0) return;
  hsize_t start = hsize_t(begin), n = hsize_t(count);
  H5Sselect_hyperslab(sp, H5S_SELECT_SET, &start, nullptr, &n, nullptr);
  Hid mem(H5Screate_simple(1, &n, nullptr), H5Sclose);
  if (H5Dread(d, H5T_NATIVE_INT32, mem, sp, H5P_DEFAULT, out) < 0)
    fail(str_cat("dataset '", name, "': read failed: ", last_hdf5_error()));
}

// ---- attributes -------------------------------------------------------------

bool File::has_attr(const std::string& name) const {
  RETORT_CHECK(id_ >= 0, "HDF5 file is not open");
  return H5Aexists(id_, name.c_str()) > 0;
}

namespace {
herr_t attr_name_cb(hid_t, const char* name, const H5A_info_t*, void* data) {
  static_cast<std::vector<std::string>*>(data)->push_back(name);
  return 0;
}
}  // namespace

std::vector<std::string> File::attr_names() const {
  RETORT_CHECK(id_ >= 0, "HDF5 file is not open");
  std::vector<std::string> out;
  hsize_t idx = 0;
  if (H5Aiterate2(id_, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_name_cb, &out) < 0)
    fail(str_cat("cannot list attributes: ", last_hdf5_error()));
  return out;
}

namespace {

// Replace attribute `name` on `loc` with a scalar of `file_type`.
hid_t make_scalar_attr(hid_t loc, const std::string& name, hid_t file_type) {
  if (H5Aexists(loc, name.c_str()) > 0) H5Adelete(loc, name.c_str());
  Hid sp(H5Screate(H5S_SCALAR), H5Sclose);
  return H5Acreate2(loc, name.c_str(), file_type, sp, H5P_DEFAULT, H5P_DEFAULT);
}

}  // namespace

void File::set_attr(const std::string& name, const std::string& value) {
  RETORT_CHECK(id_ >= 0, "HDF5 file is not open");
  Hid ty(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(ty, H5T_VARIABLE);
  H5Tset_cset(ty, H5T_CSET_UTF8);
  Hid a(make_scalar_attr(id_, name, ty), H5Aclose);
  const char* p = value.c_str();
  if (!a.ok() || H5Awrite(a, ty, &p) < 0)
    fail(str_cat("attribute '", name, "': write failed: ", write_error(path_)));
}

void File::set_attr(const std::string& name, int64_t value) {
  RETORT_CHECK(id_ >= 0, "HDF5 file is not open");
  Hid a(make_scalar_attr(id_, name, H5T_STD_I64LE), H5Aclose);
  if (!a.ok() || H5Awrite(a, H5T_NATIVE_INT64, &value) < 0)
    fail(str_cat("attribute '", name, "': write failed: ", write_error(path_)));
}

void File::set_attr(const std::string& name, double value) {
  RETORT_CHECK(id_ >= 0, "HDF5 file is not open");
  Hid a(make_scalar_attr(id_, name, H5T_IEEE_F64LE), H5Aclose);
  if (!a.ok() || H5Awrite(a, H5T_NATIVE_DOUBLE, &value) < 0)
    fail(str_cat("attribute '", name, "': write failed: ", write_error(path_)));
}

std::string File::attr_string(const std::string& name) const {
  if (!has_attr(name)) fail(str_cat("attribute '", name, "' not found"));
  Hid a(H5Aopen(id_, name.c_str(), H5P_DEFAULT), H5Aclose);
  Hid ty(H5Aget_type(a), H5Tclose);
  Hid sp(H5Aget_space(a), H5Sclose);
  if (H5Tget_class(ty) != H5T_STRING)
    fail(str_cat("attribute '", name, "': expected string, found ", describe_type(ty)));
  if (H5Sget_simple_extent_npoints(sp) != 1)
    fail(str_cat("attribute '", name, "': expected a single string"));
  std::string out;
  if (H5Tis_variable_str(ty) > 0) {
    Hid mt(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mt, H5T_VARIABLE);
    H5Tset_cset(mt, H5Tget_cset(ty));
    char* p = nullptr;
    if (H5Aread(a, mt, &p) < 0)
      fail(str_cat("attribute '", name, "': read failed: ", last_hdf5_error()));
    if (p) out = p;
    H5free_memory(p);
  } else {
    size_t n = H5Tget_size(ty);
    if (n > (1u << 20)) fail(str_cat("attribute '", name, "': fixed-length string of ", n, " bytes"));
    Hid mt(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(mt, n);
    H5Tset_cset(mt, H5Tget_cset(ty));
    H5Tset_strpad(mt, H5T_STR_NULLPAD);
    std::string buf(n, '\0');
    if (H5Aread(a, mt, buf.data()) < 0)
      fail(str_cat("attribute '", name, "': read failed: ", last_hdf5_error()));
    out = buf.substr(0, std::min(n, buf.find('\0')));
    if (H5Tget_strpad(ty) == H5T_STR_SPACEPAD)
      out.erase(out.find_last_not_of(' ') + 1);
  }
  return out;
}

int64_t File::attr_int(const std::string& name) const {
  if (!has_attr(name)) fail(str_cat("attribute '", name, "' not found"));
  Hid a(H5Aopen(id_, name.c_str(), H5P_DEFAULT), H5Aclose);
  Hid ty(H5Aget_type(a), H5Tclose);
  Hid sp(H5Aget_space(a), H5Sclose);
  if (H5Tget_class(ty) != H5T_INTEGER)
    fail(str_cat("attribute '", name, "': expected integer, found ", describe_type(ty)));
  if (H5Sget_simple_extent_npoints(sp) != 1)
    fail(str_cat("attribute '", name, "': expected a single value"));
  int64_t v = 0;
  if (H5Aread(a, H5T_NATIVE_INT64, &v) < 0)
    fail(str_cat("attribute '", name, "': read failed: ", last_hdf5_error()));
  return v;
}

double File::attr_float(const std::string& name) const {
  if (!has_attr(name)) fail(str_cat("attribute '", name, "' not found"));
  Hid a(H5Aopen(id_, name.c_str(), H5P_DEFAULT), H5Aclose);
  Hid ty(H5Aget_type(a), H5Tclose);
  Hid sp(H5Aget_space(a), H5Sclose);
  H5T_class_t cls = H5Tget_class(ty);
  if (cls != H5T_FLOAT && cls != H5T_INTEGER)
    fail(str_cat("attribute '", name, "': expected a number, found ", describe_type(ty)));
  if (H5Sget_simple_extent_npoints(sp) != 1)
    fail(str_cat("attribute '", name, "': expected a single value"));
  double v = 0;
  if (H5Aread(a, H5T_NATIVE_DOUBLE, &v) < 0)
    fail(str_cat("attribute '", name, "': read failed: ", last_hdf5_error()));
  return v;
}

}  // namespace retort::h5
