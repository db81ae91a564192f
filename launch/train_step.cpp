#include "launch/train_step.h"

#include <cmath>
#include <cstdlib>
#include <filesystem>

#include "core/fs.h"
#include "core/json_fields.h"
#include "core/ops.h"
#include "parallel/tensor_parallel.h"

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
std::string checkpoint_format(const Config& cfg, const Mesh& mesh) {
  const std::string f = cfg.get_string("checkpoint.format");
  if (f == "auto") return mesh.fsdp * mesh.tp > 1 ? "sharded" : "consolidated";
  if (f != "sharded" && f != "consolidated")
    cfg.fail("checkpoint.format", str_cat("must be auto, sharded or consolidated, got '", f, "'"));
  return f;
}

ops::MatmulPrecision matmul_precision(const Config& cfg) {
  const std::string p = cfg.get_string("train.precision");
  if (p != "fp32" && p != "bf16") cfg.fail("train.precision", "must be fp32 or bf16");
  return p == "bf16" ? ops::MatmulPrecision::BF16 : ops::MatmulPrecision::F32;
}

ops::MatmulTuning matmul_tuning(const Config& cfg) {
  const std::string t = cfg.get_string("train.matmul_tuning");
  if (t != "heuristic" && t != "timed")
    cfg.fail("train.matmul_tuning", str_cat("must be heuristic or timed, got '", t, "'"));
  return t == "timed" ? ops::MatmulTuning::Timed : ops::MatmulTuning::Heuristic;
}

ops::AttentionKernel attention_kernel(const Config& cfg) {
  const std::string a = cfg.get_string("train.attention");
  if (a == "auto") return ops::AttentionKernel::Auto;
  if (a == "cudnn") return ops::AttentionKernel::Cudnn;
  if (a != "plain") cfg.fail("train.attention", str_cat("must be auto, cudnn or plain, got '", a, "'"));
  return ops::AttentionKernel::Plain;
}

GradReduce grad_reduce(const Config& cfg) {
  const std::string p = cfg.get_string("parallel.grad_reduce");
  if (p != "fp32" && p != "bf16") cfg.fail("parallel.grad_reduce", str_cat("must be fp32 or bf16, got '", p, "'"));
  return p == "bf16" ? GradReduce::BF16 : GradReduce::F32;
}

ParamGather param_gather(const Config& cfg) {
  const std::string p = cfg.get_string("parallel.param_gather");
  if (p != "fp32" && p != "bf16") cfg.fail("parallel.param_gather", str_cat("must be fp32 or bf16, got '", p, "'"));
  if (p == "bf16" && cfg.get_string("train.precision") != "bf16")
    cfg.fail("parallel.param_gather", "bf16 gathers need train.precision: bf16 (fp32 products would see rounded weights)");
  return p == "bf16" ? ParamGather::BF16 : ParamGather::F32;
}

std::string nonfinite_policy(const Config& cfg) {
  const std::string p = cfg.get_string("train.nonfinite");
  if (p != "stop" && p != "skip") cfg.fail("train.nonfinite", str_cat("must be stop or skip, got '", p, "'"));
  return p;
}

