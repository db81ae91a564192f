// See hostile_h5.h. Raw HDF5 C API on purpose: our own writer only writes valid files.
#include "hostile_h5.h"

#include <hdf5.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>

#include "core/hdf5.h"

namespace retort::fuzz {
namespace {

constexpr int64_t kMaxElems = 1 << 14;  // cap on what one dataset writes

// Integer conversions without UB: out-of-range reals clamp, NaN is 0.
int64_t real_to_int(double x) {
  if (!(x == x)) return 0;
  if (x >= 9.2e18) return std::numeric_limits<int64_t>::max();
  if (x <= -9.2e18) return std::numeric_limits<int64_t>::min();
  return int64_t(x);
}
float real_to_float(double x) {
  if (std::isfinite(x) && std::fabs(x) > FLT_MAX) return x > 0 ? INFINITY : -INFINITY;
  return float(x);
}

template <class T>
void put(std::vector<uint8_t>& buf, T v) {
  const auto* p = reinterpret_cast<const uint8_t*>(&v);
  buf.insert(buf.end(), p, p + sizeof(T));
}

// Closes an hid_t with the given closer at scope exit (a failed create gives < 0: no close).
struct Owned {
  hid_t id;
  herr_t (*close)(hid_t);
  ~Owned() {
    if (id >= 0) close(id);
  }
};

hid_t half_type(bool ieee) {
  hid_t t = H5Tcopy(H5T_IEEE_F32LE);
  if (ieee) {
    H5Tset_fields(t, 15, 10, 5, 0, 10);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 15);
  } else {  // bfloat16-like: 8 exponent bits, 7 mantissa bits
    H5Tset_fields(t, 15, 7, 8, 0, 7);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 127);
  }
  return t;
}

