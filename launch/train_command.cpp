// retort train CONFIG [--set k=v]... [--resume]
// Supervised training: windows of data.train in a seeded order (data/loader.h) fed to the
// shared training loop (launch/train_loop.h: micro-batches, DP/FSDP, AdamW, evaluation,
// atomic checkpoints, resumable run directory; SPEC §6).
#include <omp.h>

#include "data/loader.h"
#include "data/token_dataset.h"
#include "launch/commands.h"
#include "launch/train_loop.h"
#include "parallel/job_check.h"
#include "parallel/gpu_mesh.h"
#include "parallel/mesh.h"

namespace retort {

void apply_thread_setting(const Config& cfg) {
  int64_t threads = cfg.get_int("system.threads");
  if (threads < 0) cfg.fail("system.threads", "must be >= 0 (0 = all cores)");
  if (threads > 0) omp_set_num_threads(static_cast<int>(threads));
}

namespace {

// How often the run reads its data: train.steps × batch sequences over the windows of
// data.train. One line on rank 0, and a warning when windows repeat (scaling laws assume data
// seen once).
double report_epochs(const Config& cfg, const Mesh& mesh, const TokenDataset& data,
                     const WindowLoader& loader, const BatchGeometry& geo) {
  const int64_t steps = cfg.get_int("train.steps");
  const double epochs = double(steps) * double(geo.batch_seqs) / double(loader.num_windows());
  if (!mesh.is_root()) return epochs;
  std::printf("data: %s: %lld tokens (%s), %lld windows of %lld; %lld steps x %lld sequences = "
              "%.3g epochs\n", data.path().c_str(), (long long)data.num_tokens(),
              data.mapped() ? "memory-mapped" : "read into memory", (long long)loader.num_windows(),
              (long long)loader.seq_len(), (long long)steps, (long long)geo.batch_seqs, epochs);
  if (epochs > 1)
    std::fprintf(stderr, "retort: warning: the run reads data.train %.3g times (%lld steps x %lld "
                 "sequences over %lld windows); scaling laws assume data seen once\n",
                 epochs, (long long)steps, (long long)geo.batch_seqs, (long long)loader.num_windows());
  return epochs;
}

}  // namespace

int run_train(const Config& cfg, bool resume) {
  Mesh mesh = make_mesh(cfg);
  place_mesh(mesh, cfg);
  check_same_job(mesh, cfg);
  check_mesh_fits_model(mesh, cfg);
  apply_thread_setting(cfg);
  const ModelConfig mc = ModelConfig::from_config(cfg);
  const BatchGeometry geo = BatchGeometry::from_config(cfg, mc.seq_len, mesh.data_ranks());

  const TokenDataset train_data = open_token_split(cfg, "data.train", mc);
  const TokenDataset val_data = open_token_split(cfg, "data.val", mc);
  const uint64_t seed = static_cast<uint64_t>(cfg.get_int("train.seed"));
  WindowLoader loader(train_data.tokens(), mc.seq_len, seed);
  const double epochs = report_epochs(cfg, mesh, train_data, loader, geo);

  Transformer model(mc, mesh.tp_layout(), mesh.device);
  TrainLoopJob job;
  job.model = &model;
  job.geometry = geo;
  job.val_tokens = &val_data.tokens();
  job.extra_summary["data_epochs"] = epochs;
  job.source = [&](int64_t first, int64_t count, Tensor& inputs, Tensor& targets) {
    loader.fill_batch(first, count, inputs, targets);
  };
  return run_train_loop(cfg, resume, mesh, job);
}

}  // namespace retort
