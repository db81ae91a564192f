// The training loop shared by train and distill (see train_loop.h).
#include "launch/train_loop.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>

#include "core/checkpoint.h"
#include "core/dir_lock.h"
#include "core/fs.h"
#include "core/json_fields.h"
#include "core/loss_spike.h"
#include "core/lr_schedule.h"
#include "core/matmul_tuning_file.h"
#include "core/ops.h"
#include "core/preemption.h"
#include "core/progress.h"
#include "launch/checkpoint_model.h"
#include "launch/evaluate.h"
#include "launch/preemption_vote.h"
#include "launch/run_dir.h"
#include "data/token_dataset.h"

namespace retort {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// Fault injection for the tests (tests/e2e/stalled_rank.sh): RETORT_FAULT_STUCK_IO=RANK:STEP:FIFO
// makes world rank RANK open FIFO for reading before step STEP, which blocks in open(2) until
// something writes to it: a rank stuck in I/O (the collective watchdog ends the job).
void maybe_get_stuck_in_io(int rank, int64_t step) {
  static const char* spec = std::getenv("RETORT_FAULT_STUCK_IO");
  if (!spec) return;
  int r = -1;
  long long s = -1;
  char path[4096] = {};
  if (std::sscanf(spec, "%d:%lld:%4095s", &r, &s, path) != 3 || r != rank || s != step + 1) return;
  std::ifstream stuck(path);
}

// What makes a branch from checkpoint `dir` (at step `step`) differ from this run started at
// step 0: the learning rates of steps [0, step) under the two configs (a cosine schedule's
// depend on train.steps), the seed, the batch; "" when nothing does.
std::string branch_differences(const std::string& dir, const Config& cfg, const LrSchedule& ours,
                               int64_t step) {
  std::optional<Config> theirs;
  LrSchedule before;
  try {
    const CheckpointModelSection section = checkpoint_model_section(dir);
    theirs = Config::from_yaml(section.config_yaml, section.config_path);
    before = lr_schedule_from(*theirs, theirs->get_int("train.steps"), theirs->get_int("train.warmup_steps"));
  } catch (const std::exception& e) {
    return str_cat("its config could not be compared with this one (", e.what(), ")");
  }
  std::vector<std::string> why;
  for (int64_t s = 0; s < step; ++s)
    if (before.at(s) != ours.at(s)) {
      why.push_back(str_cat("its learning rate at step ", s, " was ", before.at(s), ", this schedule's is ",
                            ours.at(s), " (train.lr_schedule: wsd keeps the rate before its decay "
                            "independent of train.steps)"));
      break;
    }
  for (const char* key : {"train.seed", "train.batch_tokens"})
    if (theirs->get_int(key) != cfg.get_int(key))
      why.push_back(str_cat("its ", key, " was ", theirs->get_int(key), ", this run's is ", cfg.get_int(key)));
  std::string out;
  for (const std::string& w : why) out += (out.empty() ? "" : "; ") + w;
  return out;
}

}  // namespace

TokenDataset open_token_split(const Config& cfg, const std::string& key, const ModelConfig& mc) {
  std::string path = cfg.get_string(key);
  if (path.empty()) cfg.fail(key, "is required (a token dataset written by `retort tokenize`)");
  TokenDataset ds = TokenDataset::load(path);
  if (ds.meta().vocab_size > mc.vocab_size)
    cfg.fail("model.vocab_size", str_cat(mc.vocab_size, " is smaller than the vocabulary of ",
                                         path, " (", ds.meta().vocab_size, ")"));
  if (ds.num_tokens() < mc.seq_len + 1)
    throw Error(str_cat(path, ": ", ds.num_tokens(), " tokens is fewer than one window of ",
                        mc.seq_len + 1));
  return ds;
}


