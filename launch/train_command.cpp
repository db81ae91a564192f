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
  const double epochs = report_data_epochs(cfg, mesh, windows_source(train_data, loader),
                                          loader.num_windows(), "windows", geo.batch_seqs);

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
