// Transformer: parameters (flat buffers, names, init), the forward/backward driver over the
// blocks, and the head (final norm, logits, CE with z-loss). The block itself is in block.cpp.
#include "models/transformer.h"

#include <cmath>
#include <tuple>

#include "core/ops.h"
#include "core/random.h"
#include "models/rope_frequencies.h"

namespace retort {

namespace {

// Σ x over a float tensor, in double on the host (a copy through ops keeps this device-agnostic).
double sum_host(const Tensor& x) {
  Tensor h = Tensor::empty(x.shape(), DType::F32, Device::CPU);
  ops::copy(h, x);
  const float* p = h.host<float>();
  double s = 0;
  for (int64_t i = 0; i < h.numel(); ++i) s += p[i];
  return s;
}

// Ids outside [0, V) would index out of bounds in the embedding / cross-entropy kernels.
// (Batches come from the host; ids already on a GPU are checked by the ops themselves.)
void check_ids(const Tensor& ids, const char* what, int64_t V) {
  if (ids.device() != Device::CPU) return;
  const int32_t* p = ids.host<int32_t>();
  for (int64_t i = 0; i < ids.numel(); ++i)
    if (p[i] < 0 || p[i] >= V)
      throw Error(str_cat(what, " id ", p[i], " at position ", i, " is outside the vocabulary [0, ",
                          V, ") of model.vocab_size"));
}

}  // namespace

// ---- parameters ------------------------------------------------------------------------

Transformer::Transformer(const ModelConfig& cfg, const TpLayout& tp, Device device,
                         Gradients gradients)
    : cfg_(cfg), tp_(tp), device_(device) {
  const int64_t V = cfg.vocab_size, d = cfg.d_model, H = cfg.n_heads, Hkv = cfg.n_kv_heads,
                hd = cfg.head_dim, F = cfg.d_ff, L = cfg.n_layers;
  RETORT_CHECK(V > 0 && d > 0 && L > 0 && H > 0 && Hkv > 0 && hd > 0 && F > 0 && cfg.seq_len > 0 &&
                   H % Hkv == 0 && hd % 2 == 0,
               "Transformer needs a resolved ModelConfig (call resolve() or from_config())");
  const int n = tp.size;
  RETORT_CHECK(n >= 1 && tp.rank >= 0 && tp.rank < n && Hkv % n == 0 && F % n == 0 && V % n == 0,
               "tensor parallelism over ", n, " ranks needs n_kv_heads (", Hkv, "), d_ff (", F,
               ") and vocab_size (", V, ") divisible by ", n);
  H_ = H / n;
  Hkv_ = Hkv / n;
  F_ = F / n;
  V_ = V / n;
  v_begin_ = V_ * tp.rank;

  const bool mup_simple = cfg.init == "mup_simple";
  const double width_ratio = cfg.init == "mup" ? cfg.mup_lr_scale() : 1.0;  // µP: d₀ / d
  const double out_scale = 1.0 / std::sqrt(2.0 * L);
  // std of a matrix [out, in] under the chosen init (see transformer.h).
  auto hidden_std = [&](int64_t in, bool output_proj) {
    double s = mup_simple ? 1.0 / std::sqrt(double(in)) : cfg.init_std * std::sqrt(width_ratio);
    return output_proj ? s * out_scale : s;
  };
  // shard_dim: the dimension split over tp (-1: every rank holds it whole). std 0: the constant
  // `fill` (1 for norm gains, 0 for biases).
  auto add = [&](const std::string& name, Shape global, bool decay, double std, int shard_dim = -1,
                 float fill = 1.0f) {
    Shape shape = global;
    int64_t offset = 0;
    if (shard_dim >= 0) {
      shape[shard_dim] /= n;
      offset = shape[shard_dim] * tp.rank;
    }
    params_.push_back(Parameter{name, Tensor(), Tensor(), decay, n_params_, shape, global,
                                shard_dim, offset});  // views: build_views
    init_std_.push_back(std);
    init_fill_.push_back(fill);
    n_params_ += shape_numel(shape);
    shapes_.push_back(std::move(shape));
  };
  // A hidden matrix or lm_head: weight decay, and µP's learning rate lr · d₀/d (1 without µP);
  // the embedding, norm gains and biases learn at lr.
  const float mup_lr_scale = float(cfg.mup_lr_scale());
  auto add_matrix = [&](const std::string& name, Shape global, double std, int shard_dim) {
    add(name, std::move(global), true, std, shard_dim);
    params_.back().lr_scale = mup_lr_scale;
  };

  add("model.embed_tokens.weight", {V, d}, true, cfg.init_std, 0);
  for (int64_t i = 0; i < L; ++i) {
    unit_first_param_.push_back(params_.size());
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", {d}, false, 0);
    add_matrix(p + "self_attn.q_proj.weight", {H * hd, d}, hidden_std(d, false), 0);
    add_matrix(p + "self_attn.k_proj.weight", {Hkv * hd, d}, hidden_std(d, false), 0);
    add_matrix(p + "self_attn.v_proj.weight", {Hkv * hd, d}, hidden_std(d, false), 0);
    if (cfg.qkv_bias) {  // no decay, start at 0; split over tp with their matrices' rows
      for (const auto& [name, rows] : {std::pair{"q", H * hd}, {"k", Hkv * hd}, {"v", Hkv * hd}})
        add(p + "self_attn." + name + "_proj.bias", {rows}, false, 0, 0, 0.0f);
    }
    add_matrix(p + "self_attn.o_proj.weight", {d, H * hd}, hidden_std(H * hd, true), 1);
    if (cfg.qk_norm) {
      add(p + "self_attn.q_norm.weight", {hd}, false, 0);
      add(p + "self_attn.k_norm.weight", {hd}, false, 0);
    }
    add(p + "post_attention_layernorm.weight", {d}, false, 0);
    add_matrix(p + "mlp.gate_proj.weight", {F, d}, hidden_std(d, false), 0);
    add_matrix(p + "mlp.up_proj.weight", {F, d}, hidden_std(d, false), 0);
    add_matrix(p + "mlp.down_proj.weight", {d, F}, hidden_std(F, true), 1);
  }
  unit_first_param_.insert(unit_first_param_.begin(), 0);  // unit 0: the embedding
  unit_first_param_.push_back(params_.size());              // unit L+1: the head
  add("model.norm.weight", {d}, false, 0);
  if (!cfg.tie_embeddings)
    add_matrix("lm_head.weight", {V, d}, mup_simple ? 1.0 / double(d) : cfg.init_std * width_ratio, 0);
  RETORT_CHECK(n > 1 || n_params_ == cfg.n_params(), "parameter count ", n_params_,
               " != ModelConfig::n_params ", cfg.n_params());

  unit_first_param_.push_back(params_.size());  // end sentinel
  flat_params_ = Tensor::zeros({n_params_}, DType::F32, device);
  if (gradients == Gradients::Allocate) flat_grads_ = Tensor::zeros({n_params_}, DType::F32, device);
  build_views();
  rope_ = ops::rope_table(cfg.seq_len, rope_inverse_frequencies(cfg)).to(device);
  if (cfg.no_rope_interval > 0)  // NoPE layers: frequencies 0, a table of cos 1, sin 0
    no_rope_ = ops::rope_table(cfg.seq_len, std::vector<double>(size_t(cfg.head_dim / 2), 0.0)).to(device);
}

void Transformer::bind(const Tensor& flat_params, const Tensor& flat_grads) {
  RETORT_CHECK(flat_params.dtype() == DType::F32 && flat_grads.dtype() == DType::F32 &&
                   flat_params.numel() == n_params_ && flat_grads.numel() == n_params_,
               "bind: need two F32 buffers of ", n_params_, " elements");
  flat_params_ = flat_params.view({n_params_});
  flat_grads_ = flat_grads.view({n_params_});
  build_views();
  have_forward_ = false;
}

void Transformer::build_views() {
  for (size_t i = 0; i < params_.size(); ++i) {
    Parameter& p = params_[i];
    const int64_t n = shape_numel(shapes_[i]);
    p.value = flat_params_.flat(p.offset, n).view(shapes_[i]);
    p.grad = flat_grads_.defined() ? flat_grads_.flat(p.offset, n).view(shapes_[i]) : Tensor();
  }
  bound16_.assign(params_.size(), Tensor());
  rebuild_weights();
}

std::pair<int64_t, int64_t> Transformer::unit_range(int unit) const {
  RETORT_CHECK(unit >= 0 && unit < num_units(), "unit ", unit, " out of range [0, ", num_units(), ")");
  const size_t first = unit_first_param_[unit], last = unit_first_param_[unit + 1];
  return {params_[first].offset, last < params_.size() ? params_[last].offset : n_params_};
}

std::vector<std::pair<int64_t, int64_t>> Transformer::unit_gain_runs(int unit) const {
  const int64_t begin = unit_range(unit).first;
  std::vector<std::pair<int64_t, int64_t>> runs;
  for (size_t i = unit_first_param_[unit]; i < unit_first_param_[unit + 1]; ++i) {
    if (shapes_[i].size() != 1) continue;  // a matrix
    const int64_t b = params_[i].offset - begin, e = b + shapes_[i][0];
    if (!runs.empty() && runs.back().second == b) runs.back().second = e;
    else runs.emplace_back(b, e);
  }
  return runs;
}

int64_t Transformer::unit_gain_elems(int unit) const {
  int64_t n = 0;
  for (const auto& [b, e] : unit_gain_runs(unit)) n += e - b;
  return n;
}

void Transformer::bind_unit(int unit, const Tensor& params, const Tensor& grads,
                            const Tensor& params16) {
  const auto [begin, end] = unit_range(unit);
  const bool gains_only = params16.defined();  // params holds the unit's gains, packed
  const int64_t n_values = gains_only ? unit_gain_elems(unit) : end - begin;
  for (const auto& [buf, what, n] :
       {std::tuple{&params, "parameter", n_values}, std::tuple{&grads, "gradient", end - begin},
        std::tuple{&params16, "bf16 parameter", end - begin}})
    RETORT_CHECK(!buf->defined() || buf->numel() >= n, "bind_unit: unit ", unit, " needs ", n,
                 " elements, the ", what, " buffer has ", buf->numel());
  RETORT_CHECK(!params16.defined() || (params16.dtype() == DType::BF16 &&
                                       ops::matmul_precision() == ops::MatmulPrecision::BF16),
               "bind_unit: bf16 parameters need bf16 matmuls");
  RETORT_CHECK(!gains_only || n_values == 0 || params.defined(),
               "bind_unit: unit ", unit, "'s bf16 parameters come with its fp32 norm gains");
  int64_t packed = 0;  // next gain's place in params when gains_only
  for (size_t i = unit_first_param_[unit]; i < unit_first_param_[unit + 1]; ++i) {
    Parameter& p = params_[i];
    const int64_t n = shape_numel(shapes_[i]);
    const auto view = [&](const Tensor& buf, int64_t at) {
      return buf.defined() ? buf.flat(at, n).view(shapes_[i]) : Tensor();
    };
    const bool gain = shapes_[i].size() == 1;
    if (!gains_only) p.value = view(params, p.offset - begin);
    else if (gain) p.value = view(params, packed);
    else p.value = Tensor();  // read through bound16_ only
    if (gains_only && gain) packed += n;
    p.grad = view(grads, p.offset - begin);
    bound16_[i] = view(params16, p.offset - begin);
  }
  rebuild_weights();
}

void Transformer::release_flat() {
  flat_params_ = Tensor();
  flat_grads_ = Tensor();
  for (int u = 0; u < num_units(); ++u) bind_unit(u, Tensor(), Tensor());
  have_forward_ = false;
}

void Transformer::check_bound() const {
  RETORT_CHECK(hooks_ || flat_params_.defined(),
               "the model's parameters were released to a sharding wrapper and no unit hooks are set");
}

void Transformer::rebuild_weights() {
  size_t k = 0;
  auto next = [&]() -> Weight {
    const size_t i = k++;
    const Parameter& p = params_[i];
    Tensor w16 = bf16_armed_ ? flat16_.flat(p.offset, shape_numel(shapes_[i])).view(shapes_[i])
                             : bound16_[i];
    return Weight{p.value, p.grad, w16};
  };
  embed_ = next();
  layers_.assign(cfg_.n_layers, LayerWeights{});
  for (LayerWeights& lw : layers_) {
    lw.ln_in = next();
    lw.wq = next();
    lw.wk = next();
    lw.wv = next();
    if (cfg_.qkv_bias) {
      lw.bq = next();
      lw.bk = next();
      lw.bv = next();
    }
    lw.wo = next();
    if (cfg_.qk_norm) {
      lw.q_norm = next();
      lw.k_norm = next();
    }
    lw.ln_post = next();
    lw.w_gate = next();
    lw.w_up = next();
    lw.w_down = next();
    lw.qkv = stacked({&lw.wq, &lw.wk, &lw.wv});
    if (cfg_.qkv_bias) lw.qkv_bias = stacked({&lw.bq, &lw.bk, &lw.bv});
    lw.gate_up = stacked({&lw.w_gate, &lw.w_up});
  }
  final_norm_ = next();
  lm_head_ = cfg_.tie_embeddings ? embed_ : next();
  RETORT_CHECK(k == params_.size(), "parameter layout mismatch");
}

Transformer::Weight Transformer::stacked(std::initializer_list<const Weight*> ws) {
  const auto joined = [&](Tensor Weight::*part) {  // value, gradient or bf16 copy
    std::vector<Tensor> parts;
    for (const Weight* w : ws) parts.push_back(w->*part);
    return stack_rows(parts);
  };
  return Weight{joined(&Weight::w), joined(&Weight::g), joined(&Weight::w16)};
}

void Transformer::arm_bf16_weights() {
  if (hooks_ || !flat_params_.defined() || ops::matmul_precision() != ops::MatmulPrecision::BF16)
    return;
  if (!flat16_.defined() || flat16_.numel() != n_params_ || flat16_.device() != device_)
    flat16_ = Tensor::empty({n_params_}, DType::BF16, device_);
  ops::convert(flat16_, flat_params_);
  bf16_armed_ = true;
  rebuild_weights();
}

void Transformer::disarm_bf16_weights() {
  if (!bf16_armed_) return;
  bf16_armed_ = false;
  rebuild_weights();
}

const Parameter& Transformer::parameter(const std::string& name) const {
  for (const Parameter& p : params_)
    if (p.name == name) return p;
  throw Error(str_cat("no parameter named '", name, "'"));
}

Tensor Transformer::product_weight(const std::string& name) const {
  const Parameter& p = parameter(name);
  if (!bf16_armed_) return p.value;
  return flat16_.flat(p.offset, p.value.numel()).view(p.value.shape());
}

double Transformer::init_std(const std::string& name) const {
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].name == name) return init_std_[i];
  throw Error(str_cat("no parameter named '", name, "'"));
}

