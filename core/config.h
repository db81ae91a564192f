// Configuration: a YAML file plus `--set dotted.key=value` overrides, checked against the
// schema in core/config_schema.cpp (every key, its type, default and documentation).
// Unknown keys, wrong types and malformed YAML throw ConfigError naming the file and key
// (with the nearest known key as a suggestion).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/check.h"

namespace retort {

enum class ConfigType { Int, Float, Bool, String, StringList, IntList };

struct ConfigKey {
  std::string key;         // dotted, e.g. "train.lr"
  ConfigType type;
  std::string default_value;  // YAML scalar text; "" for a string means unset; lists: "[]"
  std::string doc;         // one line for the reference (docs/CONFIG.md)
};

// The full schema, in documentation order.
const std::vector<ConfigKey>& config_schema();

class Config {
 public:
  // Load FILE (may be "" for defaults only) then apply overrides "a.b=value" in order.
  static Config load(const std::string& path, const std::vector<std::string>& overrides = {});
  // Parse YAML text (source names it in errors).
  static Config from_yaml(const std::string& yaml_text, const std::string& source,
                          const std::vector<std::string>& overrides = {});

  // Typed getters; throw ConfigError for unknown keys (a programming error) or bad values.
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  std::vector<std::string> get_list(const std::string& key) const;
  std::vector<int64_t> get_int_list(const std::string& key) const;
  bool was_set(const std::string& key) const;  // given in the file or an override

  // Change a value programmatically (validated like an override).
  void set(const std::string& key, const std::string& value);

  // Every schema key whose resolved value differs from `other`'s, in schema order: the key,
  // then this config's value and other's, as YAML scalar text (lists as flow YAML).
  struct Difference {
    std::string key, ours, theirs;
  };
  std::vector<Difference> differences(const Config& other) const;

  // Resolved config (every schema key) as nested YAML, in schema order.
  std::string to_yaml() const;
  // sha256 hex of to_yaml(): ranks compare it at start-up.
  std::string hash() const;
  // Where the config came from ("" for defaults), for error messages.
  const std::string& source() const { return source_; }

  // ConfigError("<source>: key '<key>': <what>").
  [[noreturn]] void fail(const std::string& key, const std::string& what) const;

 private:
  // Validate and store one value given as text (an override); errors start with `origin`.
  void assign(const std::string& key, const std::string& value, const std::string& origin);
  // The schema entry for `key`, checked against the getter's type (Float also reads Int).
  const ConfigKey& lookup(const std::string& key, ConfigType want) const;

  std::string source_;
  std::map<std::string, std::string> values_;  // key -> YAML scalar text (lists as flow YAML)
  std::map<std::string, bool> set_;
};

// Levenshtein-nearest schema key, for "did you mean" suggestions.
std::string nearest_config_key(const std::string& key);

// docs/CONFIG.md: a Markdown table of every schema key (key, type, default, doc) grouped by
// section, with a preamble on files, --set and errors.
std::string config_reference_markdown();

}  // namespace retort