// The file type of `e` (caller closes) and the bytes of `v`'s values in that type's memory
// layout (`mem`: the memory type to write them with; caller closes).
hid_t encode(const Values& v, Elem e, int64_t n, std::vector<uint8_t>& buf, hid_t* mem) {
  buf.clear();
  auto same = [&](hid_t t) { *mem = H5Tcopy(t); return H5Tcopy(t); };
  for (int64_t i = 0; i < n; ++i) {
    const int64_t x = v.int_at(i);
    const double r = v.real_at(i);
    switch (e) {
      case Elem::I8: put(buf, int8_t(x)); break;
      case Elem::I16: put(buf, int16_t(x)); break;
      case Elem::I32: case Elem::I32BE: case Elem::Enum: put(buf, int32_t(x)); break;
      case Elem::I64: put(buf, x); break;
      case Elem::U8: put(buf, uint8_t(x)); break;
      case Elem::U16: put(buf, uint16_t(x)); break;
      case Elem::U32: case Elem::Bitfield: case Elem::Opaque: put(buf, uint32_t(x)); break;
      case Elem::U64: put(buf, uint64_t(x)); break;
      case Elem::F16: put(buf, h5::float_to_half(real_to_float(r))); break;
      case Elem::F16Odd: {
        uint32_t bits;
        const float f = real_to_float(r);
        std::memcpy(&bits, &f, 4);
        put(buf, uint16_t(bits >> 16));
        break;
      }
      case Elem::F32: put(buf, real_to_float(r)); break;
      case Elem::F64: case Elem::F64BE: put(buf, r); break;
      case Elem::Compound: put(buf, int32_t(x)); put(buf, real_to_float(r)); break;
      case Elem::Array2: put(buf, int32_t(x)); put(buf, int32_t(uint32_t(x) + 1u)); break;
      case Elem::FixedStr: {
        std::string s = v.text_at(i);
        s.resize(8, '\0');
        buf.insert(buf.end(), s.begin(), s.end());
        break;
      }
      case Elem::VarStr: case Elem::kCount: break;  // VarStr: see write_*
    }
  }
  switch (e) {
    case Elem::I8: return same(H5T_STD_I8LE);
    case Elem::I16: return same(H5T_STD_I16LE);
    case Elem::I32: return same(H5T_STD_I32LE);
    case Elem::I64: return same(H5T_STD_I64LE);
    case Elem::U8: return same(H5T_STD_U8LE);
    case Elem::U16: return same(H5T_STD_U16LE);
    case Elem::U32: return same(H5T_STD_U32LE);
    case Elem::U64: return same(H5T_STD_U64LE);
    case Elem::I32BE: *mem = H5Tcopy(H5T_NATIVE_INT32); return H5Tcopy(H5T_STD_I32BE);
    case Elem::F16: *mem = half_type(true); return half_type(true);
    case Elem::F16Odd: *mem = half_type(false); return half_type(false);
    case Elem::F32: return same(H5T_IEEE_F32LE);
    case Elem::F64: return same(H5T_IEEE_F64LE);
    case Elem::F64BE: *mem = H5Tcopy(H5T_NATIVE_DOUBLE); return H5Tcopy(H5T_IEEE_F64BE);
    case Elem::Bitfield: return same(H5T_STD_B32LE);
    case Elem::Opaque: {
      hid_t t = H5Tcreate(H5T_OPAQUE, 4);
      H5Tset_tag(t, "hostile");
      *mem = H5Tcopy(t);
      return t;
    }
    case Elem::Compound: {
      hid_t t = H5Tcreate(H5T_COMPOUND, 8);
      H5Tinsert(t, "a", 0, H5T_NATIVE_INT32);
      H5Tinsert(t, "b", 4, H5T_NATIVE_FLOAT);
      *mem = H5Tcopy(t);
      return t;
    }
    case Elem::Array2: {
      const hsize_t two = 2;
      *mem = H5Tarray_create2(H5T_NATIVE_INT32, 1, &two);
      return H5Tarray_create2(H5T_NATIVE_INT32, 1, &two);
    }
    case Elem::Enum: {
      hid_t t = H5Tenum_create(H5T_NATIVE_INT32);
      for (int32_t k = 0; k < 2; ++k) H5Tenum_insert(t, k ? "b" : "a", &k);
      *mem = H5Tcopy(t);
      return t;
    }
    case Elem::FixedStr: {
      hid_t t = H5Tcopy(H5T_C_S1);
      H5Tset_size(t, 8);
      H5Tset_strpad(t, H5T_STR_NULLPAD);
      *mem = H5Tcopy(t);
      return t;
    }
    case Elem::VarStr: case Elem::kCount: {
      hid_t t = H5Tcopy(H5T_C_S1);
      H5Tset_size(t, H5T_VARIABLE);
      H5Tset_cset(t, H5T_CSET_UTF8);
      *mem = H5Tcopy(t);
      return t;
    }
  }
  return -1;
}

}  // namespace

// ---- Values -------------------------------------------------------------------------

Values Values::of_ints(Elem t, Shape dims, std::vector<int64_t> v, int64_t near) {
  Values x;
  x.type = t;
  x.dims = std::move(dims);
  x.ints = std::move(v);
  x.near = near;
  return x;
}

Values Values::of_reals(Elem t, Shape dims, std::vector<double> v) {
  Values x;
  x.type = t;
  x.dims = std::move(dims);
  x.reals = std::move(v);
  return x;
}

Values Values::string(std::string s) {
  Values x;
  x.type = Elem::VarStr;
  x.text = {std::move(s)};
  return x;
}

int64_t Values::numel() const {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d <= 0) return 0;
    n = d > kMaxElems || n > kMaxElems / d ? kMaxElems + 1 : n * d;
  }
  return std::min(n, kMaxElems);
}

bool Values::fits() const {
  int64_t n = 1;
  for (int64_t d : dims) {
    if (d <= 0) return true;
    if (d > kMaxElems || n > kMaxElems / d) return false;
    n *= d;
  }
  return true;
}

int64_t Values::int_at(int64_t i) const {
  if (!ints.empty()) return ints[i % ints.size()];
  if (!reals.empty()) return real_to_int(reals[i % reals.size()]);
  if (!text.empty()) {
    const std::string& s = text[i % text.size()];
    return s.empty() ? 0 : int64_t(s.size()) * (s[0] == '-' ? -1 : 1);
  }
  return 0;
}

double Values::real_at(int64_t i) const {
  if (!reals.empty()) return reals[i % reals.size()];
  if (!ints.empty()) return double(ints[i % ints.size()]);
  return double(int_at(i));
}