void Transformer::init(uint64_t seed) {
  for (size_t i = 0; i < params_.size(); ++i) {
    Parameter& p = params_[i];
    if (init_std_[i] == 0) {  // norm gain (1) or bias (0)
      ops::fill(p.value, init_fill_[i]);
      continue;
    }
    // Draw on the host, then copy (device-agnostic); element i depends only on (seed, name, i),
    // i the element's index in the whole parameter.
    Tensor h = Tensor::empty(p.value.shape(), DType::F32, Device::CPU);
    float* dst = h.host<float>();
    const uint64_t stream = rng::hash_string(p.name);
    const double s = init_std_[i];
    const int64_t n = h.numel();
    const int64_t cols = p.shape.size() == 2 ? p.shape[1] : n;
    const int64_t global_cols = p.global_shape.size() == 2 ? p.global_shape[1] : n;
    const int64_t col0 = p.shard_dim == 1 ? p.shard_offset : 0;
    const int64_t row0 = p.shard_dim == 0 ? p.shard_offset : 0;
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < n; ++j) {
      const int64_t global = (row0 + j / cols) * global_cols + col0 + j % cols;
      dst[j] = float(s * rng::normal(seed, stream, uint64_t(global)));
    }
    ops::copy(p.value, h);
  }
  have_forward_ = false;
}

