// See json_fields.h.
#include "core/json_fields.h"

#include <cmath>

#include "core/check.h"
#include "core/fs.h"

namespace retort {
namespace {

using json = nlohmann::json;

const json& field(const json& j, const std::string& key, const std::string& file) {
  if (!j.is_object()) throw Error(str_cat(file, ": expected a JSON object holding '", key, "', found ", j.type_name()));
  auto it = j.find(key);
  if (it == j.end()) throw Error(str_cat(file, ": key '", key, "' missing"));
  return *it;
}

// A short rendering of a value for error lines.
std::string shown(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  return s.size() > 40 ? s.substr(0, 37) + "..." : s;
}

int64_t as_int(const json& v, const std::string& what, const std::string& file, int64_t lo, int64_t hi) {
  bool ok = v.is_number_integer();
  int64_t x = 0;
  if (ok && v.is_number_unsigned()) {
    ok = v.get<uint64_t>() <= uint64_t(std::numeric_limits<int64_t>::max());
    if (ok) x = int64_t(v.get<uint64_t>());
  } else if (ok) {
    x = v.get<int64_t>();
  }
  if (!ok) throw Error(str_cat(file, ": ", what, " must be an integer, found ", shown(v)));
  if (x < lo || x > hi)
    throw Error(str_cat(file, ": ", what, " = ", x, " outside [", lo, ", ", hi, "]"));
  return x;
}

}  // namespace

json read_json_file(const std::string& path, const std::string& what) {
  const std::string text = fs::read_file(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw Error(str_cat(path, ": ", what, ": ", e.what()));
  }
}

int64_t json_int(const json& j, const std::string& key, const std::string& file, int64_t lo, int64_t hi) {
  return as_int(field(j, key, file), str_cat("key '", key, "'"), file, lo, hi);
}

double json_number(const json& j, const std::string& key, const std::string& file) {
  const json& v = field(j, key, file);
  if (!v.is_number() || !std::isfinite(v.get<double>()))
    throw Error(str_cat(file, ": key '", key, "' must be a finite number, found ", shown(v)));
  return v.get<double>();
}

std::string json_string(const json& j, const std::string& key, const std::string& file) {
  const json& v = field(j, key, file);
  if (!v.is_string()) throw Error(str_cat(file, ": key '", key, "' must be a string, found ", shown(v)));
  return v.get<std::string>();
}

std::vector<int64_t> json_int_list(const json& j, const std::string& key, const std::string& file,
                                   int64_t lo, int64_t hi) {
  const json& v = field(j, key, file);
  if (!v.is_array()) throw Error(str_cat(file, ": key '", key, "' must be a list of integers, found ", shown(v)));
  std::vector<int64_t> out;
  for (size_t i = 0; i < v.size(); ++i)
    out.push_back(as_int(v[i], str_cat("key '", key, "'[", i, "]"), file, lo, hi));
  return out;
}

}  // namespace retort
