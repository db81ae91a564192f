#include "core/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <regex>

#include "core/fs.h"
#include "core/hdf5.h"
#include "core/hf_checkpoint.h"
#include "core/json_fields.h"
#include "core/sha256.h"
#include "core/sharded_checkpoint.h"

namespace stdfs = std::filesystem;

namespace retort {

namespace {

const char* kModelFile = "model.h5";
const char* kOptimizerFile = "optimizer.h5";
const char* kStateFile = "state.json";
const char* kConfigFile = "config.yaml";

void write_tensors(const std::string& prefix, const std::vector<NamedTensor>& tensors,
                   h5::File& file) {
  for (const auto& t : tensors) file.write(prefix + t.name, t.tensor);
}


std::vector<std::pair<int64_t, stdfs::path>> complete_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, stdfs::path>> out;
  std::error_code ec;
  if (!stdfs::is_directory(dir, ec)) return out;
  for (const auto& entry : stdfs::directory_iterator(dir)) {
    int64_t step = checkpoint_dir_step(entry.path().string());
    if (step >= 0 && entry.is_directory() && stdfs::exists(entry.path() / kStateFile))
      out.emplace_back(step, entry.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void read_into(const h5::File& file, const std::string& prefix, std::vector<NamedTensor>& params) {
  for (auto& p : params) {
    std::string name = prefix + p.name;
    if (!file.has(name))
      throw Error(str_cat(file.path(), ": missing parameter '", name, "'"));
    Shape shape = file.shape(name);
    if (shape != p.tensor.shape())
      throw Error(str_cat(file.path(), ": parameter '", name, "' has shape ", shape_str(shape),
                          ", the model expects ", shape_str(p.tensor.shape())));
    Tensor t = file.read(name, DType::F32);
    check_checkpoint_values(file.path(), name, t.host<float>(), t.numel());
    std::copy_n(t.host<float>(), t.numel(), p.tensor.host<float>());
  }
}

// A name state.json may list: a plain file name in the checkpoint directory.
bool plain_file_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find('/') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

// state.json of `dir`, checked, or null when it has none (an exported checkpoint):
// an object with "step" (integer >= 0) and "sha256" (plain file name -> 64 hex digits);
// "tokens_seen", "optimizer_steps" integers >= 0 and "wall_s" a finite number when present.
nlohmann::json read_state(const stdfs::path& dir) {
  const std::string path = (dir / kStateFile).string();
  std::error_code ec;
  if (!stdfs::exists(path, ec)) return nullptr;
  nlohmann::json state = read_json_file(path, "corrupt training state");
  if (!state.is_object()) throw Error(str_cat(path, ": corrupt training state: expected a JSON object"));
  json_int(state, "step", path, 0);
  for (const char* key : {"tokens_seen", "optimizer_steps"})
    if (state.contains(key)) json_int(state, key, path, 0);
  if (state.contains("wall_s")) json_number(state, "wall_s", path);
  if (!state.contains("sha256") || !state["sha256"].is_object())
    throw Error(str_cat(path, ": key 'sha256' missing or not an object of file checksums"));
  for (const auto& [name, sum] : state["sha256"].items()) {
    if (!plain_file_name(name))
      throw Error(str_cat(path, ": 'sha256' lists '", name, "', not a file of the checkpoint directory"));
    json_string(state["sha256"], name, path);
  }
  return state;
}

// Checks the sha256 that state.json records for each listed file that `wanted` accepts,
// before anything parses it (libhdf5 is not robust to corrupt files).
void verify_checksums(const stdfs::path& dir, const nlohmann::json& state,
                      const std::function<bool(const std::string&)>& wanted) {
  for (const auto& [name, expected] : state.at("sha256").items()) {
    if (!wanted(name)) continue;
    const std::string file = (dir / name).string();
    std::error_code ec;
    if (!stdfs::exists(file, ec)) throw Error(str_cat(file, ": missing (listed in ", kStateFile, ")"));
    if (sha256_file(file) != expected.get<std::string>())
      throw Error(str_cat(file, ": checksum mismatch (file corrupted or modified)"));
  }
  // A shard file that state.json does not list was not written with this checkpoint.
  for (const std::string& shard : shard_files(dir.string())) {
    const std::string name = stdfs::path(shard).filename().string();
    if (wanted(name) && !state["sha256"].contains(name))
      throw Error(str_cat(shard, ": not listed in ", kStateFile, " (a stray file?)"));
  }
}

bool is_model_file(const std::string& name) {
  return name == kModelFile || name.rfind("shard-", 0) == 0;
}

}  // namespace

void check_checkpoint_values(const std::string& file, const std::string& dataset, const float* v,
                             int64_t n) {
  const bool second_moment = dataset.rfind("exp_avg_sq/", 0) == 0;
  for (int64_t i = 0; i < n; ++i)
    if (!std::isfinite(v[i]) || (second_moment && v[i] < 0))
      throw Error(str_cat(file, ": dataset '", dataset, "': value ", v[i], " at index ", i,
                          second_moment ? " (a second moment must be finite and >= 0)" : " is not finite"));
}

void write_checkpoint_dir(const std::string& dir, const CheckpointData& data) {
  fs::write_dir_via_temp(dir, [&](const std::string& tmp_dir, const std::string& final_dir) {
    const stdfs::path tmp(tmp_dir);
    std::vector<std::string> written;
    {
      h5::File f = h5::File::create((tmp / kModelFile).string());
      write_tensors("", data.model, f);
      f.close();
      written.push_back(kModelFile);
    }
    if (!data.exp_avg.empty()) {
      h5::File f = h5::File::create((tmp / kOptimizerFile).string());
      write_tensors("exp_avg/", data.exp_avg, f);
      write_tensors("exp_avg_sq/", data.exp_avg_sq, f);
      f.close();
      written.push_back(kOptimizerFile);
    }
    commit_checkpoint_dir(tmp_dir, final_dir, written, data.config_yaml, data.state);
  });
}

void commit_checkpoint_dir(const std::string& tmp_dir, const std::string& final_path,
                           const std::vector<std::string>& written, const std::string& config_yaml,
                           const nlohmann::json& state_in) {
  const stdfs::path tmp(tmp_dir), final_dir = stdfs::absolute(final_path);
  fs::write_file_atomic((tmp / kConfigFile).string(), config_yaml);
  if (!state_in.is_null()) {
    nlohmann::json state = state_in;
    for (const auto& name : written) state["sha256"][name] = sha256_file((tmp / name).string());
    state["sha256"][kConfigFile] = sha256_file((tmp / kConfigFile).string());
    fs::write_file_atomic((tmp / kStateFile).string(), state.dump(2) + "\n");
  }
  for (const auto& name : written) fs::fsync_path((tmp / name).string());
  fs::fsync_path(tmp.string());

  // Replace an existing checkpoint at the same path only after the new one is complete; if
  // the second rename fails, the old one is put back.
  stdfs::path old = final_dir;
  old += str_cat(".old-", ::getpid());
  bool had_old = stdfs::exists(final_dir);
  if (had_old) fs::rename_durable(final_dir.string(), old.string());
  try {
    fs::rename_durable(tmp.string(), final_dir.string());
  } catch (...) {
    if (had_old) std::rename(old.c_str(), final_dir.c_str());
    throw;
  }
  if (had_old) fs::remove_all_quietly(old.string());
}

int64_t checkpoint_dir_step(const std::string& dir) {
  static const std::regex re("step_([0-9]+)");
  std::smatch m;
  std::string name = stdfs::path(dir).filename().string();
  if (!std::regex_match(name, m, re)) return -1;
  return std::stoll(m[1]);
}

std::string checkpoint_step_dir(const std::string& checkpoints_dir, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step_%08lld", static_cast<long long>(step));
  return (stdfs::path(checkpoints_dir) / name).string();
}

void prune_checkpoints(const std::string& checkpoints_dir, int64_t keep_last,
                       const std::vector<int64_t>& keep_steps) {
  if (keep_last <= 0) return;
  auto all = complete_checkpoints(checkpoints_dir);
  for (size_t i = 0; i + keep_last < all.size(); ++i)
    if (std::find(keep_steps.begin(), keep_steps.end(), all[i].first) == keep_steps.end())
      stdfs::remove_all(all[i].second);
}

std::string save_checkpoint(const std::string& checkpoints_dir, int64_t step,
                            const CheckpointData& data, int64_t keep_last,
                            const std::vector<int64_t>& keep_steps) {
  std::string dir = checkpoint_step_dir(checkpoints_dir, step);
  write_checkpoint_dir(dir, data);
  prune_checkpoints(checkpoints_dir, keep_last, keep_steps);
  return dir;
}

std::string find_latest_checkpoint(const std::string& checkpoints_dir) {
  auto all = complete_checkpoints(checkpoints_dir);
  return all.empty() ? "" : all.back().second.string();
}

std::string resolve_checkpoint_dir(const std::string& path) {
  std::error_code ec;
  if (!stdfs::exists(path, ec)) throw Error(str_cat(path, ": no such checkpoint directory"));
  if (stdfs::exists(stdfs::path(path) / kModelFile)) return path;
  if (stdfs::exists(stdfs::path(path) / kStateFile) && !shard_files(path).empty()) return path;
  if (is_hf_checkpoint_dir(path)) return path;
  for (const auto& candidate : {stdfs::path(path), stdfs::path(path) / "checkpoints"}) {
    std::string latest = find_latest_checkpoint(candidate.string());
    if (!latest.empty()) return latest;
  }
  throw Error(str_cat(path, ": not a checkpoint (no ", kModelFile,
                      ", nor config.json with model.safetensors) and holds no complete checkpoints"));
}

void verify_checkpoint_file(const std::string& checkpoint_dir, const std::string& name) {
  if (nlohmann::json state = read_state(checkpoint_dir); !state.is_null())
    verify_checksums(checkpoint_dir, state, [&](const std::string& n) { return n == name; });
}

void load_model_weights(const std::string& checkpoint_dir, std::vector<NamedTensor>& params) {
  if (is_hf_checkpoint_dir(checkpoint_dir)) {
    load_hf_weights(checkpoint_dir, params);
    return;
  }
  // A training checkpoint's state.json holds the checksums of the files read here.
  if (nlohmann::json state = read_state(checkpoint_dir); !state.is_null())
    verify_checksums(checkpoint_dir, state, is_model_file);
  if (!stdfs::exists(stdfs::path(checkpoint_dir) / kModelFile) && !shard_files(checkpoint_dir).empty()) {
    read_from_shards(checkpoint_dir, "model", params);
    return;
  }
  h5::File f = h5::File::open_read((stdfs::path(checkpoint_dir) / kModelFile).string());
  read_into(f, "", params);
  for (const auto& name : f.list()) {
    bool known = std::any_of(params.begin(), params.end(),
                             [&](const NamedTensor& p) { return p.name == name; });
    if (!known)
      throw Error(str_cat(f.path(), ": unexpected parameter '", name,
                          "' (does the config match the checkpoint?)"));
  }
}

std::string checkpoint_weights_sha256(const std::string& checkpoint_dir) {
  if (is_hf_checkpoint_dir(checkpoint_dir)) return hf_weights_sha256(checkpoint_dir);
  const stdfs::path model = stdfs::path(checkpoint_dir) / kModelFile;
  if (stdfs::exists(model) || shard_files(checkpoint_dir).empty()) return sha256_file(model.string());
  std::string digests;
  for (const std::string& shard : shard_files(checkpoint_dir)) digests += sha256_file(shard);
  return sha256_hex(digests);
}

nlohmann::json load_training_state(const std::string& checkpoint_dir,
                                   std::vector<NamedTensor>& exp_avg,
                                   std::vector<NamedTensor>& exp_avg_sq) {
  stdfs::path dir(checkpoint_dir);
  nlohmann::json state = read_state(dir);
  if (state.is_null())
    throw Error(str_cat((dir / kStateFile).string(), ": not found (an exported checkpoint has no "
                        "training state; train from it with a new run dir instead of --resume)"));
  verify_checksums(dir, state, [](const std::string&) { return true; });
  if (!stdfs::exists(dir / kOptimizerFile) && !shard_files(checkpoint_dir).empty()) {
    read_from_shards(checkpoint_dir, "exp_avg", exp_avg);
    read_from_shards(checkpoint_dir, "exp_avg_sq", exp_avg_sq);
    return state;
  }
  h5::File f = h5::File::open_read((dir / kOptimizerFile).string());
  read_into(f, "exp_avg/", exp_avg);
  read_into(f, "exp_avg_sq/", exp_avg_sq);
  return state;
}

void remove_stale_checkpoint_temps(const std::string& checkpoints_dir) {
  static const std::regex tmp_re("step_[0-9]+\\.tmp.*"), old_re("(step_[0-9]+)\\.old-[0-9]+");
  std::error_code ec;
  if (!stdfs::is_directory(checkpoints_dir, ec)) return;
  std::vector<stdfs::path> entries;
  for (const auto& e : stdfs::directory_iterator(checkpoints_dir, ec)) entries.push_back(e.path());
  for (const stdfs::path& p : entries) {
    const std::string name = p.filename().string();
    std::smatch m;
    if (std::regex_match(name, tmp_re)) {
      fs::remove_all_quietly(p.string());
    } else if (std::regex_match(name, m, old_re)) {
      // A crash between the two renames of commit_checkpoint_dir: put the old copy back
      // unless the new one made it.
      const stdfs::path final_dir = p.parent_path() / m[1].str();
      if (stdfs::exists(final_dir / kStateFile)) fs::remove_all_quietly(p.string());
      else if (!stdfs::exists(final_dir)) std::rename(p.c_str(), final_dir.c_str());
    }
  }
}

}  // namespace retort
