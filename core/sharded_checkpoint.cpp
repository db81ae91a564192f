#include "core/sharded_checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "core/hdf5.h"

namespace stdfs = std::filesystem;

namespace retort {

namespace {

nlohmann::json describe(const ShardPiece& p) {
  return {{"name", p.name},          {"global_shape", p.global_shape}, {"shard_dim", p.shard_dim},
          {"shard_offset", p.shard_offset}, {"local_shape", p.local_shape}, {"begin", p.begin},
          {"n", p.n}};
}

// Where element j of a piece lands in the whole parameter: the slice is [rows, cols] of the
// whole [rows_g, cols_g]; 1-D parameters are never split.
struct SliceMap {
  int64_t cols, cols_g, row0, col0;
  int64_t operator()(int64_t j) const { return (row0 + j / cols) * cols_g + col0 + j % cols; }
};

SliceMap slice_map(const nlohmann::json& d) {
  const Shape local = d.at("local_shape").get<Shape>(), global = d.at("global_shape").get<Shape>();
  const int dim = d.at("shard_dim").get<int>();
  const int64_t off = d.at("shard_offset").get<int64_t>();
  const int64_t n_local = shape_numel(local);
  SliceMap m{local.size() == 2 ? local[1] : n_local, global.size() == 2 ? global[1] : n_local,
             dim == 0 ? off : 0, dim == 1 ? off : 0};
  return m;
}

}  // namespace

std::string shard_file_name(int index) {
  char name[32];
  std::snprintf(name, sizeof name, "shard-%05d.h5", index);
  return name;
}

void write_shard_file(const std::string& path, const std::vector<ShardPiece>& pieces) {
  const std::string tmp = str_cat(path, ".tmp-", ::getpid());
  try {
    h5::File f = h5::File::create(tmp);
    nlohmann::json meta = nlohmann::json::array();
    for (const ShardPiece& p : pieces) {
      meta.push_back(describe(p));
      f.write("model/" + p.name, p.value.view({p.n}));
      if (p.exp_avg.defined()) f.write("exp_avg/" + p.name, p.exp_avg.view({p.n}));
      if (p.exp_avg_sq.defined()) f.write("exp_avg_sq/" + p.name, p.exp_avg_sq.view({p.n}));
    }
    f.set_attr("pieces", meta.dump());
    f.close();
    fs::fsync_path(tmp);
    fs::rename_durable(tmp, path);
  } catch (...) {
    std::error_code ec;
    stdfs::remove(tmp, ec);
    throw;
  }
}

std::vector<std::string> shard_files(const std::string& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  if (!stdfs::is_directory(dir, ec)) return out;
  for (const auto& e : stdfs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("shard-", 0) == 0 && name.size() > 3 && name.substr(name.size() - 3) == ".h5")
      out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void read_from_shards(const std::string& dir, const std::string& group, std::vector<NamedTensor>& wholes) {
  const std::vector<std::string> files = shard_files(dir);
  if (files.empty()) throw Error(str_cat(dir, ": no model.h5 and no shard-*.h5 files"));
  std::map<std::string, size_t> index;
  std::vector<std::vector<char>> seen(wholes.size());
  for (size_t i = 0; i < wholes.size(); ++i) {
    index[wholes[i].name] = i;
    seen[i].assign(size_t(wholes[i].tensor.numel()), 0);
  }
  for (const std::string& file : files) {
    h5::File f = h5::File::open_read(file);
    nlohmann::json pieces;
    try {
      pieces = nlohmann::json::parse(f.attr_string("pieces"));
      for (const auto& d : pieces) {
        const std::string name = d.at("name").get<std::string>();
        auto it = index.find(name);
        if (it == index.end())
          throw Error(str_cat(file, ": unexpected parameter '", name, "' (does the config match the checkpoint?)"));
        NamedTensor& w = wholes[it->second];
        const Shape global = d.at("global_shape").get<Shape>();
        if (global != w.tensor.shape())
          throw Error(str_cat(file, ": parameter '", name, "' has shape ", shape_str(global),
                              ", the model expects ", shape_str(w.tensor.shape())));
        const int64_t begin = d.at("begin").get<int64_t>(), n = d.at("n").get<int64_t>();
        const std::string dataset = group + "/" + name;
        Tensor piece = f.read(dataset, DType::F32, 1);
        const Shape local = d.at("local_shape").get<Shape>();
        if (piece.numel() != n || begin < 0 || begin + n > shape_numel(local) ||
            shape_numel(local) > w.tensor.numel())
          throw Error(str_cat(file, ": piece of '", name, "' [", begin, ", ", begin + n,
                              ") does not fit its slice ", shape_str(local)));
        const SliceMap map = slice_map(d);
        const float* src = piece.host<float>();
        float* dst = w.tensor.host<float>();
        std::vector<char>& mark = seen[it->second];
        for (int64_t j = 0; j < n; ++j) {
          const int64_t g = map(begin + j);
          if (g < 0 || g >= w.tensor.numel() || mark[g])
            throw Error(str_cat(file, ": parameter '", name, "' element ", g, " is out of range or stored twice"));
          mark[g] = 1;
          dst[g] = src[j];
        }
      }
    } catch (const nlohmann::json::exception& e) {
      throw Error(str_cat(file, ": corrupt 'pieces' attribute: ", e.what()));
    }
  }
  for (size_t i = 0; i < wholes.size(); ++i)
    if (std::find(seen[i].begin(), seen[i].end(), 0) != seen[i].end())
      throw Error(str_cat(dir, ": the shard files lack part of parameter '", wholes[i].name, "' (",
                          group, ")"));
}

}  // namespace retort
