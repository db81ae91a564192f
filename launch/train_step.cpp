#include "launch/train_step.h"

#include <cmath>

namespace retort {

BatchGeometry BatchGeometry::from_config(const Config& cfg, int64_t seq_len, int64_t data_ranks) {
  BatchGeometry g;
  g.seq_len = seq_len;
  g.data_ranks = data_ranks;
  int64_t batch_tokens = cfg.get_int("train.batch_tokens");
  if (batch_tokens <= 0 || batch_tokens % seq_len != 0)
    cfg.fail("train.batch_tokens", str_cat("must be a positive multiple of model.seq_len (", seq_len,
                                           "), got ", batch_tokens));
  g.batch_seqs = batch_tokens / seq_len;
  if (g.batch_seqs % data_ranks != 0)
    cfg.fail("train.batch_tokens", str_cat("the batch of ", g.batch_seqs, " sequences does not split "
                                           "evenly over ", data_ranks, " data ranks (dp*fsdp)"));
  g.local_seqs = g.batch_seqs / data_ranks;
  int64_t micro = cfg.get_int("train.micro_batch");
  if (micro < 0) cfg.fail("train.micro_batch", "must be >= 0 (0 = the whole batch at once)");
  g.micro_seqs = micro == 0 ? g.local_seqs : micro;
  if (g.local_seqs % g.micro_seqs != 0)
    cfg.fail("train.micro_batch", str_cat(g.micro_seqs, " sequences does not divide the ",
                                          g.local_seqs, " sequences per data rank"));
  g.n_micro = g.local_seqs / g.micro_seqs;
  return g;
}

namespace {
std::vector<OptimizedTensor> optimized_tensors(Transformer& model) {
  std::vector<OptimizedTensor> out;
  for (const auto& p : model.parameters()) out.push_back({p.name, p.value, p.grad, p.decay});
  return out;
}

AdamWSettings adamw_settings(const Config& cfg) {
  AdamWSettings s;
  s.beta1 = static_cast<float>(cfg.get_float("train.beta1"));
  s.beta2 = static_cast<float>(cfg.get_float("train.beta2"));
  s.eps = static_cast<float>(cfg.get_float("train.eps"));
  s.weight_decay = static_cast<float>(cfg.get_float("train.weight_decay"));
  return s;
}
}  // namespace

TrainStep::TrainStep(Transformer& model, const Config& cfg, const BatchGeometry& geometry,
                     const Mesh& mesh)
    : model_(model),
      g_(geometry),
      mesh_(mesh),
      z_loss_(static_cast<float>(cfg.get_float("train.z_loss"))),
      grad_clip_(cfg.get_float("train.grad_clip")),
      inputs_(Tensor::empty({geometry.micro_seqs, geometry.seq_len}, DType::I32)),
      targets_(Tensor::empty({geometry.micro_seqs, geometry.seq_len}, DType::I32)) {
  if (mesh.fsdp > 1) {  // the model's full buffers are released; AdamW runs on the shard
    fsdp_ = std::make_unique<FullyShardedDP>(model, mesh.fsdp_comm, mesh.dp_comm,
                                             cfg.get_bool("parallel.fsdp_keep_params"));
    optimizer_ = std::make_unique<AdamW>(fsdp_->optimizer_pieces(), adamw_settings(cfg));
    return;
  }
  dp_ = std::make_unique<DataParallel>(mesh.dp_comm, model.flat_grads(), cfg.get_int("parallel.bucket_elems"));
  optimizer_ = std::make_unique<AdamW>(optimized_tensors(model), adamw_settings(cfg));
  if (mesh.dp_comm->size() > 1)
    model_.set_grad_ready_hook([this](int64_t b, int64_t e) { dp_->grads_ready(b, e); });
}

StepResult TrainStep::run(int64_t step, double lr, const BatchSource& source) {
  StepResult r;
  if (fsdp_) fsdp_->zero_grad();
  else model_.zero_grad();
  // Σ over ranks and micro-batches of scale·grad(mean loss of a micro-batch) = grad of the mean.
  const float scale = 1.0f / static_cast<float>(g_.n_micro * g_.data_ranks);
  const int64_t first = step * g_.batch_seqs + mesh_.data_rank() * g_.local_seqs;
  for (int64_t m = 0; m < g_.n_micro; ++m) {
    source(first + m * g_.micro_seqs, g_.micro_seqs, inputs_, targets_);
    if (fsdp_) fsdp_->set_training(true);
    LossResult loss = model_.forward(inputs_, targets_, z_loss_);
    if (dp_ && m == g_.n_micro - 1) dp_->begin_final_backward();
    model_.backward(scale);
    if (fsdp_) {  // this micro-batch's gradients are reduce-scattered into the shard
      fsdp_->finish_backward();
      fsdp_->set_training(false);
    }
    r.loss += loss.loss / g_.n_micro;
    r.ce += loss.ce / g_.n_micro;
    r.extra += loss.extra / g_.n_micro;
  }
  if (dp_) dp_->finish();
  else fsdp_->reduce_over_dp();
  if (g_.data_ranks > 1) {  // report the global-batch mean: Σ over fsdp, then over dp
    Tensor losses = Tensor::empty({3});
    losses.host<float>()[0] = static_cast<float>(r.loss);
    losses.host<float>()[1] = static_cast<float>(r.ce);
    losses.host<float>()[2] = static_cast<float>(r.extra);
    if (mesh_.fsdp_comm->size() > 1) mesh_.fsdp_comm->all_reduce(losses);
    if (mesh_.dp_comm->size() > 1) mesh_.dp_comm->all_reduce(losses);
    r.loss = losses.host<float>()[0] / g_.data_ranks;
    r.ce = losses.host<float>()[1] / g_.data_ranks;
    r.extra = losses.host<float>()[2] / g_.data_ranks;
  }
  if (fsdp_) {
    r.grad_norm = fsdp_->clip_grad_norm(grad_clip_);
  } else {
    std::vector<Tensor> grads{model_.flat_grads()};
    r.grad_norm = clip_grad_norm(grads, grad_clip_);
  }
  if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm))
    throw Error(str_cat("step ", step + 1, ": non-finite loss (", r.loss, ") or gradient norm (",
                        r.grad_norm, "); lower train.lr or check the data"));
  optimizer_->step(lr);
  return r;
}