std::string Values::text_at(int64_t i) const {
  if (!text.empty()) return text[i % text.size()];
  if (!ints.empty()) return std::to_string(ints[i % ints.size()]);
  if (!reals.empty()) return std::to_string(reals[i % reals.size()]);
  return "";
}

// ---- hostile numbers ----------------------------------------------------------------

int64_t hostile_int(FuzzedDataProvider& in, int64_t near) {
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max(), kMin = std::numeric_limits<int64_t>::min();
  switch (in.ConsumeIntegralInRange<int>(0, 13)) {
    case 0: return 0;
    case 1: return -1;
    case 2: return near;
    case 3: return near - 1;
    case 4: return near + 1;
    case 5: return -near;
    case 6: return std::numeric_limits<int32_t>::max();
    case 7: return std::numeric_limits<int32_t>::min();
    case 8: return int64_t(1) << 31;
    case 9: return kMax;
    case 10: return kMin;
    case 11: return int64_t(1) << in.ConsumeIntegralInRange(32, 62);
    case 12: return in.ConsumeIntegralInRange<int64_t>(-8, 8);
    default: return in.ConsumeIntegral<int64_t>();
  }
}

double hostile_real(FuzzedDataProvider& in) {
  switch (in.ConsumeIntegralInRange<int>(0, 10)) {
    case 0: return std::numeric_limits<double>::quiet_NaN();
    case 1: return INFINITY;
    case 2: return -INFINITY;
    case 3: return -0.0;
    case 4: return 0.0;
    case 5: return 1e-45;
    case 6: return -1e30;
    case 7: return 1e300;
    case 8: return 65504.0 * 2;  // overflows float16
    case 9: return -in.ConsumeFloatingPointInRange<double>(0, 50);
    default: return in.ConsumeFloatingPoint<double>();
  }
}

// ---- the file -------------------------------------------------------------------------

HostileH5::HostileH5(FuzzedDataProvider& in, const std::string& path) : in_(in), path_(path) {
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  id_ = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
}

HostileH5::~HostileH5() { close(); }

void HostileH5::close() {
  if (id_ >= 0) H5Fclose(id_);
  id_ = -1;
}

void HostileH5::mutate_values(Values& v) {
  const int64_t n = v.numel();
  if (in_.ConsumeBool()) {  // poke one element
    const int64_t i = n > 0 ? in_.ConsumeIntegralInRange<int64_t>(0, n - 1) : 0;
    if (v.ints.empty() && v.reals.empty()) v.ints.assign(1, 0);
    auto poke = [&](auto& vec, auto value) {
      if (vec.size() < size_t(n)) {
        const auto copy = vec;
        vec.resize(n);
        for (int64_t j = 0; j < n; ++j) vec[j] = copy[j % copy.size()];
      }
      vec[i] = value;
    };
    if (!v.ints.empty()) poke(v.ints, hostile_int(in_, v.near));
    else poke(v.reals, hostile_real(in_));
  } else {  // every element hostile
    const bool real = !v.reals.empty();
    v.ints.clear();
    v.reals.clear();
    for (int64_t j = 0; j < std::max<int64_t>(n, 1) && in_.remaining_bytes() > 0; ++j) {
      if (real) v.reals.push_back(hostile_real(in_));
      else v.ints.push_back(hostile_int(in_, v.near));
    }
    if (v.ints.empty() && v.reals.empty()) v.ints.push_back(0);
  }
}

