// libFuzzer target: a Hugging Face transformers directory read as a checkpoint (core/
// hf_checkpoint.h), as `retort eval` and `generate.teacher` read one: config.json through
// model_yaml_from_hf_config and the model section's validation, the weights through
// resolve_checkpoint_dir and load_model_weights from model.safetensors, or from two files
// named by model.safetensors.index.json. The input picks a valid directory of a small fixed
// parameter set (its gate and up projections fused as Phi-3 stores them, or not), then flips
// bytes of a safetensors file, or writes its header, its header
// length, the index or config.json through hostile_json. Reads must fail cleanly naming the
// directory, or give finite weights and a config the model accepts.
#include <fuzzer/FuzzedDataProvider.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "core/checkpoint.h"
#include "core/config.h"
#include "core/json_fields.h"
#include "harness.h"
#include "hostile_json.h"
#include "models/hf_config.h"

using namespace retort;
using namespace retort::fuzz;
using nlohmann::json;

namespace {

using Entries = std::vector<std::pair<std::string, Shape>>;

// The model's parameters: tiny_params(), with up_proj's gate_proj beside it when `fused` (the
// file then holds both as Phi-3's gate_up_proj).
Entries model_params(bool fused) {
  Entries out = tiny_params();
  if (fused) out.insert(out.begin() + 1, {"model.layers.0.mlp.gate_proj.weight", out[1].second});
  return out;
}

// What the file stores: the parameters, or with gate and up fused into one [2F, d] tensor.
Entries stored_tensors(bool fused) {
  Entries out = tiny_params();
  if (fused) out[1] = {"model.layers.0.mlp.gate_up_proj.weight", {2 * out[1].second[0], out[1].second[1]}};
  return out;
}

// A safetensors file of entries[first, last) (plus, as the input asks, a tied model's copy of
// the embedding as lm_head.weight) in a dtype the input picks; the header goes through
// hostile_json unless `honest`.
void write_safetensors_file(FuzzedDataProvider& in, const std::string& path, const Entries& entries,
                            size_t first, size_t last, bool honest) {
  const char* dtypes[] = {"F32", "BF16", "F16"};
  const std::string dtype = dtypes[in.ConsumeIntegralInRange(0, 2)];
  const size_t elem = dtype == "F32" ? 4 : 2;
  json header = {{"__metadata__", {{"format", "pt"}}}};
  std::string bytes;
  auto add = [&](const std::string& name, const Shape& shape, const std::string& values) {
    header[name] = {{"dtype", dtype}, {"shape", shape}, {"data_offsets", {bytes.size(), bytes.size() + values.size()}}};
    bytes += values;
  };
  std::string embed;
  for (size_t i = first; i < last; ++i) {
    const auto& [name, shape] = entries[i];
    std::string values(size_t(shape_numel(shape)) * elem, '\0');
    for (char& c : values) c = char(in.ConsumeIntegral<uint8_t>() & 0x3F);  // finite in every dtype
    add(name, shape, values);
    if (i == 0) embed = values;
  }
  if (!embed.empty() && in.ConsumeBool()) add("lm_head.weight", entries[0].second, embed);
  if (!honest) mutate_json(in, header, int64_t(bytes.size()));
  std::string text = honest ? header.dump() : hostile_json_text(in, header);
  uint64_t n = text.size();
  if (!honest && in.ConsumeIntegralInRange(0, 7) == 0) n = in.ConsumeIntegral<uint64_t>();
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(&n), 8);
  f << text << bytes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  clear_scratch();
  const std::string dir = scratch("hf");
  std::filesystem::create_directories(dir);
  const int mode = in.ConsumeIntegralInRange(0, 3);  // 0 flip, 1 hostile header, 2 index, 3 config
  const bool sharded = mode == 2, fused = in.ConsumeBool();  // fused: Phi-3's gate_up_proj
  const Entries stored = stored_tensors(fused);
  if (sharded) {
    write_safetensors_file(in, dir + "/a.safetensors", stored, 0, 2, true);
    write_safetensors_file(in, dir + "/b.safetensors", stored, 2, stored.size(), true);
    json index = {{"weight_map", json::object()}};
    for (size_t i = 0; i < stored.size(); ++i)
      index["weight_map"][stored[i].first] = i < 2 ? "a.safetensors" : "b.safetensors";
    mutate_json(in, index, 0);
    std::ofstream(dir + "/model.safetensors.index.json") << hostile_json_text(in, index);
  } else {
    write_safetensors_file(in, dir + "/model.safetensors", stored, 0, stored.size(), mode != 1);
    if (mode == 0) flip_bytes(in, dir + "/model.safetensors");
  }
  ModelConfig mc;
  mc.vocab_size = 6, mc.d_model = 4, mc.n_layers = 1, mc.n_heads = 1, mc.seq_len = 8;
  // Qwen3, or Llama / Mistral (a sliding_window key to mutate when the window binds)
  mc.qk_norm = in.ConsumeBool();
  if (!mc.qk_norm) mc.sliding_window = in.ConsumeIntegralInRange(0, 9);
  mc.resolve();
  json config = hf_config_json(mc, "float32", -1, -1);
  if (mode == 3) mutate_json(in, config, 4);
  std::ofstream(dir + "/config.json") << (mode == 3 ? hostile_json_text(in, config) : config.dump());

  clean_or_error(dir, [&] {
    if (resolve_checkpoint_dir(dir) != dir) bug("resolve_checkpoint_dir moved away from the directory");
    const std::string yaml = model_yaml_from_hf_config(read_json_file(dir + "/config.json"), dir + "/config.json");
    ModelConfig::from_config(Config::from_yaml(yaml, dir + "/config.json"));
  });
  clean_or_error(dir, [&] {
    std::vector<NamedTensor> weights;
    for (const auto& [name, shape] : model_params(fused)) weights.push_back({name, Tensor::zeros(shape)});
    load_model_weights(dir, weights);
    for (const NamedTensor& t : weights)
      for (int64_t i = 0; i < t.tensor.numel(); ++i)
        if (!std::isfinite(t.tensor.host<float>()[i])) bug(str_cat("accepted ", t.name, "[", i, "]"));
  });
  return 0;
}
