// Config: YAML file + `--set` overrides, validated against config_schema().
//
// Values are kept canonical so that to_yaml() (and so hash()) depends only on the values,
// not on how they were spelled: ints in decimal, floats in shortest round-trip form with a
// '.' in the mantissa (1.0e-05, so that YAML 1.1 readers such as PyYAML also see a float),
// bools as true/false, strings as their text, lists as flow YAML.
#include "core/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

#include "core/sha256.h"
#include "core/edit_distance.h"

namespace retort {

namespace {

const ConfigKey* find_key(const std::string& key) {
  for (const ConfigKey& k : config_schema())
    if (k.key == key) return &k;
  return nullptr;
}

std::string section_of(const std::string& key) { return key.substr(0, key.find('.')); }

bool is_section(const std::string& name) {
  for (const ConfigKey& k : config_schema())
    if (section_of(k.key) == name) return true;
  return false;
}

// " (did you mean 'X'?)" when a key or section name is close enough to be a typo.
std::string suggestion(const std::string& name) {
  std::vector<std::string> candidates;
  for (const ConfigKey& k : config_schema())
    candidates.push_back(name.find('.') == std::string::npos ? section_of(k.key) : k.key);
  std::string best;
  size_t best_d = SIZE_MAX;
  for (const std::string& c : candidates) {
    size_t d = edit_distance(name, c);
    if (d < best_d) best_d = d, best = c;
  }
  if (best_d <= std::max<size_t>(2, name.size() / 3)) return " (did you mean '" + best + "'?)";
  return " (see docs/CONFIG.md for the known keys)";
}

const char* node_kind(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Null: return "nothing";
    default: return "a scalar";
  }
}

std::string describe(const YAML::Node& n) {
  return n.IsScalar() ? "'" + printable(n.Scalar()) + "'" : node_kind(n);
}

// Shortest round-trip text of a double, always with a '.' in the mantissa; plain digits for
// magnitudes in [1e-4, 1e16) as Python's repr does (500000.0, 0.003, 1.0e-05).
std::string format_float(double v) {
  char buf[400];
  double mag = std::fabs(v);
  auto fmt = v == 0 || (mag >= 1e-4 && mag < 1e16) ? std::chars_format::fixed
                                                    : std::chars_format::scientific;
  auto res = std::to_chars(buf, buf + sizeof buf, v, fmt);
  std::string s(buf, res.ptr);
  size_t e = s.find('e');
  std::string mant = s.substr(0, e), exp = e == std::string::npos ? "" : s.substr(e);
  if (mant.find('.') == std::string::npos) mant += ".0";
  return mant + exp;
}

bool parse_int(const std::string& s, int64_t* out) {
  static const std::regex re("[-+]?[0-9]+");
  if (!std::regex_match(s, re)) return false;
  const char* b = s.data() + (s[0] == '+');
  auto res = std::from_chars(b, s.data() + s.size(), *out);
  return res.ec == std::errc() && res.ptr == s.data() + s.size();
}

bool parse_float(const std::string& s, double* out) {
  static const std::regex re("[-+]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?");
  if (!std::regex_match(s, re)) return false;
  const char* b = s.data() + (s[0] == '+');
  auto res = std::from_chars(b, s.data() + s.size(), *out);
  return res.ec == std::errc() && std::isfinite(*out);
}

// Quote strings that YAML (1.1 or 1.2) would otherwise read as a number, bool or null.
void emit_string(YAML::Emitter& e, const std::string& s) {
  static const std::regex special(
      "[-+]?([0-9][0-9_]*\\.?[0-9_]*|\\.[0-9]+)([eE][-+]?[0-9]+)?|0x[0-9a-fA-F]+|"
      "(true|false|yes|no|on|off|y|n|null|~|\\.inf|\\.nan)",
      std::regex::icase);
  if (std::regex_match(s, special)) e << YAML::DoubleQuoted;
  e << s;
}

std::string flow_list(const std::vector<std::string>& items) {
  YAML::Emitter e;
  e << YAML::Flow << YAML::BeginSeq;
  for (const std::string& s : items) emit_string(e, s);
  e << YAML::EndSeq;
  return e.c_str();
}

// Check `node` against the type of `k` and return its canonical text, or throw
// ConfigError("<origin>: key '<key>': expected ..., got ...").
std::string canonical(const ConfigKey& k, const YAML::Node& node, const std::string& origin) {
  auto bad = [&](const char* expected) -> std::string {
    throw ConfigError(origin + ": key '" + k.key + "': expected " + expected + ", got " +
                      describe(node));
  };
  switch (k.type) {
    case ConfigType::Int: {
      int64_t v;
      if (!node.IsScalar() || !parse_int(node.Scalar(), &v)) return bad("an integer");
      return std::to_string(v);
    }
    case ConfigType::Float: {
      double v;
      if (!node.IsScalar() || !parse_float(node.Scalar(), &v)) return bad("a number");
      return format_float(v);
    }
    case ConfigType::Bool: {
      static const std::regex t("true|True|TRUE"), f("false|False|FALSE");
      if (node.IsScalar() && std::regex_match(node.Scalar(), t)) return "true";
      if (node.IsScalar() && std::regex_match(node.Scalar(), f)) return "false";
      return bad("true or false");
    }
    case ConfigType::String:
      if (node.IsNull()) return "";
      if (!node.IsScalar()) return bad("a string");
      return node.Scalar();
    case ConfigType::StringList: {
      std::vector<std::string> items;
      if (node.IsScalar()) {
        items.push_back(node.Scalar());
      } else if (node.IsSequence()) {
        for (const YAML::Node& item : node) {
          if (!item.IsScalar()) return bad("a list of strings");
          items.push_back(item.Scalar());
        }
      } else if (!node.IsNull()) {
        return bad("a list of strings");
      }
      return flow_list(items);
    }
    case ConfigType::IntList: {  // canonical text "[1, 2]"
      std::string items;
      int64_t v;
      auto add = [&](const YAML::Node& item) {
        if (!item.IsScalar() || !parse_int(item.Scalar(), &v)) return false;
        items += (items.empty() ? "" : ", ") + std::to_string(v);
        return true;
      };
      if (node.IsSequence()) {
        for (const YAML::Node& item : node)
          if (!add(item)) return bad("a list of integers");
      } else if (!node.IsNull() && !add(node)) {
        return bad("a list of integers");
      }
      return "[" + items + "]";
    }
  }
  return "";
}

YAML::Node parse_yaml(const std::string& text, const std::string& origin) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(str_cat(origin, ":", e.mark.line + 1, ":", e.mark.column + 1,
                              ": malformed YAML: ", printable(e.msg)));
  }
}