std::vector<OptimizedTensor> optimized_tensors(Transformer& model) {
  std::vector<OptimizedTensor> out;
  for (const auto& p : model.parameters()) out.push_back({p.name, p.value, p.grad, p.decay, p.lr_scale});
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
      skip_nonfinite_(nonfinite_policy(cfg) == "skip"),
      inject_nan_step_(std::getenv("RETORT_FAULT_NAN_GRAD_STEP")
                           ? std::atoll(std::getenv("RETORT_FAULT_NAN_GRAD_STEP")) : -1),
      sharded_checkpoints_(checkpoint_format(cfg, mesh) == "sharded"),
      inputs_(Tensor::empty({geometry.micro_seqs, geometry.seq_len}, DType::I32)),
      targets_(Tensor::empty({geometry.micro_seqs, geometry.seq_len}, DType::I32)) {
  ops::set_matmul_precision(matmul_precision(cfg));
  model.set_bf16_logits(ops::matmul_precision() == ops::MatmulPrecision::BF16);
  ops::set_attention_kernel(attention_kernel(cfg));
  ops::set_matmul_tuning(matmul_tuning(cfg));
  const GradReduce reduce_in = grad_reduce(cfg);  // data-parallel sums only; tp stays fp32
  const ParamGather gather_in = param_gather(cfg);
  RETORT_CHECK(model.tp_layout().size == mesh.tp && model.tp_layout().rank == mesh.tp_index,
               "the model was built for tp ", model.tp_layout().size, " but the mesh has tp ", mesh.tp);
  if (mesh.tp > 1) {
    tp_ = std::make_unique<TensorParallel>(mesh.tp_comm, mesh.sp);
    model.set_tensor_parallel(tp_.get());
  }
  if (mesh.fsdp > 1) {  // the model's full buffers are released; AdamW runs on the shard
    fsdp_ = std::make_unique<FullyShardedDP>(model, mesh.fsdp_comm, mesh.dp_comm,
                                             cfg.get_bool("parallel.fsdp_keep_params"), reduce_in,
                                             gather_in);
    optimizer_ = std::make_unique<AdamW>(fsdp_->optimizer_pieces(), adamw_settings(cfg));
    return;
  }
  dp_ = std::make_unique<DataParallel>(mesh.dp_comm, model.flat_grads(), cfg.get_int("parallel.bucket_elems"),
                                       reduce_in);
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
  Bf16WeightsScope bf16_weights(model_);  // disarmed before the optimizer step below
  for (int64_t m = 0; m < g_.n_micro; ++m) {
    source(first + m * g_.micro_seqs, g_.micro_seqs, inputs_, targets_);
    if (fsdp_) fsdp_->set_training(true);
    LossResult loss = model_.forward(inputs_, targets_, z_loss_, scale);  // + its dlogits
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
  if (step + 1 == inject_nan_step_) {  // a NaN in the first gradient element, on every rank
    Tensor g = (fsdp_ ? fsdp_->grad_shard() : model_.flat_grads()).flat(0, 1);
    Tensor nan = Tensor::empty({1});
    nan.host<float>()[0] = std::nanf("");
    ops::copy(g, nan);
  }
  r.grad_norm = gradient_norm();
  // loss and norm are global (identical on every rank), so every rank takes the same branch.
  if (!std::isfinite(r.loss) || !std::isfinite(r.grad_norm)) {
    if (!skip_nonfinite_) {
      const std::string where = nonfinite_gradient();
      throw Error(str_cat("step ", step + 1, ": non-finite loss (", r.loss, ") or gradient norm (",
                          r.grad_norm, ")", where.empty() ? "" : str_cat("; first bad gradient: ", where),
                          "; lower train.lr, check the data, or set train.nonfinite: skip"));
    }
    r.skipped = true;  // no update: parameters and moments stay as they were
    return r;
  }
  // Clipping: the gradients scaled by grad_clip/‖g‖ when ‖g‖ exceeds grad_clip > 0, as AdamW
  // reads them (no pass of its own).
  const bool clip = grad_clip_ > 0 && r.grad_norm > grad_clip_;
  optimizer_->step(lr, clip ? static_cast<float>(grad_clip_ / (r.grad_norm + 1e-12)) : 1.0f);
  return r;
}

std::string TrainStep::nonfinite_gradient() const {
  auto bad = [](const Tensor& g) {
    const Tensor h = g.device() == Device::CPU ? g : g.to(Device::CPU);
    const float* p = h.host<float>();
    for (int64_t i = 0; i < h.numel(); ++i)
      if (!std::isfinite(p[i])) return true;
    return false;
  };
  if (fsdp_) {
    for (const OptimizedTensor& piece : fsdp_->optimizer_pieces())
      if (bad(piece.grad)) return piece.name + " (fsdp shard)";
    return "";
  }
  for (const Parameter& p : model_.parameters())
    if (bad(p.grad)) return p.name;
  return "";
}

// ‖g‖ over the whole model: Σ g² of this rank's parameters, over the fsdp shards, then over tp
// (tp-split parameters count on every tp rank, whole copies on tp rank 0 only).
double TrainStep::gradient_norm() {
  const bool tp_root = mesh_.tp_index == 0;
  auto counted = [tp_root](const Parameter& p) { return p.shard_dim >= 0 || tp_root; };
  double sq = 0;
  if (fsdp_) {
    sq = fsdp_->grad_sq(counted);
  } else {
    std::vector<Tensor> grads;
    for (const Parameter& p : model_.parameters())
      if (counted(p)) grads.push_back(p.grad);
    sq = ops::sum_squares_multi(grads);  // one synchronisation on a GPU
  }
  sq = sum_over_ranks(*mesh_.tp_comm, sq);
  return std::sqrt(sq);
}

namespace {
std::vector<NamedTensor> named(const std::vector<Parameter>& params) {
  std::vector<NamedTensor> out;
  for (const auto& p : params) out.push_back({p.name, p.value});
  return out;
}

// Host tensors for the checkpoint writers and readers (copies when on a GPU, else the same).
std::vector<NamedTensor> on_host(const std::vector<NamedTensor>& ts, bool copy_values) {
  std::vector<NamedTensor> out;
  for (const auto& t : ts) {
    if (t.tensor.device() == Device::CPU) out.push_back(t);
    else if (copy_values) out.push_back({t.name, t.tensor.to(Device::CPU)});
    else out.push_back({t.name, Tensor::empty(t.tensor.shape())});
  }
  return out;
}

// After reading into on_host(…, false) buffers: copy them to the GPU tensors.
void copy_back(std::vector<NamedTensor>& dst, const std::vector<NamedTensor>& host) {
  for (size_t i = 0; i < dst.size(); ++i)
    if (!dst[i].tensor.same_storage(host[i].tensor)) ops::copy(dst[i].tensor, host[i].tensor);
}
}  // namespace

std::vector<NamedTensor> TrainStep::whole(const std::vector<NamedTensor>& local) {
  if (mesh_.tp == 1) return local;
  const auto& ps = model_.parameters();
  std::vector<NamedTensor> out;
  for (size_t i = 0; i < local.size(); ++i)
    out.push_back({local[i].name, gather_tp_slices(*mesh_.tp_comm, ps[i], local[i].tensor)});
  return out;
}

CheckpointData TrainStep::checkpoint_data() {
  CheckpointData data;
  if (!fsdp_) {  // every dp replica holds the same state; tp slices are gathered
    if (mesh_.dp_index != 0) return data;
    data.model = on_host(whole(named(model_.parameters())), true);
    data.exp_avg = on_host(whole(optimizer_->exp_avg()), true);
    data.exp_avg_sq = on_host(whole(optimizer_->exp_avg_sq()), true);
    if (!mesh_.is_root()) data = CheckpointData();
    return data;
  }
  // fsdp: gather the shards unit by unit to fsdp rank 0 of each tp slice, then the tp slices.
  Tensor params = fsdp_->gather_full(fsdp_->param_shard());
  Tensor m = fsdp_->gather_full(fsdp_->pack_pieces(optimizer_->exp_avg()));
  Tensor v = fsdp_->gather_full(fsdp_->pack_pieces(optimizer_->exp_avg_sq()));
  if (mesh_.fsdp_index != 0 || mesh_.dp_index != 0) return data;
  data.model = whole(fsdp_->named_views(params));
  data.exp_avg = whole(fsdp_->named_views(m));
  data.exp_avg_sq = whole(fsdp_->named_views(v));
  if (!mesh_.is_root()) data = CheckpointData();
  return data;
}

std::vector<ShardPiece> TrainStep::shard_pieces() {
  const auto& ps = model_.parameters();
  std::vector<NamedTensor>& m = optimizer_->exp_avg();
  std::vector<NamedTensor>& v = optimizer_->exp_avg_sq();
  std::vector<ShardPiece> out;
  auto add = [&](const Parameter& p, int64_t begin, const Tensor& value, size_t moment) {
    if (p.shard_dim < 0 && mesh_.tp_index != 0) return;  // whole copies: tp rank 0 stores them
    out.push_back(ShardPiece{p.name, p.global_shape, p.shape, p.shard_dim, p.shard_offset, begin,
                             value.numel(), value, m[moment].tensor, v[moment].tensor});
  };
  if (!fsdp_) {
    for (size_t i = 0; i < ps.size(); ++i) add(ps[i], 0, ps[i].value, i);
    return out;
  }
  const auto positions = fsdp_->piece_positions();
  const auto pieces = fsdp_->optimizer_pieces();
  for (size_t i = 0; i < pieces.size(); ++i) add(ps[positions[i].first], positions[i].second, pieces[i].value, i);
  return out;
}

std::string TrainStep::save(const std::string& checkpoints_dir, int64_t step,
                            const std::string& config_yaml, const nlohmann::json& state,
                            int64_t keep_last, const std::vector<int64_t>& keep_steps) {
  const bool root = mesh_.is_root();
  if (!sharded_checkpoints_) {
    CheckpointData data = checkpoint_data();
    data.config_yaml = config_yaml;
    data.state = state;
    std::string dir;  // the root writes the consolidated checkpoint
    if (root) dir = save_checkpoint(checkpoints_dir, step, data, keep_last, keep_steps);
    mesh_.world->barrier();
    return dir;
  }
  const std::string dir = checkpoint_step_dir(checkpoints_dir, step), tmp = dir + ".tmp";
  if (root) {
    fs::remove_all_quietly(tmp);
    fs::create_directories(tmp);
  }
  mesh_.world->barrier();
  if (mesh_.dp_index == 0)  // dp replicas hold the same state; writers are world ranks 0..fsdp·tp-1
    write_shard_file(tmp + "/" + shard_file_name(mesh_.rank), shard_pieces());
  mesh_.world->barrier();
  if (root) {
    std::vector<std::string> written;
    for (int r = 0; r < mesh_.fsdp * mesh_.tp; ++r) written.push_back(shard_file_name(r));
    nlohmann::json s = state;
    s["format"] = "sharded";
    s["mesh"] = {{"dp", mesh_.dp}, {"fsdp", mesh_.fsdp}, {"tp", mesh_.tp}, {"sp", mesh_.sp}};
    commit_checkpoint_dir(tmp, dir, written, config_yaml, s);
    prune_checkpoints(checkpoints_dir, keep_last, keep_steps);
  }
  mesh_.world->barrier();
  return dir;
}

nlohmann::json TrainStep::load_sliced(const std::string& dir, std::vector<NamedTensor>& weights,
                                      std::vector<NamedTensor>& exp_avg,
                                      std::vector<NamedTensor>& exp_avg_sq) {
  if (mesh_.tp == 1) {
    load_model_weights(dir, weights);
    return load_training_state(dir, exp_avg, exp_avg_sq);
  }
  // Read the whole tensors, keep this rank's slices.
  const auto& ps = model_.parameters();
  auto wholes = [&](const std::vector<NamedTensor>& local) {
    std::vector<NamedTensor> out;
    for (size_t i = 0; i < local.size(); ++i) out.push_back({local[i].name, Tensor::empty(ps[i].global_shape)});
    return out;
  };
  std::vector<NamedTensor> w = wholes(weights), m = wholes(exp_avg), v = wholes(exp_avg_sq);
  load_model_weights(dir, w);
  nlohmann::json state = load_training_state(dir, m, v);
  for (size_t i = 0; i < ps.size(); ++i) {
    copy_tp_slice(weights[i].tensor, ps[i], w[i].tensor);
    copy_tp_slice(exp_avg[i].tensor, ps[i], m[i].tensor);
    copy_tp_slice(exp_avg_sq[i].tensor, ps[i], v[i].tensor);
  }
  return state;
}

nlohmann::json TrainStep::load_checkpoint(const std::string& dir) {
  nlohmann::json state;
  if (!fsdp_) {  // GPU models read into host buffers first
    std::vector<NamedTensor> weights = named(model_.parameters());
    std::vector<NamedTensor> w = on_host(weights, false), m = on_host(optimizer_->exp_avg(), false),
                             v = on_host(optimizer_->exp_avg_sq(), false);
    state = load_sliced(dir, w, m, v);
    copy_back(weights, w);
    copy_back(optimizer_->exp_avg(), m);
    copy_back(optimizer_->exp_avg_sq(), v);
  } else {  // every rank reads the consolidated files and keeps its shard
    const int64_t N = model_.num_params();
    Tensor params = Tensor::empty({N}), m = Tensor::empty({N}), v = Tensor::empty({N});
    std::vector<NamedTensor> weights = fsdp_->named_views(params);
    std::vector<NamedTensor> mv = fsdp_->named_views(m), vv = fsdp_->named_views(v);
    state = load_sliced(dir, weights, mv, vv);
    fsdp_->scatter_full(fsdp_->param_shard(), params);
    Tensor shard = Tensor::empty({fsdp_->shard_elems()});
    fsdp_->scatter_full(shard, m);
    fsdp_->unpack_pieces(optimizer_->exp_avg(), shard);
    fsdp_->scatter_full(shard, v);
    fsdp_->unpack_pieces(optimizer_->exp_avg_sq(), shard);
  }
  optimizer_->set_steps(json_int(state, "optimizer_steps", dir + "/state.json", 0));
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