void Transformer::zero_grad() {
  if (flat_grads_.defined()) ops::fill(flat_grads_, 0.0f);
}

// ---- activations -------------------------------------------------------------------------

Tensor Transformer::Backing::get(Device device, const Shape& shape, DType dt) {
  const int64_t n = shape_numel(shape);
  if (!buf.defined() || buf.dtype() != dt || buf.numel() < n || buf.device() != device)
    buf = Tensor::empty({n}, dt, device);
  return buf.flat(0, n).view(shape);
}

Tensor Transformer::piece(const Tensor& buf, int64_t begin, const Shape& shape) {
  return buf.flat(begin, shape_numel(shape)).view(shape);
}

DType Transformer::logits_dtype() const {
  return bf16_logits_ && !logits_loss_ && operand_dtype() == DType::BF16 ? DType::BF16 : DType::F32;
}

DType Transformer::operand_dtype() {
  return ops::matmul_precision() == ops::MatmulPrecision::BF16 ? DType::BF16 : DType::F32;
}

Tensor Transformer::shared_operand(const Tensor& x) {
  if (ops::matmul_precision() != ops::MatmulPrecision::BF16 || x.dtype() == DType::BF16) return x;
  Tensor r = operand_b_.get(device_, x.shape(), DType::BF16);
  ops::convert(r, x);
  return r;
}

