// retort: one binary, one subcommand per job (SPEC §6). Exit codes: 0 ok, 1 runtime error,
// 2 usage/config error, 75 preempted (core/preemption.h), 124 a collective waited longer than
// parallel.timeout_s (parallel/collective_watchdog.h). Errors are printed as one line prefixed with the rank under MPI.
#include <omp.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "core/blas_kernels.h"
#include "core/check.h"
#include "core/checkpoint.h"
#include "core/config.h"
#include "core/preemption.h"
#include "data/tokenize_command.h"
#include "launch/checkpoint_model.h"
#include "launch/commands.h"
#include "parallel/mesh.h"

using namespace retort;

namespace {

// Adds CONFIG and --set to a job subcommand.
void add_job_args(CLI::App* cmd, JobArgs& args) {
  cmd->add_option("config", args.config_path, "YAML config file")->required();
  cmd->add_option("--set", args.overrides, "override a config key: --set train.lr=1e-3")
      ->take_all()
      ->allow_extra_args(false);
}

int run(int argc, char** argv) {
  CLI::App app{"retort: train, distill and scale transformer language models"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "retort 0.1");

  JobArgs job;
  bool resume = false, info_json = false, reference = false;
  std::string checkpoint, tokens, out, teacher;
  int64_t seq_len = 0, max_windows = 1'000'000'000;

  auto* tokenize = app.add_subcommand("tokenize", "train a SentencePiece tokenizer (or take tokenize.tokenizer) and write token datasets");
  add_job_args(tokenize, job);
  auto* train = app.add_subcommand("train", "supervised training (run dir from run.dir)");
  add_job_args(train, job);
  train->add_flag("--resume", resume, "continue from the run dir's latest checkpoint");
  auto* generate = app.add_subcommand("generate", "write a distillation corpus from a teacher checkpoint");
  add_job_args(generate, job);
  auto* distill = app.add_subcommand("distill", "train a student from a distillation corpus or a live teacher");
  add_job_args(distill, job);
  distill->add_flag("--resume", resume, "continue from the run dir's latest checkpoint");
  auto* eval = app.add_subcommand("eval", "mean next-token loss of a checkpoint on a token dataset");
  eval->add_option("checkpoint", checkpoint, "checkpoint directory")->required();
  eval->add_option("--tokens", tokens, "token dataset (.h5)")->required();
  eval->add_option("--seq-len", seq_len, "window length (default: the checkpoint's seq_len)");
  eval->add_option("--max-windows", max_windows, "evaluate at most this many windows");
  eval->add_option("--out", out, "write the result JSON here");
  eval->add_option("--teacher", teacher, "also report KL(teacher ‖ model) and the teacher's loss on the same windows");
  ExportArgs export_args;
  auto* exp = app.add_subcommand("export", "consolidate a checkpoint into model.h5 + config.yaml, or a Hugging Face directory");
  exp->add_option("checkpoint", checkpoint, "checkpoint directory")->required();
  exp->add_option("--out", out, "output directory")->required();
  exp->add_option("--format", export_args.format, "retort (model.h5 + config.yaml) or hf (config.json + model.safetensors)")
      ->check(CLI::IsMember({"retort", "hf"}));
  exp->add_option("--dtype", export_args.dtype, "hf: float32 (exact) or bfloat16")
      ->check(CLI::IsMember({"float32", "bfloat16"}));
  exp->add_option("--tokenizer", export_args.tokenizer, "hf: include this tokenizer.model (LlamaTokenizer) or tokenizer.json (PreTrainedTokenizerFast)");
  auto* info = app.add_subcommand("info", "parameter and FLOP counts and memory estimate (of a config, or a checkpoint's model)");
  add_job_args(info, job);
  info->add_flag("--json", info_json, "print JSON");
  auto* bench = app.add_subcommand("bench", "time steady-state training steps; prints JSON");
  add_job_args(bench, job);
  auto* config = app.add_subcommand("config", "print the resolved config (or --reference)");
  config->add_option("config", job.config_path, "YAML config file");
  config->add_option("--set", job.overrides, "override a config key")->take_all();
  config->add_flag("--reference", reference, "print the reference of every key (Markdown)");
  std::string sweep_dir;
  bool shapes = false;
  auto* sweep = app.add_subcommand("sweep", "plan an IsoFLOP / distillation sweep: configs, plan.csv, scripts");
  sweep->add_option("sweep", job.config_path, "sweep file (YAML, docs/SWEEPS.md)")->required();
  sweep->add_option("--out", sweep_dir, "sweep directory to write");
  sweep->add_option("--set", job.overrides, "override a key of the runs' base config")->take_all();
  sweep->add_flag("--shapes", shapes, "only list the family's shapes (N, FLOPs/token)");
  auto* collect = app.add_subcommand("collect", "results.csv from a sweep directory");
  collect->add_option("dir", sweep_dir, "sweep directory (written by retort sweep)")->required();
  FitArgs fit_args;
  auto* fit = add_fit_command(app, fit_args);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "retort: usage error: " << e.what() << " (see retort --help)\n";
    return 2;
  }

