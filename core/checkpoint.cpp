#include "core/checkpoint.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <regex>

#include "core/fs.h"
#include "core/hdf5.h"
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

// Parse "step_00000100" → 100; -1 for anything else (temporaries included).
int64_t step_of(const stdfs::path& p) {
  static const std::regex re("step_([0-9]+)");
  std::smatch m;
  std::string name = p.filename().string();
  if (!std::regex_match(name, m, re)) return -1;
  return std::stoll(m[1]);
}

std::vector<std::pair<int64_t, stdfs::path>> complete_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, stdfs::path>> out;
  std::error_code ec;
  if (!stdfs::is_directory(dir, ec)) return out;
  for (const auto& entry : stdfs::directory_iterator(dir)) {
    int64_t step = step_of(entry.path());
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
    std::copy_n(t.host<float>(), t.numel(), p.tensor.host<float>());
  }
}

}  // namespace

void write_checkpoint_dir(const std::string& dir, const CheckpointData& data) {
  stdfs::path final_dir = stdfs::absolute(dir);
  stdfs::create_directories(final_dir.parent_path());
  stdfs::path tmp = final_dir;
  tmp += str_cat(".tmp-", ::getpid());
  stdfs::remove_all(tmp);
  stdfs::create_directories(tmp);

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
  commit_checkpoint_dir(tmp.string(), final_dir.string(), written, data.config_yaml, data.state);
}

void commit_checkpoint_dir(const std::string& tmp_dir, const std::string& final_path,
                           const std::vector<std::string>& written, const std::string& config_yaml,
                           const nlohmann::json& state_in) {
  const stdfs::path tmp(tmp_dir), final_dir = stdfs::absolute(final_path);
  fs::write_file_atomic((tmp / kConfigFile).string(), config_yaml);
  if (!state_in.is_null()) {
    nlohmann::json state = state_in;
    for (const auto& name : written) state["sha256"][name] = sha256_file((tmp / name).string());
    fs::write_file_atomic((tmp / kStateFile).string(), state.dump(2) + "\n");
  }
  for (const auto& name : written) fs::fsync_path((tmp / name).string());
  fs::fsync_path(tmp.string());

  // Replace an existing checkpoint at the same path only after the new one is complete.
  stdfs::path old = final_dir;
  old += str_cat(".old-", ::getpid());
  bool had_old = stdfs::exists(final_dir);
  if (had_old) fs::rename_durable(final_dir.string(), old.string());
  fs::rename_durable(tmp.string(), final_dir.string());
  if (had_old) stdfs::remove_all(old);
}

std::string checkpoint_step_dir(const std::string& checkpoints_dir, int64_t step) {
  char name[32];
  std::snprintf(name, sizeof name, "step_%08lld", static_cast<long long>(step));
  return (stdfs::path(checkpoints_dir) / name).string();
}

void prune_checkpoints(const std::string& checkpoints_dir, int64_t keep_last) {
  if (keep_last <= 0) return;
  auto all = complete_checkpoints(checkpoints_dir);
  for (size_t i = 0; i + keep_last < all.size(); ++i) stdfs::remove_all(all[i].second);
}

std::string save_checkpoint(const std::string& checkpoints_dir, int64_t step,
                            const CheckpointData& data, int64_t keep_last) {
  std::string dir = checkpoint_step_dir(checkpoints_dir, step);
  write_checkpoint_dir(dir, data);
  prune_checkpoints(checkpoints_dir, keep_last);
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
  for (const auto& candidate : {stdfs::path(path), stdfs::path(path) / "checkpoints"}) {
    std::string latest = find_latest_checkpoint(candidate.string());
    if (!latest.empty()) return latest;
  }
  throw Error(str_cat(path, ": not a checkpoint (no ", kModelFile,
                      ") and holds no complete checkpoints"));
}

void load_model_weights(const std::string& checkpoint_dir, std::vector<NamedTensor>& params) {
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

nlohmann::json load_training_state(const std::string& checkpoint_dir,
                                   std::vector<NamedTensor>& exp_avg,
                                   std::vector<NamedTensor>& exp_avg_sq) {
  stdfs::path dir(checkpoint_dir);
  std::string state_path = (dir / kStateFile).string();
  nlohmann::json state;
  try {
    state = nlohmann::json::parse(fs::read_file(state_path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(str_cat(state_path, ": corrupt training state: ", e.what()));
  }
  if (!state.contains("sha256") || !state.contains("step"))
    throw Error(str_cat(state_path, ": missing 'step' or 'sha256'"));
  for (const auto& [name, expected] : state["sha256"].items()) {
    std::string file = (dir / name).string();
    if (sha256_file(file) != expected.get<std::string>())
      throw Error(str_cat(file, ": checksum mismatch (file corrupted or modified)"));
  }
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

}  // namespace retort