// Size the activations for tokens [B, T] and copy the batch in. n_block_acts block activation
// sets and n_resid residual buffers.
void Transformer::prepare(const Tensor& tokens, const Tensor& targets, int n_block_acts, int n_resid) {
  RETORT_CHECK(tokens.ndim() == 2 && tokens.dtype() == DType::I32, "tokens must be [B, T] int32, got ",
               shape_str(tokens.shape()), " ", dtype_name(tokens.dtype()));
  RETORT_CHECK(targets.shape() == tokens.shape() && targets.dtype() == DType::I32,
               "targets must be int32 of the tokens' shape ", shape_str(tokens.shape()), ", got ",
               shape_str(targets.shape()));
  B_ = tokens.dim(0);
  T_ = tokens.dim(1);
  RETORT_CHECK(B_ > 0 && T_ > 0 && T_ <= cfg_.seq_len, "batch [B, T] = ", shape_str(tokens.shape()),
               " needs B > 0 and 0 < T <= model.seq_len = ", cfg_.seq_len);
  RETORT_CHECK(tp_.size == 1 || regions_, "tensor parallelism over ", tp_.size,
               " ranks needs set_tensor_parallel() before the first forward");
  R_ = B_ * T_;
  RETORT_CHECK(!sp() || R_ % tp_.size == 0, "sequence parallelism: the micro-batch's B·T = ", R_,
               " token rows do not split evenly over tp = ", tp_.size,
               " (choose train.micro_batch so that they do)");
  Rl_ = sp() ? R_ / tp_.size : R_;
  const int64_t R = R_, d = cfg_.d_model;
  tokens_ = tokens_b_.get(device_, {R}, DType::I32);
  targets_ = targets_b_.get(device_, {R}, DType::I32);
  check_ids(tokens, "token", cfg_.vocab_size);
  check_ids(targets, "target", cfg_.vocab_size);
  ops::copy(tokens_, tokens);
  ops::copy(targets_, targets);
  if (regions_) {  // ids relative to this rank's vocabulary shard, -1 when on another shard
    local_tokens_ = local_tokens_b_.get(device_, {R}, DType::I32);
    local_targets_ = local_targets_b_.get(device_, {R}, DType::I32);
    ops::vocab_shard_ids(local_tokens_, tokens_, v_begin_, V_, cfg_.vocab_size);
    ops::vocab_shard_ids(local_targets_, targets_, v_begin_, V_, cfg_.vocab_size);
  } else {
    local_tokens_ = tokens_;
    local_targets_ = targets_;
  }
  if (int(resid_b_.size()) < n_resid) resid_b_.resize(n_resid);
  resid_.assign(n_resid, Tensor());
  for (int i = 0; i < n_resid; ++i) resid_[i] = resid_b_[i].get(device_, {Rl_, d});
  if (int(block_b_.size()) < n_block_acts) block_b_.resize(n_block_acts);
  xf_ = xf_b_.get(device_, {R, d}, operand_dtype());
  rstdf_ = rstdf_b_.get(device_, {Rl_});
  logits_ = logits_b_.get(device_, {R, V_}, logits_dtype());
  ce_ = ce_b_.get(device_, {R});
  lse_ = lse_b_.get(device_, {R});
}

