#include "launch/sweep_replan.h"

#include <cstdio>
#include <filesystem>
#include <optional>
#include <set>

#include "core/check.h"
#include "core/config.h"
#include "core/fs.h"

namespace retort {

namespace {

namespace stdfs = std::filesystem;

bool starts_with(const std::string& s, const char* prefix) { return s.rfind(prefix, 0) == 0; }

// Whether `key`, changed, changes what a run of `stage` computes.
bool changes_results(Stage stage, const std::string& key) {
  if (stage == Stage::Corpus) return starts_with(key, "generate.") && key != "generate.batch";
  if (starts_with(key, "generate.") || starts_with(key, "tokenize.")) return false;
  if (stage == Stage::Train && starts_with(key, "distill.")) return false;
  for (const char* section : {"checkpoint.", "system.", "bench."})
    if (starts_with(key, section)) return false;
  for (const char* key_free : {"run.dir", "train.log_every", "train.spike_zscore", "eval.every", "parallel.dp",
                               "parallel.fsdp", "parallel.fsdp_keep_params", "parallel.tp", "parallel.sp",
                               "parallel.device", "parallel.bucket_elems", "parallel.timeout_s"})
    if (key == key_free) return false;
  return true;
}

// Whether the run's directory holds anything but a job's lock.
bool has_outputs(const PlannedRun& r) {
  std::error_code ec;
  for (const auto& e : stdfs::directory_iterator(r.run_dir, ec))
    if (e.path().filename() != ".lock") return true;
  return false;
}

// The config the run's outputs came from; nullopt (with a warning) when it cannot be read.
std::optional<Config> previous_config(const PlannedRun& r) {
  std::string path = r.run_dir + "/config.resolved.yaml";
  if (!stdfs::exists(path)) path = r.config_path;
  if (!stdfs::exists(path)) return std::nullopt;
  try {
    return Config::from_yaml(fs::read_file(path), path);
  } catch (const Error& e) {
    std::fprintf(stderr, "warning: %s's outputs: cannot read the config they came from (%s); not compared\n",
                 r.name.c_str(), e.what());
    return std::nullopt;
  }
}

}  // namespace

void check_replan(const SweepSpec& spec, const SweepPlan& plan) {
  std::set<std::string> with_outputs, changed;  // changed: runs with outputs the new plan changes
  for (const PlannedRun& r : plan.runs)
    if (has_outputs(r)) with_outputs.insert(r.name);
  std::string first;  // "RUN: KEY OLD → NEW (and K more keys)" of the first
  for (const PlannedRun& r : plan.runs) {
    if (!with_outputs.count(r.name)) continue;
    const std::optional<Config> before = previous_config(r);
    if (!before) continue;
    const Config now = Config::from_yaml(planned_config_yaml(spec, plan, r), r.config_path);
    std::vector<Config::Difference> keys;
    for (Config::Difference& d : before->differences(now))
      if (changes_results(r.stage, d.key)) keys.push_back(std::move(d));
    if (keys.empty()) continue;
    if (changed.empty())
      first = str_cat(r.name, ": ", keys[0].key, " ", keys[0].ours, " → ", keys[0].theirs,
                      keys.size() > 1 ? str_cat(" and ", keys.size() - 1, " more keys") : "");
    changed.insert(r.name);
  }
  // A run that read a changed run's output (a corpus its teacher's, a student its corpus's, a
  // branch its trunk's) changes with it.
  for (bool grew = !changed.empty(); grew;) {
    grew = false;
    for (const PlannedRun& r : plan.runs)
      if (!changed.count(r.name) && changed.count(r.waits_for()) && with_outputs.count(r.name))
        grew = changed.insert(r.name).second;
  }
  if (changed.empty()) return;
  std::vector<std::string> names;  // in plan order
  for (const PlannedRun& r : plan.runs)
    if (changed.count(r.name)) names.push_back(r.name);
  std::string list = names[0];
  for (size_t i = 1; i < names.size() && i < 3; ++i) list += ", " + names[i];
  if (names.size() > 3) list += str_cat(" and ", names.size() - 3, " more");
  throw ConfigError(str_cat("retort sweep: ", plan.out_dir, "/runs holds outputs that this plan changes, of ",
                            names.size() == 1 ? "run " : str_cat(names.size(), " runs: "), list, " (", first,
                            "; a run that read a changed run's output changes with it); the scripts would keep "
                            "or continue them as they are: plan into another --out, or move those run "
                            "directories away to run them again"));
}

}  // namespace retort