// Walk a YAML map, collecting leaves as dotted keys; errors name `origin`.
void flatten(const YAML::Node& map, const std::string& prefix, const std::string& origin,
             std::vector<std::pair<std::string, YAML::Node>>* out) {
  for (const auto& kv : map) {
    if (!kv.first.IsScalar())
      throw ConfigError(origin + ": keys must be names, got " + node_kind(kv.first));
    std::string key = prefix + kv.first.Scalar();
    const YAML::Node& value = kv.second;
    if (find_key(key)) {
      out->emplace_back(key, value);
    } else if (is_section(key)) {
      if (!value.IsMap())
        throw ConfigError(origin + ": section '" + key + "' must be a map of keys (e.g. '" +
                          key + ":' then indented 'name: value' lines), got " +
                          describe(value));
      flatten(value, key + ".", origin, out);
    } else if (value.IsMap() && prefix.empty()) {
      throw ConfigError(origin + ": unknown section '" + printable(key) + "'" + suggestion(printable(key)));
    } else {
      throw ConfigError(origin + ": unknown key '" + printable(key) + "'" + suggestion(printable(key)));
    }
  }
}

}  // namespace

std::string nearest_config_key(const std::string& key) {
  std::string best;
  size_t best_d = SIZE_MAX;
  for (const ConfigKey& k : config_schema()) {
    size_t d = edit_distance(key, k.key);
    if (d < best_d) best_d = d, best = k.key;
  }
  return best;
}

Config Config::load(const std::string& path, const std::vector<std::string>& overrides) {
  if (path.empty()) return from_yaml("", "", overrides);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot read config file (missing or unreadable)");
  std::ostringstream text;
  text << in.rdbuf();
  return from_yaml(text.str(), path, overrides);
}