Transformer::BlockActs Transformer::block_acts(int i) {
  BlockBacking& b = block_b_[i];
  const int64_t R = R_, Rl = Rl_, d = cfg_.d_model, H = H_, Hkv = Hkv_, hd = cfg_.head_dim, F = F_;
  BlockActs a;
  const DType op_dt = operand_dtype();
  a.h1 = b.h1.get(device_, {R, d}, op_dt);
  a.rstd1 = b.rstd1.get(device_, {Rl});
  const int64_t nq = R * H * hd, nk = R * Hkv * hd;
  a.qkv = b.qkv.get(device_, {R, (H + 2 * Hkv) * hd}, op_dt);
  if (cfg_.qk_norm) {
    const Tensor qkr = b.qkr.get(device_, {nq + nk}, op_dt);
    a.qr = piece(qkr, 0, {R, H * hd});
    a.kr = piece(qkr, nq, {R, Hkv * hd});
    a.rstd_q = b.rstd_q.get(device_, {R * H});
    a.rstd_k = b.rstd_k.get(device_, {R * Hkv});
  }
  a.att = b.att.get(device_, {R, H * hd}, op_dt);
  a.lse = b.lse.get(device_, {B_, H, T_});
  a.x_mid = b.x_mid.get(device_, {Rl, d});
  a.h2 = b.h2.get(device_, {R, d}, op_dt);
  a.rstd2 = b.rstd2.get(device_, {Rl});
  a.gate_up = b.gate_up.get(device_, {R, 2 * F}, op_dt);
  a.act = b.act.get(device_, {R, F}, op_dt);
  return a;
}

