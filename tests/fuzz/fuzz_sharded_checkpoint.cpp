// libFuzzer target: reassembling parameters from a sharded checkpoint (core/sharded_checkpoint.h:
// shard-RRRRR.h5 files with model/, exp_avg/, exp_avg_sq/ pieces and a JSON "pieces"
// attribute) through read_from_shards, load_model_weights and load_training_state.
// The input picks a valid layout of a small fixed parameter set over 1-3 shard files (whole
// parameters, tensor-parallel row/column slices, or fully sharded flat pieces), then writes
// the "pieces" JSON through hostile_json (missing fields, wrong types, huge/negative/
// overlapping offsets and lengths) and the files through HostileH5. Loads must fail cleanly
// naming the directory, or return every element finite (exp_avg_sq >= 0).
#include <fuzzer/FuzzedDataProvider.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <memory>
#include <numeric>

#include "core/checkpoint.h"
#include "core/sha256.h"
#include "core/sharded_checkpoint.h"
#include "harness.h"
#include "hostile_h5.h"
#include "hostile_json.h"

using namespace retort;
using namespace retort::fuzz;
using nlohmann::json;

namespace {

const std::vector<std::pair<std::string, Shape>> kParams = {
    {"model.embed_tokens.weight", {6, 4}},
    {"model.layers.0.self_attn.o_proj.weight", {4, 6}},
    {"model.norm.weight", {4}},
};

struct Piece {
  size_t param;
  int shard_dim;
  int64_t offset;
  Shape local;
  int64_t begin, n;
};

// Value of element `g` (flat, whole parameter) of parameter `p` in group `group`.
double value_of(size_t p, int64_t g, int group) { return group == 1 ? -0.01 * g : 0.1 * p + 0.01 * g; }

// Splits [0, total) at sorted cut points the input picks into `parts` ranges.
std::vector<std::pair<int64_t, int64_t>> split(FuzzedDataProvider& in, int64_t total, int parts) {
  std::vector<int64_t> cuts = {0, total};
  for (int i = 1; i < parts; ++i) cuts.push_back(in.ConsumeIntegralInRange<int64_t>(0, total));
  std::sort(cuts.begin(), cuts.end());
  std::vector<std::pair<int64_t, int64_t>> out;
  for (size_t i = 0; i + 1 < cuts.size(); ++i) out.push_back({cuts[i], cuts[i + 1] - cuts[i]});
  return out;
}

std::vector<NamedTensor> zeros() {
  std::vector<NamedTensor> out;
  for (const auto& [name, shape] : kParams) out.push_back({name, Tensor::zeros(shape)});
  return out;
}

void expect_finite(const std::vector<NamedTensor>& ts, bool nonnegative) {
  for (const NamedTensor& t : ts) {
    const float* p = t.tensor.host<float>();
    for (int64_t i = 0; i < t.tensor.numel(); ++i)
      if (!std::isfinite(p[i]) || (nonnegative && p[i] < 0))
        bug(str_cat("accepted ", t.name, "[", i, "] = ", p[i]));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  clear_scratch();
  const std::string dir = scratch("step_00000010");
  std::filesystem::create_directories(dir);
  const int files = in.ConsumeIntegralInRange(1, 3);

  // A valid layout: each parameter in 1..files pieces, at most one per file.
  std::vector<std::vector<Piece>> per_file(files);
  for (size_t p = 0; p < kParams.size(); ++p) {
    const Shape& g = kParams[p].second;
    const int parts = in.ConsumeIntegralInRange(1, files);
    std::vector<int> owner(files);
    std::iota(owner.begin(), owner.end(), 0);
    for (int i = files - 1; i > 0; --i) std::swap(owner[i], owner[in.ConsumeIntegralInRange(0, i)]);
    const int dim = parts > 1 && g.size() == 2 ? in.ConsumeIntegralInRange(-1, 1) : -1;
    if (dim < 0) {  // fully sharded: flat pieces of the whole parameter
      const auto ranges = split(in, shape_numel(g), parts);
      for (int i = 0; i < parts; ++i)
        per_file[owner[i]].push_back({p, -1, 0, g, ranges[i].first, ranges[i].second});
    } else {  // tensor parallel: slices along dim
      const auto ranges = split(in, g[dim], parts);
      for (int i = 0; i < parts; ++i) {
        Shape local = g;
        local[dim] = ranges[i].second;
        per_file[owner[i]].push_back({p, dim, ranges[i].first, local, 0, shape_numel(local)});
      }
    }
  }

  json state = {{"step", 10}, {"tokens_seen", 5120}, {"optimizer_steps", 10}, {"format", "sharded"}};
  for (int r = 0; r < files; ++r) {
    json meta = json::array();
    const std::string path = dir + "/" + shard_file_name(r);
    auto f = std::make_unique<HostileH5>(in, path);
    for (const Piece& pc : per_file[r]) {
      const auto& [name, g] = kParams[pc.param];
      meta.push_back({{"name", name}, {"global_shape", g}, {"shard_dim", pc.shard_dim},
                      {"shard_offset", pc.offset}, {"local_shape", pc.local}, {"begin", pc.begin}, {"n", pc.n}});
      const int64_t cols = pc.local.size() == 2 ? pc.local[1] : 1, cols_g = g.size() == 2 ? g[1] : 1;
      const char* groups[] = {"model/", "exp_avg/", "exp_avg_sq/"};
      for (int grp = 0; grp < 3; ++grp) {
        std::vector<double> v;
        for (int64_t j = pc.begin; j < pc.begin + pc.n; ++j) {
          const int64_t row = j / std::max<int64_t>(cols, 1) + (pc.shard_dim == 0 ? pc.offset : 0);
          const int64_t col = j % std::max<int64_t>(cols, 1) + (pc.shard_dim == 1 ? pc.offset : 0);
          const int64_t flat = g.size() == 2 ? row * cols_g + col : j;
          v.push_back(value_of(pc.param, flat, grp));
        }
        f->dataset(groups[grp] + name, Values::of_reals(Elem::F32, {pc.n}, v));
      }
    }
    mutate_json(in, meta, 6);
    f->attribute("pieces", Values::string(hostile_json_text(in, meta)));
    f->extras({"pieces", "model/model.norm.weight"});
    f.reset();
    state["sha256"][shard_file_name(r)] = sha256_file(path);
  }
  std::ofstream(dir + "/state.json") << state.dump();

  clean_or_error(dir, [&] {
    std::vector<NamedTensor> w = zeros(), m = zeros(), v = zeros();
    read_from_shards(dir, "model", w);
    expect_finite(w, false);
    read_from_shards(dir, "exp_avg_sq", v);
    expect_finite(v, true);
    w = zeros();
    v = zeros();
    load_model_weights(dir, w);
    load_training_state(dir, m, v);
    expect_finite(m, false);
  });
  expect_no_open_hdf5_objects();
  return 0;
}