Config Config::from_yaml(const std::string& yaml_text, const std::string& source,
                         const std::vector<std::string>& overrides) {
  Config c;
  c.source_ = source;
  for (const ConfigKey& k : config_schema()) {
    c.values_[k.key] = canonical(k, parse_yaml(k.default_value, "schema"), "schema");
    c.set_[k.key] = false;
  }
  const std::string origin = source.empty() ? "config" : source;
  YAML::Node root = parse_yaml(yaml_text, origin);
  if (!root.IsNull() && !root.IsMap())
    throw ConfigError(origin + ": expected a map of sections at the top level, got " +
                      describe(root));
  std::vector<std::pair<std::string, YAML::Node>> leaves;
  if (root.IsMap()) flatten(root, "", origin, &leaves);
  std::set<std::string> seen;
  for (const auto& [key, node] : leaves) {
    if (!seen.insert(key).second)
      throw ConfigError(origin + ": key '" + key + "' is given more than once");
    c.values_[key] = canonical(*find_key(key), node, origin);
    c.set_[key] = true;
  }
  for (const std::string& o : overrides) {
    size_t eq = o.find('=');
    if (eq == std::string::npos)
      throw ConfigError("--set " + printable(o) + ": expected KEY=VALUE, e.g. --set train.lr=0.001");
    c.assign(o.substr(0, eq), o.substr(eq + 1), "--set " + printable(o));
  }
  return c;
}

void Config::set(const std::string& key, const std::string& value) {
  assign(key, value, "set " + printable(key + "=" + value));
}

void Config::assign(const std::string& key, const std::string& value,
                    const std::string& origin) {
  const ConfigKey* k = find_key(key);
  if (!k) {
    if (is_section(key))
      throw ConfigError(origin + ": '" + key + "' is a section; set one of its keys, e.g. '" +
                        key + ".name=value'");
    throw ConfigError(origin + ": unknown key '" + printable(key) + "'" + suggestion(printable(key)));
  }
  // Strings are taken verbatim (paths may hold '#' or ': ') unless quoted YAML.
  bool verbatim = k->type == ConfigType::String && (value.empty() || (value[0] != '"' &&
                                                                      value[0] != '\''));
  values_[key] = verbatim ? value : canonical(*k, parse_yaml(value, origin), origin);
  set_[key] = true;
}

const ConfigKey& Config::lookup(const std::string& key, ConfigType want) const {
  const ConfigKey* k = find_key(key);
  if (!k) throw ConfigError("unknown config key '" + key + "' requested" + suggestion(key));
  bool ok = k->type == want || (want == ConfigType::Float && k->type == ConfigType::Int);
  if (!ok) throw ConfigError("config key '" + key + "' requested with the wrong type");
  return *k;
}

int64_t Config::get_int(const std::string& key) const {
  lookup(key, ConfigType::Int);
  int64_t v = 0;
  parse_int(values_.at(key), &v);
  return v;
}

double Config::get_float(const std::string& key) const {
  lookup(key, ConfigType::Float);
  double v = 0;
  parse_float(values_.at(key), &v);
  return v;
}

bool Config::get_bool(const std::string& key) const {
  lookup(key, ConfigType::Bool);
  return values_.at(key) == "true";
}

std::string Config::get_string(const std::string& key) const {
  lookup(key, ConfigType::String);
  return values_.at(key);
}

std::vector<std::string> Config::get_list(const std::string& key) const {
  lookup(key, ConfigType::StringList);
  std::vector<std::string> items;
  for (const YAML::Node& item : YAML::Load(values_.at(key))) items.push_back(item.Scalar());
  return items;
}

std::vector<int64_t> Config::get_int_list(const std::string& key) const {
  lookup(key, ConfigType::IntList);
  std::vector<int64_t> items;
  for (const YAML::Node& item : YAML::Load(values_.at(key))) items.push_back(std::stoll(item.Scalar()));
  return items;
}

bool Config::was_set(const std::string& key) const {
  auto it = set_.find(key);
  if (it == set_.end()) throw ConfigError("unknown config key '" + key + "' requested");
  return it->second;
}

std::vector<Config::Difference> Config::differences(const Config& other) const {
  std::vector<Difference> out;
  for (const ConfigKey& k : config_schema()) {
    const std::string &a = values_.at(k.key), &b = other.values_.at(k.key);
    if (a != b) out.push_back({k.key, a, b});
  }
  return out;
}

std::string Config::to_yaml() const {
  std::ostringstream out;
  std::string section;
  for (const ConfigKey& k : config_schema()) {
    if (section_of(k.key) != section) {
      section = section_of(k.key);
      out << section << ":\n";
    }
    const std::string& v = values_.at(k.key);
    out << "  " << k.key.substr(section.size() + 1) << ": ";
    if (k.type == ConfigType::String) {
      YAML::Emitter e;
      emit_string(e, v);
      out << e.c_str() << "\n";
    } else {
      out << v << "\n";
    }
  }
  return out.str();
}

std::string Config::hash() const { return sha256_hex(to_yaml()); }

void Config::fail(const std::string& key, const std::string& what) const {
  throw ConfigError((source_.empty() ? std::string("config") : source_) + ": key '" + key +
                    "': " + what);
}

}  // namespace retort