// ---- tensor-parallel marks -------------------------------------------------------------------

void Transformer::row_parallel_residual(Tensor& out, const Tensor& resid, const Tensor& in,
                                        const Tensor& w) {
  if (!regions_) {  // out = resid + in Wᵀ
    ops::matmul_add(out, resid, in, false, w, true);
    return;
  }
  Tensor part = part_b_.get(device_, {R_, cfg_.d_model});  // this rank's partial sum
  ops::matmul(part, in, false, w, true);
  Tensor red = sp() ? red_b_.get(device_, {Rl_, cfg_.d_model}) : part;
  regions_->leave_forward(red, part);
  ops::copy(out, resid);
  ops::add_inplace(out, red);
}

Tensor Transformer::enter_backward(Backing& dlocal_b, Tensor& dfull) {
  if (!regions_) return dfull;
  Tensor dlocal = sp() ? dlocal_b.get(device_, {Rl_, dfull.dim(1)}) : dfull;
  regions_->enter_backward(dlocal, dfull);
  return dlocal;
}

Tensor Transformer::leave_backward(Backing& dfull_b, const Tensor& dlocal) {
  if (!sp()) return dlocal;
  Tensor dfull = dfull_b.get(device_, {R_, dlocal.dim(1)}, dlocal.dtype());
  regions_->leave_backward(dfull, dlocal);
  return dfull;
}

Tensor Transformer::residual_operand(const Tensor& dx, const Tensor& dx16) {
  if (!dx16.defined()) return leave_backward(dfull_b_, dx);  // fp32 products
  return leave_backward(dfull16_b_, dx16);
}

void Transformer::accumulate_gain(Tensor& dg, bool partial,
                                  const std::function<void(Tensor& gain)>& backward) {
  if (!regions_ || !partial) return backward(dg);
  Tensor gain = gain_b_.get(device_, dg.shape());
  ops::fill(gain, 0.0f);
  backward(gain);
  regions_->all_reduce_sum(gain);
  ops::add_inplace(dg, gain);
}

void Transformer::norm_backward(Tensor& dx, Tensor& dg, const Tensor& dy, const Tensor& x,
                                const Tensor& g, const Tensor& rstd, bool partial,
                                bool accumulate_dx, const Tensor& dx_rounded) {
  accumulate_gain(dg, partial, [&](Tensor& gain) {
    ops::rmsnorm_backward(dx, gain, dy, x, g, rstd, accumulate_dx, dx_rounded);
  });
}

