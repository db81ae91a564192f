// Entry points of the retort subcommands (one file each in launch/, tokenize in data/).
// Each returns the process exit code; errors are thrown (Error → 1, ConfigError → 2).
#pragma once
#include <string>
#include <vector>

#include "core/config.h"

namespace CLI {
class App;
}

namespace retort {

struct JobArgs {
  std::string config_path;
  std::vector<std::string> overrides;  // "--set a.b=value"
};

Config load_job_config(const JobArgs& args);
// Applies system.threads (0 = leave the OpenMP default).
void apply_thread_setting(const Config& cfg);

int run_train(const Config& cfg, bool resume);
// retort distill (launch/distill_command.cpp): a student from a corpus or a live teacher.
int run_distill(const Config& cfg, bool resume);
// teacher: "" or a checkpoint; then the JSON adds kl_to_teacher and teacher_loss.
int run_eval(const std::string& checkpoint, const std::string& tokens, int64_t seq_len,
             int64_t max_windows, const std::string& out_json, const std::string& teacher);
// Writes a distillation corpus (SPEC §5; launch/generate_command.cpp, docs/DISTILLATION.md).
int run_generate(const Config& cfg);
struct ExportArgs {
  std::string format = "retort";  // "retort": model.h5 + config.yaml; "hf": transformers
  std::string dtype = "float32";  // hf: the safetensors' dtype, float32 | bfloat16
  std::string tokenizer;          // hf: a tokenizer.model to include
};
int run_export(const std::string& checkpoint, const std::string& out_dir, const ExportArgs& args);
int run_info(const Config& cfg, bool json);
int run_bench(const Config& cfg);
// Plans a sweep into out_dir (shapes_only: just print the family's shapes).
int run_sweep(const std::string& sweep_path, const std::vector<std::string>& overrides,
              const std::string& out_dir, bool shapes_only);
// results.csv from a sweep directory.
int run_collect(const std::string& sweep_dir);

// retort fit RESULTS.csv (launch/fit_command.cpp; flags in docs/SCALING.md).
struct FitArgs {
  std::string csv, out = "fit.json", supervised_json;
  std::string law = "supervised", form = "chinchilla", method = "approach3";
  double delta = 0;  // 0: the form's default (1e-3 chinchilla, 1e-4 busbridge)
  bool delta_given = false, budgets_given = false, plot = true;
  int drop_highest = 0, bootstrap = 0;
  int64_t seed = 0;
  std::vector<double> budgets;
  double budget_tolerance = 0.05;  // decades of C within one IsoFLOP budget (approach2)
  double max_data_epochs = 0;      // > 0: leave out rows whose data_epochs exceed it
  std::string col_n = "N", col_d = "D", col_c = "C", col_loss = "loss", col_teacher_loss = "teacher_loss";
  std::vector<std::string> where;  // COLUMN=VALUE row filters
};
int run_fit(const FitArgs& args);
// Registers the `fit` subcommand and its flags (filling args) on the CLI11 app.
CLI::App* add_fit_command(CLI::App& app, FitArgs& args);

}  // namespace retort