void HostileH5::dataset(const std::string& name, Values v) {
  if (id_ < 0) return;
  Layout layout = Layout::Contiguous;
  const int changes = in_.ConsumeIntegralInRange(0, 3);
  for (int c = 0; c < changes; ++c) {
    switch (in_.ConsumeIntegralInRange(0, 13)) {
      case 0: return;  // left out
      case 1: v.type = Elem(in_.ConsumeIntegralInRange<int>(0, int(Elem::kCount) - 1)); break;
      case 2: {  // another rank / other dims
        const int rank = in_.ConsumeIntegralInRange(0, 3);
        Shape dims(rank);
        for (int d = 0; d < rank; ++d)
          dims[d] = d < int(v.dims.size()) && in_.ConsumeBool() ? v.dims[d] + in_.ConsumeIntegralInRange(-1, 1)
                                                                : in_.ConsumeIntegralInRange(0, 9);
        for (int64_t& d : dims) d = std::max<int64_t>(d, 0);
        v.dims = dims;
        break;
      }
      case 3: case 4: mutate_values(v); break;
      case 5: layout = Layout::Chunked; break;
      case 6: layout = Layout::Gzip; break;
      case 7: layout = Layout::Compact; break;
      case 8: {  // huge declared dims, nothing written
        layout = Layout::Huge;
        if (v.dims.empty()) v.dims = {1};
        const size_t d = in_.ConsumeIntegralInRange<size_t>(0, v.dims.size() - 1);
        v.dims[d] = in_.ConsumeBool() ? int64_t(1) << in_.ConsumeIntegralInRange(20, 62)
                                      : std::numeric_limits<int64_t>::max();
        break;
      }
      case 9: layout = Layout::External; break;
      case 10: layout = Layout::NullSpace; break;
      case 11: v.dims = {}; break;  // scalar
      case 12: {  // a group, a soft link or an external link in its place
        Owned lcpl{H5Pcreate(H5P_LINK_CREATE), H5Pclose};
        H5Pset_create_intermediate_group(lcpl.id, 1);
        switch (in_.ConsumeIntegralInRange(0, 4)) {
          case 0: {
            Owned g{H5Gcreate2(id_, name.c_str(), lcpl.id, H5P_DEFAULT, H5P_DEFAULT), H5Gclose};
            if (g.id >= 0 && in_.ConsumeBool()) write_dataset(name + "/x", v, layout);
            return;
          }
          case 1: H5Lcreate_soft("/nowhere", id_, name.c_str(), lcpl.id, H5P_DEFAULT); return;
          case 2: H5Lcreate_soft(("/" + name).c_str(), id_, name.c_str(), lcpl.id, H5P_DEFAULT); return;
          case 3:
            if (!written_.empty()) {
              const std::string& target = written_[in_.ConsumeIntegralInRange<size_t>(0, written_.size() - 1)];
              H5Lcreate_soft(("/" + target).c_str(), id_, name.c_str(), lcpl.id, H5P_DEFAULT);
            }
            return;
          default:
            H5Lcreate_external(in_.ConsumeBool() ? "missing.h5" : path_.c_str(), ("/" + name).c_str(), id_,
                               name.c_str(), lcpl.id, H5P_DEFAULT);
            return;
        }
      }
      default: v.type = Elem::F64; break;  // float64 where ints or float32 are meant
    }
  }
  write_dataset(name, v, layout);
}

void HostileH5::write_dataset(const std::string& name, const Values& v, Layout layout) {
  const int rank = int(v.dims.size());
  std::vector<hsize_t> dims(v.dims.begin(), v.dims.end()), maxdims(rank, H5S_UNLIMITED), chunk(rank);
  for (int d = 0; d < rank; ++d) chunk[d] = std::clamp<hsize_t>(dims[d], 1, 4);
  const bool chunked = rank > 0 && (layout == Layout::Chunked || layout == Layout::Gzip || layout == Layout::Huge);
  Owned space{layout == Layout::NullSpace ? H5Screate(H5S_NULL)
              : rank == 0                 ? H5Screate(H5S_SCALAR)
                                          : H5Screate_simple(rank, dims.data(), chunked ? maxdims.data() : nullptr),
              H5Sclose};
  if (space.id < 0) return;
  Owned lcpl{H5Pcreate(H5P_LINK_CREATE), H5Pclose}, dcpl{H5Pcreate(H5P_DATASET_CREATE), H5Pclose};
  H5Pset_create_intermediate_group(lcpl.id, 1);
  if (chunked) {
    H5Pset_chunk(dcpl.id, rank, chunk.data());
    if (layout == Layout::Gzip) {
      H5Pset_shuffle(dcpl.id);
      H5Pset_deflate(dcpl.id, 1);
    }
  }
  const int64_t n = layout == Layout::NullSpace ? 0 : v.numel();
  std::vector<uint8_t> buf;
  hid_t mem_id = -1;
  Owned file_type{encode(v, v.type, n, buf, &mem_id), H5Tclose};
  Owned mem_type{mem_id, H5Tclose};
  if (layout == Layout::Compact && buf.size() < 60000) H5Pset_layout(dcpl.id, H5D_COMPACT);
  if (layout == Layout::External && rank > 0)
    H5Pset_external(dcpl.id, "missing-raw-data.bin", 0, H5F_UNLIMITED);
  Owned d{H5Dcreate2(id_, name.c_str(), file_type.id, space.id, lcpl.id, dcpl.id, H5P_DEFAULT), H5Dclose};
  if (d.id < 0) return;
  written_.push_back(name);
  if (layout == Layout::Huge || layout == Layout::External || n == 0 || !v.fits()) return;
  if (v.type == Elem::VarStr) {
    std::vector<std::string> s(n);
    std::vector<const char*> p(n);
    for (int64_t i = 0; i < n; ++i) p[i] = (s[i] = v.text_at(i)).c_str();
    H5Dwrite(d.id, mem_type.id, H5S_ALL, H5S_ALL, H5P_DEFAULT, p.data());
  } else if (v.fits()) {  // the whole extent was encoded
    H5Dwrite(d.id, mem_type.id, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data());
  }
}

