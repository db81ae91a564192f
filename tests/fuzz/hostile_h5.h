// Builds HDF5 files that libhdf5 opens fine (libhdf5 is not robust to byte soup, and fixing it
// is not our job) but whose contents a fuzzer input chooses. The caller says what it means to
// write — a valid file of some format — and the input decides, dataset by dataset and
// attribute by attribute, to write it as meant or a hostile variant:
//   left out; another element type (int8..uint64, big-endian, float16, a non-IEEE 16-bit
//   float, float64, bitfield, opaque, compound, array, enum, strings); another rank or dims;
//   hostile values (NaN, ±inf, ±0, extremes, bound±1 for ids and offsets); chunked+gzip,
//   compact or external-file storage; huge declared dims with no data behind them; an empty
//   (null) or scalar dataspace; a group, a dangling/self soft link or an external link in its
//   place; extra datasets and attributes.
// Every HDF5 call that the chosen variant makes fail is skipped: the file stays valid HDF5.
#pragma once
#include <fuzzer/FuzzedDataProvider.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace retort::fuzz {

enum class Elem : uint8_t {
  I8, I16, I32, I64, U8, U16, U32, U64, I32BE,
  F16, F16Odd, F32, F64, F64BE,
  Bitfield, Opaque, Compound, Array2, Enum, FixedStr, VarStr,
  kCount
};

// What the caller means to write: element type, dims and the values in row-major order
// (integers for integer types, reals for float types, text for strings; any kind is
// converted when the input changes the type). `near` is the bound that matters for these
// values (vocab size for ids, length for offsets): hostile values cluster around it.
struct Values {
  Elem type = Elem::I32;
  Shape dims;  // {} = scalar
  std::vector<int64_t> ints;
  std::vector<double> reals;
  std::vector<std::string> text;
  int64_t near = 0;

  static Values of_ints(Elem t, Shape dims, std::vector<int64_t> v, int64_t near = 0);
  static Values of_reals(Elem t, Shape dims, std::vector<double> v);
  static Values scalar(int64_t v) { return of_ints(Elem::I64, {}, {v}, v); }
  static Values scalar_real(double v) { return of_reals(Elem::F64, {}, {v}); }
  static Values string(std::string s);

  int64_t numel() const;  // capped at what one dataset writes
  bool fits() const;      // the exact element count is within that cap
  int64_t int_at(int64_t i) const;      // from whichever kind is filled (0 when none)
  double real_at(int64_t i) const;
  std::string text_at(int64_t i) const;
};

// An integer the fuzzer finds interesting near `near`; a real from NaN/±inf/±0/extremes.
int64_t hostile_int(FuzzedDataProvider& in, int64_t near);
double hostile_real(FuzzedDataProvider& in);

class HostileH5 {
 public:
  HostileH5(FuzzedDataProvider& in, const std::string& path);  // creates (truncates) path
  ~HostileH5();
  HostileH5(const HostileH5&) = delete;
  HostileH5& operator=(const HostileH5&) = delete;

  // Dataset `name` (may contain '/'): `v` as meant or a hostile variant.
  void dataset(const std::string& name, Values v);
  // Root attribute `name`: `v` as meant or a hostile variant.
  void attribute(const std::string& name, Values v);
  // Zero or more extra datasets and root attributes named from `names` or "extra".
  void extras(const std::vector<std::string>& names);
  void close();

 private:
  enum class Layout { Contiguous, Chunked, Gzip, Compact, Huge, External, NullSpace };
  void mutate_values(Values& v);
  void write_dataset(const std::string& name, const Values& v, Layout layout);
  void write_attribute(const std::string& name, const Values& v, bool null_space);

  FuzzedDataProvider& in_;
  std::string path_;
  int64_t id_ = -1;  // hid_t of the file
  std::vector<std::string> written_;  // dataset names written so far (link targets)
};

}  // namespace retort::fuzz