// ---- head: final RMSNorm, logits, cross-entropy -------------------------------------------
//   xf = RMSNorm(x; g_final)          [R, d] (gathered under sp)
//   logits = xf Wᵀ                    [R, V/tp], W = this rank's rows of E (tied) or W_lm
//   ce[r] = lse[r] - logits[r, target_r], lse over the whole vocabulary: with tp, the shards'
//   lse are merged and the target logit comes from the shard that holds it (never gathering
//   the logits themselves).
void Transformer::head_forward(const Tensor& x, std::optional<float> grad_scale) {
  Tensor xfl = sp() ? xfl_b_.get(device_, {Rl_, cfg_.d_model}, xf_.dtype()) : xf_;
  ops::rmsnorm_forward(xfl, rstdf_, x, final_norm_.w, float(cfg_.norm_eps));
  if (sp()) regions_->enter_forward(xf_, xfl);
  ops::matmul(logits_, xf_, false, mm(lm_head_), true);
  fused_grad_scale_.reset();
  if (grad_scale && !regions_) {
    Tensor d = dlogits();
    ops::cross_entropy_forward_backward(ce_, lse_, d, logits_, local_targets_,
                                        ce_grad_scale(*grad_scale), z_grad_scale(*grad_scale));
    fused_grad_scale_ = grad_scale;
    return;
  }
  ops::cross_entropy_forward(ce_, lse_, logits_, local_targets_);
  if (!regions_) return;
  Tensor parts = lse_parts_b_.get(device_, {int64_t(tp_.size), R_});
  regions_->all_gather(parts, lse_);
  ops::logsumexp_merge(lse_, parts);
  Tensor tl = tl_b_.get(device_, {R_});
  ops::target_logits(tl, logits_, local_targets_);
  regions_->all_reduce_sum(tl);
  ops::copy(ce_, lse_);
  ops::add_inplace(ce_, tl, -1.0f);
}

Tensor Transformer::dlogits() {
  if (logits_loss_ || (operand_dtype() == DType::BF16 && logits_.dtype() == DType::F32))
    return dlogits_b_.get(device_, {R_, V_}, logits_loss_ ? DType::F32 : DType::BF16);
  return logits_;  // fp32 products; bf16 logits
}

float Transformer::ce_grad_scale(float grad_scale) const {
  return float(double(grad_scale) * double(ce_weight_) / double(R_));
}

float Transformer::z_grad_scale(float grad_scale) const {
  return float(double(grad_scale) * double(z_loss_) / double(R_));
}

// ---- forward / backward ------------------------------------------------------------------

LossResult Transformer::forward(const Tensor& tokens, const Tensor& targets, float z_loss,
                                std::optional<float> grad_scale) {
  have_forward_ = false;  // until this forward completes
  z_loss_ = z_loss;
  check_bound();
  const int L = int(cfg_.n_layers);
  const bool tied = cfg_.tie_embeddings;
  fwd_recompute_ = recompute_;
  prepare(tokens, targets, fwd_recompute_ ? 1 : L, L + 1);
  fwd_begin(0);
  embed_forward(resid_[0]);
  fwd_end(0);
  for (int l = 0; l < L; ++l) {
    BlockActs a = block_acts(fwd_recompute_ ? 0 : l);
    fwd_begin(l + 1);
    block_forward(l, resid_[l], resid_[l + 1], a);
    fwd_end(l + 1);
  }
  fwd_begin(L + 1);
  if (tied) fwd_begin(0);  // logits = xf Eᵀ
  head_forward(resid_[L], grad_scale);
  if (tied) fwd_end(0);
  fwd_end(L + 1);
  const double R = double(R_);
  LossResult r;
  r.ce = sum_host(ce_) / R;
  r.z = ops::sum_squares(lse_) / R;
  if (logits_loss_) r.extra = logits_loss_->forward(logits_);
  r.loss = double(ce_weight_) * r.ce + r.extra + double(z_loss) * r.z;
  have_forward_ = true;
  return r;
}

// x = E[tok] (vocabulary-parallel with tp: each rank looks up the ids of its shard, the
// partial rows are summed by leaving the region).
void Transformer::embed_forward(Tensor& x) {
  // fp32 table, or only the bf16 one (fsdp's bf16 gather binds no fp32 matrices; the lookup
  // widens its rows exactly)
  const Tensor& table = embed_.w.defined() ? embed_.w : embed_.w16;
  if (!regions_) {
    ops::embedding_forward(x, tokens_, table);
    return;
  }
  Tensor part = part_b_.get(device_, {R_, cfg_.d_model});
  ops::embedding_forward(part, local_tokens_, table);
  regions_->leave_forward(x, part);
}

