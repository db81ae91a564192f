// Entry points of the retort subcommands (one file each in launch/, tokenize in data/).
// Each returns the process exit code; errors are thrown (Error → 1, ConfigError → 2).
#pragma once
#include <string>
#include <vector>

#include "core/config.h"

namespace retort {

struct JobArgs {
  std::string config_path;
  std::vector<std::string> overrides;  // "--set a.b=value"
};

Config load_job_config(const JobArgs& args);
// Applies system.threads (0 = leave the OpenMP default).
void apply_thread_setting(const Config& cfg);

int run_train(const Config& cfg, bool resume);
int run_eval(const std::string& checkpoint, const std::string& tokens, int64_t seq_len,
             int64_t max_windows, const std::string& out_json);
int run_export(const std::string& checkpoint, const std::string& out_dir);
int run_info(const Config& cfg, bool json);
int run_bench(const Config& cfg);

}  // namespace retort