void HostileH5::attribute(const std::string& name, Values v) {
  if (id_ < 0) return;
  bool null_space = false;
  const int changes = in_.ConsumeIntegralInRange(0, 3);
  for (int c = 0; c < changes; ++c) {
    switch (in_.ConsumeIntegralInRange(0, 6)) {
      case 0: return;  // left out
      case 1: v.type = Elem(in_.ConsumeIntegralInRange<int>(0, int(Elem::kCount) - 1)); break;
      case 2: v.dims = {in_.ConsumeIntegralInRange<int64_t>(0, 3)}; break;  // an array
      case 3: null_space = true; break;
      case 4: v.type = in_.ConsumeBool() ? Elem::FixedStr : Elem::VarStr; break;
      case 5:
        if (v.text.empty()) {
          mutate_values(v);
        } else {
          v.text = {in_.ConsumeRandomLengthString(40)};
        }
        break;
      default: v.type = in_.ConsumeBool() ? Elem::F64 : Elem::I32; break;
    }
  }
  write_attribute(name, v, null_space);
}

void HostileH5::write_attribute(const std::string& name, const Values& v, bool null_space) {
  const int rank = int(v.dims.size());
  std::vector<hsize_t> dims(v.dims.begin(), v.dims.end());
  Owned space{null_space ? H5Screate(H5S_NULL) : rank == 0 ? H5Screate(H5S_SCALAR)
                                                           : H5Screate_simple(rank, dims.data(), nullptr),
              H5Sclose};
  if (space.id < 0) return;
  const int64_t n = null_space ? 0 : v.numel();
  std::vector<uint8_t> buf;
  hid_t mem_id = -1;
  Owned file_type{encode(v, v.type, n, buf, &mem_id), H5Tclose};
  Owned mem_type{mem_id, H5Tclose};
  if (H5Aexists(id_, name.c_str()) > 0) H5Adelete(id_, name.c_str());
  Owned a{H5Acreate2(id_, name.c_str(), file_type.id, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
  if (a.id < 0 || n == 0 || !v.fits()) return;
  if (v.type == Elem::VarStr) {
    std::vector<std::string> s(n);
    std::vector<const char*> p(n);
    for (int64_t i = 0; i < n; ++i) p[i] = (s[i] = v.text_at(i)).c_str();
    H5Awrite(a.id, mem_type.id, p.data());
  } else {
    H5Awrite(a.id, mem_type.id, buf.data());
  }
}

void HostileH5::extras(const std::vector<std::string>& names) {
  const int count = in_.ConsumeIntegralInRange(0, 2);
  for (int i = 0; i < count && id_ >= 0; ++i) {
    const std::string name = names.empty() || in_.ConsumeBool()
                                 ? "extra"
                                 : names[in_.ConsumeIntegralInRange<size_t>(0, names.size() - 1)];
    Values v = Values::of_ints(Elem::I32, {in_.ConsumeIntegralInRange<int64_t>(0, 4)}, {1, 2, 3});
    if (in_.ConsumeBool()) dataset(name, v);
    else attribute(name, v);
  }
}

}  // namespace retort::fuzz