double report_data_epochs(const Config& cfg, const Mesh& mesh, const std::string& source,
                          int64_t items, const char* item_name, int64_t batch_seqs) {
  const int64_t steps = cfg.get_int("train.steps");
  const double epochs = double(steps) * double(batch_seqs) / double(items);
  if (!mesh.is_root()) return epochs;
  std::printf("data: %s; %lld steps x %lld sequences = %.3g epochs\n", source.c_str(),
              (long long)steps, (long long)batch_seqs, epochs);
  if (epochs > 1)
    std::fprintf(stderr, "retort: warning: the run reads its training data %.3g times (%lld steps x "
                 "%lld sequences over %lld %s); scaling laws assume data seen once\n",
                 epochs, (long long)steps, (long long)batch_seqs, (long long)items, item_name);
  return epochs;
}

std::string windows_source(const TokenDataset& data, const WindowLoader& windows) {
  return str_cat(data.path(), ": ", data.num_tokens(), " tokens (",
                 data.mapped() ? "memory-mapped" : "read into memory", "), ",
                 windows.num_windows(), " windows of ", windows.seq_len());
}

int run_train_loop(const Config& cfg, bool resume, const Mesh& mesh, TrainLoopJob& job) {
  install_preemption_handlers();
  const bool root = mesh.is_root();  // rank 0 writes the run directory and prints progress
  Transformer& model_ref = *job.model;
  const ModelConfig& mc = model_ref.config();
  const BatchGeometry& geo = job.geometry;
  const int64_t steps = cfg.get_int("train.steps");
  if (steps < 1) cfg.fail("train.steps", "must be >= 1");
  const int64_t log_every = std::max<int64_t>(1, cfg.get_int("train.log_every"));
  const int64_t eval_every = cfg.get_int("eval.every");
  const int64_t eval_windows = cfg.get_int("eval.max_windows");
  const int64_t ckpt_every = cfg.get_int("checkpoint.every");
  const int64_t keep_last = cfg.get_int("checkpoint.keep_last");
  const std::vector<int64_t> keep_steps = cfg.get_int_list("checkpoint.keep_steps");
  for (int64_t k : keep_steps)
    if (k < 1 || k > steps)
      cfg.fail("checkpoint.keep_steps", str_cat(k, " is not a step of this run (1 to train.steps ", steps, ")"));
  if (eval_windows < 1) cfg.fail("eval.max_windows", "must be >= 1");
  const LrSchedule schedule = lr_schedule_from(cfg, steps, cfg.get_int("train.warmup_steps"));
  const uint64_t seed = static_cast<uint64_t>(cfg.get_int("train.seed"));

  RunDir run(cfg.get_string("run.dir"), root);
  // One job at a time per run directory: a second one ends here (on rank 0, which aborts the
  // others) before it removes the first one's checkpoint in progress as stale.
  std::optional<DirLock> run_lock;
  if (root) run_lock.emplace(run.path(), "run.dir");
  if (root) remove_stale_checkpoint_temps(run.checkpoints());  // left by a crash or a full disk
  mesh.world->barrier();
  std::string latest = find_latest_checkpoint(run.checkpoints());
  if (!resume && !latest.empty())
    throw ConfigError(str_cat(run.path(), ": run directory already holds checkpoints (", latest,
                              "); pass --resume to continue it or set run.dir elsewhere"));

  Transformer& model = model_ref;
  model.set_recompute(cfg.get_bool("train.recompute"));
  model.init(seed);
  TrainStep trainer(model, cfg, geo, mesh);

  // Where the run starts: its own latest checkpoint (--resume), else train.branch_from's
  // checkpoint of another run (a cooldown branch), else step 0.
  const std::string branch_from = cfg.get_string("train.branch_from");
  std::string start_from = resume ? latest : "";
  const bool branching = start_from.empty() && !branch_from.empty();
  if (branching) {
    try {
      start_from = resolve_checkpoint_dir(branch_from);
    } catch (const Error& e) {
      cfg.fail("train.branch_from", e.what());
    }
  }
  int64_t start_step = 0, tokens_seen = 0;
  double wall_before = 0;
  if (!start_from.empty()) {
    // Checkpoints hold whole parameters (consolidated or as pieces), so any mesh resumes them.
    nlohmann::json state;
    try {
      state = trainer.load_checkpoint(start_from);
    } catch (const Error& e) {  // corrupt or tampered: say how to go back one checkpoint
      if (branching) cfg.fail("train.branch_from", e.what());
      throw Error(str_cat(e.what(), " (move ", latest, " away to resume from the checkpoint before it)"));
    }
    const std::string state_file = start_from + "/state.json";
    start_step = json_int(state, "step", state_file, 0);
    tokens_seen = json_int(state, "tokens_seen", state_file, 0);
    wall_before = state.contains("wall_s") ? json_number(state, "wall_s", state_file) : 0.0;
    if (branching) {
      if (start_step >= steps)
        cfg.fail("train.branch_from", str_cat(start_from, " is at step ", start_step, ", not before train.steps ", steps));
      if (root) {
        std::printf("branching from %s (step %lld)\n", start_from.c_str(), static_cast<long long>(start_step));
        const std::string differs = branch_differences(start_from, cfg, schedule, start_step);
        if (!differs.empty())
          std::fprintf(stderr, "retort: warning: train.branch_from: %s, so this run is not the one a start from "
                       "step 0 would give\n", differs.c_str());
      }
    } else if (root) {
      std::printf("resuming from %s (step %lld)\n", start_from.c_str(), static_cast<long long>(start_step));
    }
  } else if (resume && root) {
    std::printf("no checkpoint in %s; starting from step 0\n", run.checkpoints().c_str());
  }
  // train.matmul_tuning: timed on a GPU: each rank keeps its timed cuBLASLt choices in the run
  // directory (with every checkpoint), and a resumed run takes them instead of timing again, so
  // it computes bitwise what the first run did.
  const bool keep_tuning =
      ops::matmul_tuning() == ops::MatmulTuning::Timed && model.device() == Device::CUDA;
  char rank_name[32];
  std::snprintf(rank_name, sizeof rank_name, "rank_%05d.json", mesh.rank);
  const std::string tuning_file = run.file(std::string("matmul_tuning/") + rank_name);
  if (keep_tuning) {
    const int preset = load_matmul_choices(tuning_file);
    if (root && preset > 0)
      std::printf("matmul tuning: %d product shapes take the algorithms timed before (%s)\n",
                  preset, tuning_file.c_str());
    if (preset < 0)
      std::fprintf(stderr, "retort: %s was timed on another GPU or cuBLASLt (this is %s): timing again\n",
                   tuning_file.c_str(), ops::matmul_tuning_identity().c_str());
  }
  if (root) {
    fs::write_file_atomic(run.file("config.resolved.yaml"), cfg.to_yaml());
    run.open_metrics(start_step > 0 ? start_step : -1);
    std::printf("model: %lld params (%lld non-embedding), %lld tokens/step; %lld ranks (dp %d, fsdp %d, tp %d%s) x "
                "%lld micro-batches of %lld sequences, %d threads per rank\n",
                static_cast<long long>(mc.n_params()), static_cast<long long>(mc.n_params_nonemb()),
                static_cast<long long>(geo.tokens_per_step()), static_cast<long long>(mesh.world_size),
                mesh.dp, mesh.fsdp, mesh.tp, mesh.tp_layout().sp ? " +sp" : "", static_cast<long long>(geo.n_micro), static_cast<long long>(geo.micro_seqs),
                omp_get_max_threads());
    if (mc.mup_base_width > 0)
      std::printf("muP: hidden matrices and lm_head learn at lr x %g (model.mup_base_width %lld / d_model "
                  "%lld), the embedding, norm gains and biases at lr\n",
                  mc.mup_lr_scale(), static_cast<long long>(mc.mup_base_width),
                  static_cast<long long>(mc.d_model));
  }

  auto save = [&](int64_t step, double wall) {  // every rank takes part
    nlohmann::json state = {{"step", step}, {"tokens_seen", tokens_seen}, {"wall_s", wall},
                            {"optimizer_steps", trainer.optimizer().steps()}, {"seed", seed}};
    try {
      if (keep_tuning) save_matmul_choices(tuning_file);
      return trainer.save(run.checkpoints(), step, cfg.to_yaml(), state, keep_last, keep_steps);
    } catch (const std::exception& e) {  // disk full, read-only: one line, what is kept, why
      const std::string kept = find_latest_checkpoint(run.checkpoints());
      throw Error(str_cat("checkpoint at step ", step, " not written (",
                          kept.empty() ? std::string("no earlier checkpoint")
                                       : std::filesystem::path(kept).filename().string() + " is kept",
                          "): ", e.what()));
    }
  };
  auto validate = [&]() {
    return evaluate_windows(model, *job.val_tokens, mc.seq_len, eval_windows, geo.micro_seqs);
  };

  Progress progress("step", steps, log_every, start_step, root);
  const auto t_start = Clock::now();
  auto t_log = t_start;
  int64_t tokens_at_log = tokens_seen;
  double last_val = -1;
  const int64_t max_skipped = cfg.get_int("train.max_skipped");
  const double spike_threshold = cfg.get_float("train.spike_zscore");
  LossSpikeDetector spikes;
  int64_t skipped_total = 0, skipped_in_a_row = 0;
  for (int64_t step = start_step; step < steps; ++step) {
    const double lr = schedule.at(step);
    maybe_get_stuck_in_io(mesh.rank, step);
    if (job.before_step) job.before_step(step);
    StepResult r = trainer.run(step, lr, job.source);
    tokens_seen += geo.tokens_per_step();
    const int64_t done = step + 1;
    const double wall = wall_before + seconds_since(t_start);
    if (r.skipped) {  // train.nonfinite: skip
      ++skipped_total;
      progress.message(str_cat("step ", done, ": non-finite loss (", r.loss, ") or gradient norm (",
                               r.grad_norm, "): update skipped (", ++skipped_in_a_row, " in a row, ",
                               skipped_total, " in all)"));
      if (skipped_in_a_row > max_skipped)
        throw Error(str_cat("step ", done, ": ", skipped_in_a_row, " consecutive non-finite steps "
                            "(train.max_skipped = ", max_skipped, "); lower train.lr or check the data"));
    } else {
      skipped_in_a_row = 0;
    }
    const double z = r.skipped ? 0.0 : spikes.add(r.loss);
    const bool spike = spike_threshold > 0 && z > spike_threshold;
    if (spike) progress.message(str_cat("step ", done, ": loss spike, ", r.loss, " is ", z, " sd above the last 50 steps"));
    if (done % log_every == 0 || done == steps || r.skipped || spike) {
      double tok_s = (tokens_seen - tokens_at_log) / std::max(1e-9, seconds_since(t_log));
      t_log = Clock::now();
      tokens_at_log = tokens_seen;
      nlohmann::json line = {{"step", done}, {"loss", r.loss}, {"ce", r.ce}};
      if (job.extra_metrics) job.extra_metrics(r, line);
      line.update({{"lr", lr}, {"grad_norm", r.grad_norm}, {"tokens", tokens_seen},
                   {"tokens_per_s", tok_s}, {"wall_s", wall}});
      if (skipped_total > 0) line["skipped_steps"] = skipped_total;
      if (spike) line["loss_spike_z"] = z;
      if (root) run.log_metrics(line);
      char detail[160];
      std::snprintf(detail, sizeof detail, "loss %.4f | lr %.2e | %.0f tok/s", r.loss, lr, tok_s);
      progress.update(done, detail);
    }
    if ((eval_every > 0 && done % eval_every == 0) || done == steps) {
      EvalResult v = validate();
      last_val = v.loss;
      if (root) run.log_metrics({{"step", done}, {"val_loss", v.loss}, {"tokens", tokens_seen}});
      progress.message(str_cat("step ", done, ": val_loss ", v.loss, " (", v.tokens, " tokens)"));
    }
    const bool preempted = done < steps && any_rank_preempted(mesh);
    const bool keep = std::find(keep_steps.begin(), keep_steps.end(), done) != keep_steps.end();
    if ((ckpt_every > 0 && done % ckpt_every == 0) || done == steps || preempted || keep) {
      std::string dir = save(done, wall_before + seconds_since(t_start));
      progress.message(str_cat("step ", done, ": checkpoint ", dir));
    }
    if (preempted) {
      progress.finish();
      if (root)
        std::printf("preempted (%s) after step %lld of %lld: checkpoint written; exit %d, rerun with "
                    "--resume to continue\n", preemption_signal() ? preemption_signal() : "a signal on another rank",
                    static_cast<long long>(done), static_cast<long long>(steps), kPreemptedExitCode);
      return kPreemptedExitCode;
    }
  }
  progress.finish();

  const double wall = wall_before + seconds_since(t_start);
  if (last_val < 0) last_val = validate().loss;  // resumed at the end: nothing ran
  const double trained_s = seconds_since(t_start);
  const int64_t tokens_this_run = (steps - start_step) * geo.tokens_per_step();
  // Per-rank memory: parameters, gradients and AdamW state are replicated under dp and
  // sharded under fsdp (≈1/fsdp each, plus the transient full-size unit buffers).
  const MemoryUse mem = trainer.memory();
  const int64_t mine_bytes[5] = {mem.params, mem.grads, mem.optimizer, mem.gather_buffers,
                                 fs::peak_rss_bytes()};
  // Exact byte counts of every rank, each sent as two int32 halves (v = hi·2³⁰ + lo).
  Tensor all = Tensor::empty({10 * int64_t(mesh.world_size)}, DType::I32);
  Tensor mine = Tensor::empty({10}, DType::I32);
  for (int i = 0; i < 5; ++i) {
    mine.host<int32_t>()[2 * i] = static_cast<int32_t>(mine_bytes[i] >> 30);
    mine.host<int32_t>()[2 * i + 1] = static_cast<int32_t>(mine_bytes[i] & ((int64_t{1} << 30) - 1));
  }
  mesh.world->all_gather(all, mine);
  nlohmann::json memory = nlohmann::json::array();
  for (int r = 0; r < mesh.world_size; ++r) {
    auto bytes = [&](int i) {
      const int32_t* p = all.host<int32_t>() + 10 * r + 2 * i;
      return (int64_t{p[0]} << 30) + p[1];
    };
    memory.push_back({{"rank", r},
                      {"params_bytes", bytes(0)},
                      {"grads_bytes", bytes(1)},
                      {"optimizer_bytes", bytes(2)},
                      {"gather_buffer_bytes", bytes(3)},
                      {"peak_rss_bytes", bytes(4)}});
  }
  nlohmann::json summary = {
      {"status", "complete"},
      {"final_val_loss", last_val},
      {"params", mc.n_params()},
      {"params_nonembedding", mc.n_params_nonemb()},
      {"steps", steps},
      {"tokens_seen", tokens_seen},
      {"flops", static_cast<double>(mc.flops_per_token_exact()) * tokens_seen},
      {"flops_6N", static_cast<double>(mc.flops_per_token_6N()) * tokens_seen},
      {"tokens_per_s", tokens_this_run > 0 ? tokens_this_run / std::max(1e-9, trained_s) : 0.0},
      {"wall_s", wall},
      {"world_size", mesh.world_size},
      {"threads", omp_get_max_threads()},
      {"memory", memory}};
  summary.update(job.extra_summary);
  if (!root) return 0;
  run.write_json("summary.json", summary);
  std::printf("done: val_loss %.4f after %lld tokens in %s; run dir %s\n", last_val,
              static_cast<long long>(tokens_seen), Progress::format_duration(wall).c_str(),
              run.path().c_str());
  return 0;
}

}  // namespace retort
