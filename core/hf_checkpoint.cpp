#include "core/hf_checkpoint.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include "core/fs.h"
#include "core/json_fields.h"
#include "core/safetensors.h"
#include "core/sha256.h"

namespace stdfs = std::filesystem;

namespace retort {

namespace {

const char* kSingle = "model.safetensors";
const char* kIndex = "model.safetensors.index.json";

// name → the safetensors file (in dir) that holds it, from the index's weight_map; {} when
// the directory has a single model.safetensors.
std::map<std::string, std::string> weight_map(const std::string& dir) {
  const std::string index = (stdfs::path(dir) / kIndex).string();
  if (stdfs::exists(stdfs::path(dir) / kSingle) || !stdfs::exists(index)) return {};
  const nlohmann::json j = read_json_file(index);
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw Error(str_cat(index, ": no 'weight_map' object"));
  std::map<std::string, std::string> out;
  for (const auto& [name, file] : j["weight_map"].items()) {
    if (!file.is_string()) throw Error(str_cat(index, ": weight_map['", name, "'] is not a file name"));
    const std::string f = file.get<std::string>();
    if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
      throw Error(str_cat(index, ": weight_map['", name, "'] = '", f, "' is not a file of the directory"));
    out[name] = (stdfs::path(dir) / f).string();
  }
  return out;
}

// The safetensors files of `dir`, each opened once.
std::vector<SafetensorsFile> open_files(const std::string& dir,
                                        const std::map<std::string, std::string>& map) {
  std::set<std::string> paths;
  for (const auto& [name, path] : map) paths.insert(path);
  if (map.empty()) paths.insert((stdfs::path(dir) / kSingle).string());
  std::vector<SafetensorsFile> files;
  for (const auto& p : paths) files.push_back(SafetensorsFile::open(p));
  return files;
}

// Whether a tied model's lm_head.weight, stored anyway (Qwen3-0.6B's file holds one), is a copy
// of the embedding the model reads instead.
bool equals_embedding(const SafetensorsFile& f, const std::vector<NamedTensor>& params) {
  auto embed = std::find_if(params.begin(), params.end(),
                            [](const NamedTensor& p) { return p.name == "model.embed_tokens.weight"; });
  if (embed == params.end() || f.entries().at("lm_head.weight").shape != embed->tensor.shape())
    return false;
  std::vector<float> head(size_t(embed->tensor.numel()));
  f.read_f32("lm_head.weight", head.data());
  return std::equal(head.begin(), head.end(), embed->tensor.host<float>());
}

}  // namespace

bool is_hf_checkpoint_dir(const std::string& dir) {
  const stdfs::path d(dir);
  std::error_code ec;
  return stdfs::exists(d / "config.json", ec) && !stdfs::exists(d / "model.h5", ec) &&
         (stdfs::exists(d / kSingle, ec) || stdfs::exists(d / kIndex, ec));
}

void load_hf_weights(const std::string& dir, std::vector<NamedTensor>& params) {
  const auto map = weight_map(dir);
  const std::vector<SafetensorsFile> files = open_files(dir, map);
  // where each tensor is: the file the index names (it must list it), else the single file
  std::map<std::string, const SafetensorsFile*> where;
  for (const auto& f : files)
    for (const auto& [name, e] : f.entries()) {
      if (!map.empty() && (!map.count(name) || map.at(name) != f.path())) continue;
      where[name] = &f;
    }
  const bool tied = std::none_of(params.begin(), params.end(),
                                 [](const NamedTensor& p) { return p.name == "lm_head.weight"; });
  for (auto& p : params) {
    auto it = where.find(p.name);
    if (it == where.end())
      throw Error(str_cat(map.empty() ? (stdfs::path(dir) / kSingle).string()
                                      : (stdfs::path(dir) / kIndex).string(),
                          ": no tensor '", p.name, "' (does config.json match the weights?)"));
    const SafetensorsFile::Entry& e = it->second->entries().at(p.name);
    if (e.shape != p.tensor.shape())
      throw Error(str_cat(it->second->path(), ": tensor '", p.name, "' has shape ", shape_str(e.shape),
                          ", the model needs ", shape_str(p.tensor.shape())));
    float* v = p.tensor.host<float>();
    it->second->read_f32(p.name, v);
    check_checkpoint_values(it->second->path(), p.name, v, p.tensor.numel());
  }
  for (const auto& entry : where) {  // (clang 14 cannot capture a structured binding)
    const std::string& name = entry.first;
    const SafetensorsFile* f = entry.second;
    const bool known = std::any_of(params.begin(), params.end(),
                                   [&](const NamedTensor& p) { return p.name == name; });
    if (known || name.ends_with("rotary_emb.inv_freq")) continue;
    if (tied && name == "lm_head.weight") {  // transformers ties it over the stored one too
      if (!equals_embedding(*f, params))
        std::fprintf(stderr, "retort: warning: %s: lm_head.weight differs from model.embed_tokens.weight; "
                     "config.json ties them (tie_word_embeddings), so it is not used, as in transformers\n",
                     f->path().c_str());
      continue;
    }
    throw Error(str_cat(f->path(), ": unexpected tensor '", name, "' (does config.json match the weights?)"));
  }
}

std::string hf_weights_sha256(const std::string& dir) {
  const auto map = weight_map(dir);
  if (map.empty()) return sha256_file((stdfs::path(dir) / kSingle).string());
  std::set<std::string> paths;
  for (const auto& [name, path] : map) paths.insert(path);
  std::string digests;
  for (const auto& p : paths) digests += sha256_file(p);
  return sha256_hex(digests);
}

}  // namespace retort