  // Jobs that stop cleanly on SIGUSR1/SIGTERM take the signal from the start (a signal that
  // comes while the job loads is acted on at its first step or shard).
  if (*train || *generate || *distill) install_preemption_handlers();
  if (*tokenize) return run_tokenize(load_job_config(job));
  if (*train) return run_train(load_job_config(job), resume);
  if (*generate) return run_generate(load_job_config(job));
  if (*distill) return run_distill(load_job_config(job), resume);
  if (*eval) return run_eval(checkpoint, tokens, seq_len, max_windows, out, teacher);
  if (*exp) return run_export(checkpoint, out, export_args);
  if (*info) {
    if (!std::filesystem::is_directory(job.config_path)) return run_info(load_job_config(job), info_json);
    // a checkpoint or transformers directory: its model, every other key at its default but a
    // batch of one sequence (any --set after)
    const auto section = checkpoint_model_section(resolve_checkpoint_dir(job.config_path));
    const Config model_only = Config::from_yaml(section.model_yaml, section.config_path);
    std::vector<std::string> overrides = {str_cat("train.batch_tokens=", model_only.get_int("model.seq_len"))};
    overrides.insert(overrides.end(), job.overrides.begin(), job.overrides.end());
    return run_info(Config::from_yaml(section.model_yaml, section.config_path, overrides), info_json);
  }
  if (*bench) return run_bench(load_job_config(job));
  if (*sweep) return run_sweep(job.config_path, job.overrides, sweep_dir, shapes);
  if (*collect) return run_collect(sweep_dir);
  if (*fit) return run_fit(fit_args);
  if (*config) {
    if (reference) {
      std::cout << config_reference_markdown();
      return 0;
    }
    std::cout << load_job_config(job).to_yaml();
    return 0;
  }
  return 2;
}

// "retort: error: ..." or, in a job of several ranks, "retort: error (rank 3): ...".
void print_error(const char* kind, const char* what) {
  int rank = world_rank_for_messages();
  std::cerr << "retort: " << kind << (rank >= 0 ? str_cat(" (rank ", rank, ")") : "") << ": " << what
            << std::endl;
}

}  // namespace

int main(int argc, char** argv) {
  choose_blas_kernels(argv);  // may execute retort again, with OPENBLAS_CORETYPE set
  int code = 0;
  try {
    code = run(argc, argv);
  } catch (const ConfigError& e) {
    print_error("config error", e.what());
    code = 2;
  } catch (const std::exception& e) {
    print_error("error", e.what());
    code = 1;
  }
  std::fflush(stdout);
  // A preempted job (exit 75) stops on every rank together, after a collective vote: it ends
  // like a finished one (no MPI_Abort banner); mpirun passes the 75 on.
  if (code != 0 && code != kPreemptedExitCode) abort_job(code);
  shutdown_mesh();
  return code;
}
