#include "core/sharded_checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "core/fs.h"
#include "core/hdf5.h"
#include "core/json_fields.h"

namespace stdfs = std::filesystem;

namespace retort {

namespace {

nlohmann::json describe(const ShardPiece& p) {
  return {{"name", p.name},          {"global_shape", p.global_shape}, {"shard_dim", p.shard_dim},
          {"shard_offset", p.shard_offset}, {"local_shape", p.local_shape}, {"begin", p.begin},
          {"n", p.n}};
}

// One entry of a shard file's "pieces", checked against the parameter's whole shape.
struct PieceDesc {
  std::string name;
  int shard_dim = -1;
  int64_t shard_offset = 0, begin = 0, n = 0;
  Shape local;
  int64_t cols = 1, cols_g = 1;  // widths of the slice and of the whole parameter (2-D)

  // Where element j of the piece lands in the whole parameter: the slice is rows
  // (shard_dim 0) or columns (1) [shard_offset, shard_offset + local[d]) of it.
  int64_t operator()(int64_t j) const {
    const int64_t e = begin + j;  // element of the slice
    if (local.size() != 2) return (shard_dim == 0 ? shard_offset : 0) + e;
    const int64_t row = e / cols + (shard_dim == 0 ? shard_offset : 0);
    const int64_t col = e % cols + (shard_dim == 1 ? shard_offset : 0);
    return row * cols_g + col;
  }
};

// Parses and checks one "pieces" entry; `whole` maps names to whole shapes. Every number is
// checked before any arithmetic, so the element map stays inside the whole parameter.
PieceDesc parse_piece(const nlohmann::json& d, const std::string& file,
                      const std::map<std::string, Shape>& whole) {
  const std::string where = str_cat(file, ": 'pieces' entry");
  PieceDesc p;
  p.name = json_string(d, "name", where);
  auto it = whole.find(p.name);
  if (it == whole.end())
    throw Error(str_cat(file, ": unexpected parameter '", p.name, "' (does the config match the checkpoint?)"));
  const Shape& g = it->second;
  const Shape global = json_int_list(d, "global_shape", where, 0, INT64_MAX);
  if (global != g)
    throw Error(str_cat(file, ": parameter '", p.name, "' has shape ", shape_str(global),
                        ", the model expects ", shape_str(g)));
  p.shard_dim = int(json_int(d, "shard_dim", where, -1, int64_t(g.size()) - 1));
  p.local = json_int_list(d, "local_shape", where, 0, INT64_MAX);
  const int64_t extent = p.shard_dim >= 0 ? g[p.shard_dim] : 0;
  p.shard_offset = json_int(d, "shard_offset", where, 0, extent);
  bool fits = p.local.size() == g.size() && (p.shard_dim < 0 || g.size() <= 2);
  for (size_t i = 0; fits && i < g.size(); ++i)
    fits = int(i) == p.shard_dim ? p.local[i] <= g[i] - p.shard_offset : p.local[i] == g[i];
  if (!fits || (p.shard_dim < 0 && p.shard_offset != 0))
    throw Error(str_cat(file, ": piece of '", p.name, "': slice ", shape_str(p.local), " at offset ",
                        p.shard_offset, " along dim ", p.shard_dim, " does not fit ", shape_str(g)));
  const int64_t local_numel = shape_numel(p.local);  // <= numel of the whole: no overflow
  p.begin = json_int(d, "begin", where, 0, local_numel);
  p.n = json_int(d, "n", where, 0, local_numel - p.begin);
  if (p.local.size() == 2) p.cols = std::max<int64_t>(p.local[1], 1), p.cols_g = g[1];
  return p;
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
    // Pieces on a GPU are copied to the host to be written (the same file as the CPU's).
    auto host = [](const Tensor& t) { return t.device() == Device::CPU ? t : t.to(Device::CPU); };
    for (const ShardPiece& p : pieces) {
      meta.push_back(describe(p));
      f.write("model/" + p.name, host(p.value).view({p.n}));
      if (p.exp_avg.defined()) f.write("exp_avg/" + p.name, host(p.exp_avg).view({p.n}));
      if (p.exp_avg_sq.defined()) f.write("exp_avg_sq/" + p.name, host(p.exp_avg_sq).view({p.n}));
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
  std::map<std::string, Shape> whole_shapes;
  std::vector<std::vector<char>> seen(wholes.size());
  for (size_t i = 0; i < wholes.size(); ++i) {
    index[wholes[i].name] = i;
    whole_shapes[wholes[i].name] = wholes[i].tensor.shape();
    seen[i].assign(size_t(wholes[i].tensor.numel()), 0);
  }
  for (const std::string& file : files) {
    h5::File f = h5::File::open_read(file);
    nlohmann::json pieces;
    try {
      pieces = nlohmann::json::parse(f.attr_string("pieces"));
    } catch (const nlohmann::json::exception& e) {
      throw Error(str_cat(file, ": corrupt 'pieces' attribute: ", e.what()));
    }
    if (!pieces.is_array()) throw Error(str_cat(file, ": 'pieces' attribute is not a JSON list"));
    for (const auto& d : pieces) {
      const PieceDesc p = parse_piece(d, file, whole_shapes);
      const std::string dataset = group + "/" + p.name;
      Tensor piece = f.read(dataset, DType::F32, 1);
      if (piece.numel() != p.n)
        throw Error(str_cat(file, ": dataset '", dataset, "' holds ", piece.numel(), " values, 'pieces' says ", p.n));
      const float* src = piece.host<float>();
      check_checkpoint_values(file, dataset, src, p.n);
      NamedTensor& w = wholes[index.at(p.name)];
      float* dst = w.tensor.host<float>();
      std::vector<char>& mark = seen[index.at(p.name)];
      for (int64_t j = 0; j < p.n; ++j) {
        const int64_t g = p(j);
        if (g < 0 || g >= w.tensor.numel() || mark[g])
          throw Error(str_cat(file, ": parameter '", p.name, "' element ", g, " is out of range or stored twice"));
        mark[g] = 1;
        dst[g] = src[j];
      }
    }
  }
  for (size_t i = 0; i < wholes.size(); ++i)
    if (std::find(seen[i].begin(), seen[i].end(), 0) != seen[i].end())
      throw Error(str_cat(dir, ": the shard files lack part of parameter '", wholes[i].name, "' (",
                          group, ")"));
}

}  // namespace retort