void Transformer::backward(float grad_scale) {
  RETORT_CHECK(have_forward_, "backward() needs a forward() first (one backward per forward)");
  RETORT_CHECK(hooks_ || flat_grads_.defined(), "backward() on a model built without gradients");
  have_forward_ = false;
  const int L = int(cfg_.n_layers);
  const int64_t R = R_, d = cfg_.d_model;
  const bool tied = cfg_.tie_embeddings;
  Tensor dx = dx_b_.get(device_, {Rl_, d});
  // Under bf16 the norms' backward also write dx rounded, the operand of the next products.
  const Tensor dx16 =
      operand_dtype() == DType::BF16 ? dx16_b_.get(device_, {Rl_, d}, DType::BF16) : Tensor();
  Tensor dxf = dxf_b_.get(device_, {R, d});
  bwd_begin(L + 1);
  if (tied) bwd_begin(0);

  // loss = ce_scale·Σ ce + z_scale·Σ lse² (+ the LogitsLoss term, added into dlogits in fp32);
  // the forward wrote the first two terms' gradient already if it had the grad_scale.
  Tensor dlogits = this->dlogits();
  if (fused_grad_scale_) {
    RETORT_CHECK(*fused_grad_scale_ == grad_scale, "backward(", grad_scale,
                 ") after a forward that wrote the loss's gradient at grad_scale ",
                 *fused_grad_scale_);
  } else {
    ops::cross_entropy_backward(dlogits, logits_, lse_, local_targets_, ce_grad_scale(grad_scale),
                                z_grad_scale(grad_scale));
  }
  if (logits_loss_) logits_loss_->backward(dlogits, logits_, float(double(grad_scale) / double(R)));
  // logits = xf Wᵀ:  dxf = dlogits W  [R,V]@[V,d];  dW += dlogitsᵀ xf  [V,R]@[R,d]
  const Tensor dlogits_op = shared_operand(dlogits);
  ops::matmul(dxf, dlogits_op, false, mm(lm_head_), false);
  ops::matmul(lm_head_.g, dlogits_op, true, xf_, false, 1.0f, 1.0f);
  // xf = RMSNorm(x_L)
  Tensor dxfl = enter_backward(dlocal_b_, dxf);
  norm_backward(dx, final_norm_.g, dxfl, resid_[L], final_norm_.w, rstdf_, sp(), false, dx16);
  if (tied) bwd_end(0);
  bwd_end(L + 1);
  // Flat layout: embed | layer 0 | ... | layer L-1 | final norm | lm_head (untied).
  grads_ready(unit_range(L + 1).first, n_params_);

  for (int l = L - 1; l >= 0; --l) {
    BlockActs a = block_acts(fwd_recompute_ ? 0 : l);
    bwd_begin(l + 1);
    if (fwd_recompute_) block_forward(l, resid_[l], resid_[l + 1], a);  // same inputs, same values
    block_backward(l, resid_[l], dx, dx16, a);
    bwd_end(l + 1);
    const auto [b, e] = unit_range(l + 1);
    grads_ready(b, e);
  }
  // x = E[tok]: dE[tok] += dx (tied: on top of the logits' contribution)
  bwd_begin(0);
  Tensor dfull = leave_backward(dfull_b_, dx);
  ops::embedding_backward(embed_.g, dfull, local_tokens_);
  bwd_end(0);
  grads_ready(0, unit_range(0).second);
}

double Transformer::evaluate(const Tensor& tokens, const Tensor& targets) {
  have_forward_ = false;
  check_bound();
  const int L = int(cfg_.n_layers);
  const bool tied = cfg_.tie_embeddings;
  prepare(tokens, targets, 1, 2);  // one block's activations, residual ping-pong
  fwd_begin(0);
  embed_forward(resid_[0]);
  fwd_end(0);
  BlockActs a = block_acts(0);
  for (int l = 0; l < L; ++l) {
    fwd_begin(l + 1);
    block_forward(l, resid_[l % 2], resid_[(l + 1) % 2], a);
    fwd_end(l + 1);
  }
  fwd_begin(L + 1);
  if (tied) fwd_begin(0);
  head_forward(resid_[L % 2]);
  if (tied) fwd_end(0);
  fwd_end(L + 1);
  return sum_host(ce_) / double(R_);
}

}  // namespace retort