namespace {
std::vector<NamedTensor> named(const std::vector<Parameter>& params) {
  std::vector<NamedTensor> out;
  for (const auto& p : params) out.push_back({p.name, p.value});
  return out;
}
}  // namespace

CheckpointData TrainStep::checkpoint_data() {
  CheckpointData data;
  if (!fsdp_) {  // every rank holds the same full state
    data.model = named(model_.parameters());
    data.exp_avg = optimizer_->exp_avg();
    data.exp_avg_sq = optimizer_->exp_avg_sq();
    return data;
  }
  // fsdp: gather the shards unit by unit; fsdp rank 0 of each replica gets the full buffers.
  Tensor params = fsdp_->gather_full(fsdp_->param_shard());
  Tensor m = fsdp_->gather_full(fsdp_->pack_pieces(optimizer_->exp_avg()));
  Tensor v = fsdp_->gather_full(fsdp_->pack_pieces(optimizer_->exp_avg_sq()));
  if (!mesh_.is_root()) return data;
  data.model = fsdp_->named_views(params);
  data.exp_avg = fsdp_->named_views(m);
  data.exp_avg_sq = fsdp_->named_views(v);
  return data;
}

nlohmann::json TrainStep::load_checkpoint(const std::string& dir) {
  nlohmann::json state;
  if (!fsdp_) {
    std::vector<NamedTensor> weights = named(model_.parameters());
    load_model_weights(dir, weights);
    state = load_training_state(dir, optimizer_->exp_avg(), optimizer_->exp_avg_sq());
  } else {  // every rank reads the consolidated files and keeps its shard
    const int64_t N = model_.num_params();
    Tensor params = Tensor::empty({N}), m = Tensor::empty({N}), v = Tensor::empty({N});
    std::vector<NamedTensor> weights = fsdp_->named_views(params);
    std::vector<NamedTensor> mv = fsdp_->named_views(m), vv = fsdp_->named_views(v);
    load_model_weights(dir, weights);
    state = load_training_state(dir, mv, vv);
    fsdp_->scatter_full(fsdp_->param_shard(), params);
    Tensor shard = Tensor::empty({fsdp_->shard_elems()});
    fsdp_->scatter_full(shard, m);
    fsdp_->unpack_pieces(optimizer_->exp_avg(), shard);
    fsdp_->scatter_full(shard, v);
    fsdp_->unpack_pieces(optimizer_->exp_avg_sq(), shard);
  }
  optimizer_->set_steps(state.at("optimizer_steps").get<int64_t>());
  return state;
}

MemoryUse TrainStep::memory() const {
  MemoryUse m;
  m.optimizer = optimizer_->state_bytes();
  if (fsdp_) {
    m.params = m.grads = fsdp_->shard_elems() * int64_t(sizeof(float));
    m.gather_buffers = fsdp_->gather_buffer_bytes();
  } else {
    m.params = model_.flat_params().nbytes();
    m.grads = model_.flat_grads().nbytes();
  }
  return m;
}

}  // namespace retort
