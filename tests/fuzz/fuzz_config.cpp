// libFuzzer target: YAML configs (core/config.h) and the model section's validation
// (models/model_config.h), as `retort CMD CONFIG --set k=v` and every checkpoint's
// config.yaml go through them. The input is YAML text; lines starting with '@' are taken
// out and applied as `--set` overrides. Loading must throw only ConfigError naming the
// source (or --set), and a loaded config must round-trip: to_yaml() read back gives the same
// hash, every key reads with its type, and the model section validates or fails cleanly.
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "core/config.h"
#include "harness.h"
#include "models/model_config.h"

using namespace retort;
using namespace retort::fuzz;

namespace {

void read_every_key(const Config& c) {
  for (const ConfigKey& k : config_schema()) {
    switch (k.type) {
      case ConfigType::Int: c.get_int(k.key); break;
      case ConfigType::Float: c.get_float(k.key); break;
      case ConfigType::Bool: c.get_bool(k.key); break;
      case ConfigType::String: c.get_string(k.key); break;
      case ConfigType::StringList: c.get_list(k.key); break;
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::string yaml;
  std::vector<std::string> overrides;
  std::istringstream lines(input);
  for (std::string line; std::getline(lines, line);) {
    if (!line.empty() && line[0] == '@') overrides.push_back(line.substr(1));
    else yaml += line + "\n";
  }
  const std::string source = "fuzz.yaml";
  const std::string must_name = overrides.empty() ? source : "";  // --set errors name the override
  std::string resolved;
  const bool loaded = clean_or_error(must_name, [&] {
    const Config c = Config::from_yaml(yaml, source, overrides);
    read_every_key(c);
    resolved = c.to_yaml();
    const Config again = Config::from_yaml(resolved, "resolved.yaml");
    if (again.hash() != c.hash())
      bug(str_cat("to_yaml() does not read back the same config:\n", resolved, "---\n", again.to_yaml()));
    const ModelConfig m = ModelConfig::from_config(c);
    m.n_params();
    m.n_params_nonemb();
    m.flops_per_token_exact();
    m.flops_per_token_mfu();
  });
  (void)loaded;
  return 0;
}
