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

// Phi-3 stores a layer's q, k, v projections as one qkv_proj [(H + 2·Hkv)·hd, d] and its gate
// and up projections as one gate_up_proj [2F, d] (transformers' Phi3: split in this order): each
// part is a block of rows of the fused tensor, as retort's own flat layout stacks them.
struct Fused {
  const char* whole;
  std::vector<const char*> parts;
};
const Fused kFused[] = {
    {"self_attn.qkv_proj.weight", {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"}},
    {"mlp.gate_up_proj.weight", {"mlp.gate_proj.weight", "mlp.up_proj.weight"}},
};

// Where parameter `name` of layer i lies in a fused tensor: its name (empty when `name` is not a
// fused part), the part's first row and the fused tensor's rows (from the parts' shapes).
struct FusedPart {
  std::string whole;
  int64_t row0 = 0, rows = 0;
};
FusedPart fused_part(const std::string& name, const std::vector<NamedTensor>& params) {
  const std::string layers = "model.layers.";
  const size_t dot = name.find('.', layers.size());
  if (!name.starts_with(layers) || dot == std::string::npos) return {};
  const std::string prefix = name.substr(0, dot + 1), own = name.substr(dot + 1);
  for (const Fused& f : kFused) {
    FusedPart out;
    for (const char* part : f.parts) {
      auto p = std::find_if(params.begin(), params.end(),
                            [&](const NamedTensor& t) { return t.name == prefix + part; });
      if (p == params.end()) return {};
      if (own == part) out.whole = prefix + f.whole, out.row0 = out.rows;
      out.rows += p->tensor.dim(0);
    }
    if (!out.whole.empty()) return out;
  }
  return {};
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
  std::set<std::string> fused_used;
  std::pair<std::string, std::vector<float>> fused_read;  // the fused tensor read last
  for (auto& p : params) {
    float* v = p.tensor.host<float>();
    auto it = where.find(p.name);
    const FusedPart fp = it == where.end() ? fused_part(p.name, params) : FusedPart{};
    if (!fp.whole.empty() && where.count(fp.whole)) {  // rows [row0, row0 + rows) of a fused tensor
      const SafetensorsFile& f = *where.at(fp.whole);
      const Shape& shape = f.entries().at(fp.whole).shape;
      const int64_t rows = p.tensor.dim(0), cols = p.tensor.dim(1);
      if (shape != Shape{fp.rows, cols})
        throw Error(str_cat(f.path(), ": tensor '", fp.whole, "' has shape ", shape_str(shape),
                            ", the model needs ", shape_str({fp.rows, cols})));
      if (fused_read.first != fp.whole) {
        fused_read = {fp.whole, std::vector<float>(size_t(fp.rows * cols))};
        f.read_f32(fp.whole, fused_read.second.data());
      }
      std::copy_n(fused_read.second.data() + fp.row0 * cols, rows * cols, v);
      check_checkpoint_values(f.path(), p.name, v, p.tensor.numel());
      fused_used.insert(fp.whole);
      continue;
    }
    if (it == where.end())
      throw Error(str_cat(map.empty() ? (stdfs::path(dir) / kSingle).string()
                                      : (stdfs::path(dir) / kIndex).string(),
                          ": no tensor '", p.name, "' (does config.json match the weights?)"));
    const SafetensorsFile::Entry& e = it->second->entries().at(p.name);
    if (e.shape != p.tensor.shape())
      throw Error(str_cat(it->second->path(), ": tensor '", p.name, "' has shape ", shape_str(e.shape),
                          ", the model needs ", shape_str(p.tensor.shape())));
    it->second->read_f32(p.name, v);
    check_checkpoint_values(it->second->path(), p.name, v, p.tensor.numel());
  }
  for (const auto& entry : where) {  // (clang 14 cannot capture a structured binding)
    const std::string& name = entry.first;
    const SafetensorsFile* f = entry.second;
    const bool known = fused_used.count(name) ||
                       std::any_of(params.begin(), params.end(), [&](const NamedTensor& p) { return p.name == name; });
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
