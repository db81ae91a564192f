#include "core/matmul_tuning_file.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <vector>

#include "core/check.h"
#include "core/fs.h"
#include "core/json_fields.h"
#include "core/ops.h"

namespace retort {

namespace {
std::vector<ops::TunedProduct> g_loaded;  // this process's presets, kept until they are used
}

int load_matmul_choices(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return 0;
  const nlohmann::json j = read_json_file(path, "not a matmul tuning file");
  if (!j.is_object() || !j.contains("products") || !j["products"].is_array())
    throw Error(str_cat(path, ": key 'products' must be a list of timed products"));
  if (json_string(j, "identity", path) != ops::matmul_tuning_identity()) return -1;
  std::vector<ops::TunedProduct> choices;
  for (const nlohmann::json& p : j["products"]) {
    ops::TunedProduct t;
    t.key = json_string(p, "key", path);
    t.shape = json_string(p, "shape", path);
    t.candidates = int(json_int(p, "candidates", path, 1, 1 << 20));
    t.chosen = int(json_int(p, "chosen", path, 0, t.candidates - 1));
    t.heuristic_us = json_number(p, "heuristic_us", path);
    t.chosen_us = json_number(p, "chosen_us", path);
    choices.push_back(std::move(t));
  }
  ops::preset_matmul_choices(choices);
  g_loaded.insert(g_loaded.end(), choices.begin(), choices.end());
  return int(choices.size());
}

void save_matmul_choices(const std::string& path) {
  std::vector<ops::TunedProduct> tuned = ops::matmul_tuned_products();
  for (const ops::TunedProduct& t : g_loaded)  // presets no product of this process used yet
    if (std::none_of(tuned.begin(), tuned.end(), [&](const auto& u) { return u.key == t.key; }))
      tuned.push_back(t);
  if (tuned.empty()) return;
  nlohmann::json products = nlohmann::json::array();
  for (const ops::TunedProduct& t : tuned)
    products.push_back({{"key", t.key}, {"shape", t.shape}, {"candidates", t.candidates},
                        {"chosen", t.chosen}, {"heuristic_us", t.heuristic_us},
                        {"chosen_us", t.chosen_us}});
  const nlohmann::json j = {{"identity", ops::matmul_tuning_identity()}, {"products", products}};
  fs::create_directories(std::filesystem::path(path).parent_path().string());
  fs::write_file_atomic(path, j.dump(1) + "\n");
}

}  // namespace retort
