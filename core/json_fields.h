// Checked access to fields of the JSON files retort reads (corpus manifests, checkpoint
// state.json, a shard file's "pieces"). nlohmann's get<T>() converts silently (1e300 to an
// int64 is undefined behaviour, 2.5 becomes 2, true becomes 1) and its exceptions name no
// file; these require the exact JSON type and range and throw retort::Error
// "<file>: key '<key>' ..." instead.
#pragma once
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace retort {

// The JSON document in file `path`; Error "<path>: <what>: <the parser's message>" when it does
// not parse (or "<path>: cannot read: ..." when it cannot be read).
nlohmann::json read_json_file(const std::string& path, const std::string& what = "not JSON");

// j[key] as an integer in [lo, hi] (a JSON integer, not a float, bool or string).
int64_t json_int(const nlohmann::json& j, const std::string& key, const std::string& file,
                 int64_t lo = std::numeric_limits<int64_t>::min(),
                 int64_t hi = std::numeric_limits<int64_t>::max());
// j[key] as a finite number (integer or float).
double json_number(const nlohmann::json& j, const std::string& key, const std::string& file);
std::string json_string(const nlohmann::json& j, const std::string& key, const std::string& file);
// j[key] as a list of integers in [lo, hi] (a shape).
std::vector<int64_t> json_int_list(const nlohmann::json& j, const std::string& key,
                                   const std::string& file, int64_t lo, int64_t hi);

}  // namespace retort
