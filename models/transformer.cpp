// Transformer: parameters (flat buffers, names, init), the forward/backward driver over the
// blocks, and the head (final norm, logits, CE with z-loss). The block itself is in block.cpp.
#include "models/transformer.h"

#include <cmath>

#include "core/ops.h"
#include "core/random.h"

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
// (Host tensors only; a device backend would check inside its kernels.)
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

Transformer::Transformer(const ModelConfig& cfg) : cfg_(cfg) {
  const int64_t V = cfg.vocab_size, d = cfg.d_model, H = cfg.n_heads, Hkv = cfg.n_kv_heads,
                hd = cfg.head_dim, F = cfg.d_ff, L = cfg.n_layers;
  RETORT_CHECK(V > 0 && d > 0 && L > 0 && H > 0 && Hkv > 0 && hd > 0 && F > 0 && cfg.seq_len > 0 &&
                   H % Hkv == 0 && hd % 2 == 0,
               "Transformer needs a resolved ModelConfig (call resolve() or from_config())");

  const bool mup = cfg.init == "mup_simple";
  const double out_scale = 1.0 / std::sqrt(2.0 * L);
  // std of a matrix [out, in] under the chosen init (see transformer.h).
  auto hidden_std = [&](int64_t in, bool output_proj) {
    double s = mup ? 1.0 / std::sqrt(double(in)) : cfg.init_std;
    return output_proj ? s * out_scale : s;
  };
  auto add = [&](const std::string& name, Shape shape, bool decay, double std) {
    params_.push_back(Parameter{name, Tensor(), Tensor(), decay, n_params_, shape});  // views: build_views
    init_std_.push_back(std);
    n_params_ += shape_numel(shape);
    shapes_.push_back(std::move(shape));
  };

  add("model.embed_tokens.weight", {V, d}, true, cfg.init_std);
  for (int64_t i = 0; i < L; ++i) {
    unit_first_param_.push_back(params_.size());
    const std::string p = "model.layers." + std::to_string(i) + ".";
    add(p + "input_layernorm.weight", {d}, false, 0);
    add(p + "self_attn.q_proj.weight", {H * hd, d}, true, hidden_std(d, false));
    add(p + "self_attn.k_proj.weight", {Hkv * hd, d}, true, hidden_std(d, false));
    add(p + "self_attn.v_proj.weight", {Hkv * hd, d}, true, hidden_std(d, false));
    add(p + "self_attn.o_proj.weight", {d, H * hd}, true, hidden_std(H * hd, true));
    if (cfg.qk_norm) {
      add(p + "self_attn.q_norm.weight", {hd}, false, 0);
      add(p + "self_attn.k_norm.weight", {hd}, false, 0);
    }
    add(p + "post_attention_layernorm.weight", {d}, false, 0);
    add(p + "mlp.gate_proj.weight", {F, d}, true, hidden_std(d, false));
    add(p + "mlp.up_proj.weight", {F, d}, true, hidden_std(d, false));
    add(p + "mlp.down_proj.weight", {d, F}, true, hidden_std(F, true));
  }
  unit_first_param_.insert(unit_first_param_.begin(), 0);  // unit 0: the embedding
  unit_first_param_.push_back(params_.size());              // unit L+1: the head
  add("model.norm.weight", {d}, false, 0);
  if (!cfg.tie_embeddings) add("lm_head.weight", {V, d}, true, mup ? 1.0 / double(d) : cfg.init_std);
  RETORT_CHECK(n_params_ == cfg.n_params(), "parameter count ", n_params_, " != ModelConfig::n_params ",
               cfg.n_params());

  unit_first_param_.push_back(params_.size());  // end sentinel
  flat_params_ = Tensor::zeros({n_params_});
  flat_grads_ = Tensor::zeros({n_params_});
  build_views();
  rope_ = ops::rope_table(cfg.seq_len, hd, cfg.rope_theta);
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
    p.grad = flat_grads_.flat(p.offset, n).view(shapes_[i]);
  }
  rebuild_weights();
}

std::pair<int64_t, int64_t> Transformer::unit_range(int unit) const {
  RETORT_CHECK(unit >= 0 && unit < num_units(), "unit ", unit, " out of range [0, ", num_units(), ")");
  const size_t first = unit_first_param_[unit], last = unit_first_param_[unit + 1];
  return {params_[first].offset, last < params_.size() ? params_[last].offset : n_params_};
}

void Transformer::bind_unit(int unit, const Tensor& params, const Tensor& grads) {
  const auto [begin, end] = unit_range(unit);
  RETORT_CHECK(!params.defined() || params.numel() >= end - begin, "bind_unit: unit ", unit, " has ",
               end - begin, " elements, the parameter buffer ", params.numel());
  RETORT_CHECK(!grads.defined() || grads.numel() >= end - begin, "bind_unit: unit ", unit, " has ",
               end - begin, " elements, the gradient buffer ", grads.numel());
  for (size_t i = unit_first_param_[unit]; i < unit_first_param_[unit + 1]; ++i) {
    Parameter& p = params_[i];
    const int64_t n = shape_numel(shapes_[i]);
    p.value = params.defined() ? params.flat(p.offset - begin, n).view(shapes_[i]) : Tensor();
    p.grad = grads.defined() ? grads.flat(p.offset - begin, n).view(shapes_[i]) : Tensor();
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
  auto next = [&]() -> Weight { const Parameter& p = params_[k++]; return Weight{p.value, p.grad}; };
  embed_ = next();
  layers_.assign(cfg_.n_layers, LayerWeights{});
  for (LayerWeights& lw : layers_) {
    lw.ln_in = next();
    lw.wq = next();
    lw.wk = next();
    lw.wv = next();
    lw.wo = next();
    if (cfg_.qk_norm) {
      lw.q_norm = next();
      lw.k_norm = next();
    }
    lw.ln_post = next();
    lw.w_gate = next();
    lw.w_up = next();
    lw.w_down = next();
  }
  final_norm_ = next();
  lm_head_ = cfg_.tie_embeddings ? embed_ : next();
  RETORT_CHECK(k == params_.size(), "parameter layout mismatch");
}

const Parameter& Transformer::parameter(const std::string& name) const {
  for (const Parameter& p : params_)
    if (p.name == name) return p;
  throw Error(str_cat("no parameter named '", name, "'"));
}

double Transformer::init_std(const std::string& name) const {
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].name == name) return init_std_[i];
  throw Error(str_cat("no parameter named '", name, "'"));
}

void Transformer::init(uint64_t seed) {
  for (size_t i = 0; i < params_.size(); ++i) {
    Parameter& p = params_[i];
    if (init_std_[i] == 0) {  // norm gain
      ops::fill(p.value, 1.0f);
      continue;
    }
    // Draw on the host, then copy (device-agnostic); element i depends only on (seed, name, i).
    Tensor h = Tensor::empty(p.value.shape(), DType::F32, Device::CPU);
    float* dst = h.host<float>();
    const uint64_t stream = rng::hash_string(p.name);
    const double s = init_std_[i];
    const int64_t n = h.numel();
#pragma omp parallel for schedule(static)
    for (int64_t j = 0; j < n; ++j) dst[j] = float(s * rng::normal(seed, stream, uint64_t(j)));
    ops::copy(p.value, h);
  }
  have_forward_ = false;
}

void Transformer::zero_grad() {
  if (flat_grads_.defined()) ops::fill(flat_grads_, 0.0f);
}

// ---- activations -------------------------------------------------------------------------

Tensor Transformer::Backing::get(const Shape& shape, DType dt) {
  const int64_t n = shape_numel(shape);
  if (!buf.defined() || buf.dtype() != dt || buf.numel() < n) buf = Tensor::empty({n}, dt);
  return buf.flat(0, n).view(shape);
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
  const int64_t R = B_ * T_, d = cfg_.d_model, V = cfg_.vocab_size;
  tokens_ = tokens_b_.get({R}, DType::I32);
  targets_ = targets_b_.get({R}, DType::I32);
  ops::copy(tokens_, tokens);
  ops::copy(targets_, targets);
  check_ids(tokens_, "token", V);
  check_ids(targets_, "target", V);
  if (int(resid_b_.size()) < n_resid) resid_b_.resize(n_resid);
  resid_.assign(n_resid, Tensor());
  for (int i = 0; i < n_resid; ++i) resid_[i] = resid_b_[i].get({R, d});
  if (int(block_b_.size()) < n_block_acts) block_b_.resize(n_block_acts);
  xf_ = xf_b_.get({R, d});
  rstdf_ = rstdf_b_.get({R});
  logits_ = logits_b_.get({R, V});
  ce_ = ce_b_.get({R});
  lse_ = lse_b_.get({R});
}

Transformer::BlockActs Transformer::block_acts(int i) {
  BlockBacking& b = block_b_[i];
  const int64_t R = B_ * T_, d = cfg_.d_model, H = cfg_.n_heads, Hkv = cfg_.n_kv_heads,
                hd = cfg_.head_dim, F = cfg_.d_ff;
  BlockActs a;
  a.h1 = b.h1.get({R, d});
  a.rstd1 = b.rstd1.get({R});
  if (cfg_.qk_norm) {
    a.q = b.q.get({R, H * hd});
    a.k = b.k.get({R, Hkv * hd});
    a.rstd_q = b.rstd_q.get({R * H});
    a.rstd_k = b.rstd_k.get({R * Hkv});
  }
  a.qr = b.qr.get({R, H * hd});
  a.kr = b.kr.get({R, Hkv * hd});
  a.v = b.v.get({R, Hkv * hd});
  a.att = b.att.get({R, H * hd});
  a.lse = b.lse.get({B_, H, T_});
  a.x_mid = b.x_mid.get({R, d});
  a.h2 = b.h2.get({R, d});
  a.rstd2 = b.rstd2.get({R});
  a.gate = b.gate.get({R, F});
  a.up = b.up.get({R, F});
  a.act = b.act.get({R, F});
  return a;
}

// ---- head: final RMSNorm, logits, cross-entropy -------------------------------------------
//   xf = RMSNorm(x; g_final)          [R, d]
//   logits = xf Wᵀ                    [R, V], W = E (tied) or W_lm
//   ce[r] = lse[r] - logits[r, target_r]
void Transformer::head_forward(const Tensor& x) {
  ops::rmsnorm_forward(xf_, rstdf_, x, final_norm_.w, float(cfg_.norm_eps));
  ops::matmul(logits_, xf_, false, lm_head_.w, true);
  ops::cross_entropy_forward(ce_, lse_, logits_, targets_);
}

// ---- forward / backward ------------------------------------------------------------------

LossResult Transformer::forward(const Tensor& tokens, const Tensor& targets, float z_loss) {
  have_forward_ = false;  // until this forward completes
  check_bound();
  const int L = int(cfg_.n_layers);
  const bool tied = cfg_.tie_embeddings;
  fwd_recompute_ = recompute_;
  prepare(tokens, targets, fwd_recompute_ ? 1 : L, L + 1);
  // x = E[tok]
  fwd_begin(0);
  ops::embedding_forward(resid_[0], tokens_, embed_.w);
  fwd_end(0);
  for (int l = 0; l < L; ++l) {
    BlockActs a = block_acts(fwd_recompute_ ? 0 : l);
    fwd_begin(l + 1);
    block_forward(l, resid_[l], resid_[l + 1], a);
    fwd_end(l + 1);
  }
  fwd_begin(L + 1);
  if (tied) fwd_begin(0);  // logits = xf Eᵀ
  head_forward(resid_[L]);
  if (tied) fwd_end(0);
  fwd_end(L + 1);
  const double R = double(B_ * T_);
  LossResult r;
  r.ce = sum_host(ce_) / R;
  r.z = ops::sum_squares(lse_) / R;
  if (logits_loss_) r.extra = logits_loss_->forward(logits_);
  r.loss = double(ce_weight_) * r.ce + r.extra + double(z_loss) * r.z;
  z_loss_ = z_loss;
  have_forward_ = true;
  return r;
}

void Transformer::backward(float grad_scale) {
  RETORT_CHECK(have_forward_, "backward() needs a forward() first (one backward per forward)");
  have_forward_ = false;
  const int L = int(cfg_.n_layers);
  const int64_t R = B_ * T_, d = cfg_.d_model;
  const bool tied = cfg_.tie_embeddings;
  Tensor dx = dx_b_.get({R, d});
  Tensor dxf = dxf_b_.get({R, d});
  bwd_begin(L + 1);
  if (tied) bwd_begin(0);

  // loss = ce_scale·Σ ce + z_scale·Σ lse² (+ the LogitsLoss term, added into dlogits);
  // dlogits overwrites logits unless a LogitsLoss still reads them.
  Tensor dlogits = logits_loss_ ? dlogits_b_.get({R, cfg_.vocab_size}) : logits_;
  const float ce_scale = float(double(grad_scale) * double(ce_weight_) / double(R));
  const float z_scale = float(double(grad_scale) * double(z_loss_) / double(R));
  ops::cross_entropy_backward(dlogits, logits_, lse_, targets_, ce_scale, z_scale);
  if (logits_loss_) logits_loss_->backward(dlogits, logits_, float(double(grad_scale) / double(R)));
  // logits = xf Wᵀ:  dxf = dlogits W  [R,V]@[V,d];  dW += dlogitsᵀ xf  [V,R]@[R,d]
  ops::matmul(dxf, dlogits, false, lm_head_.w, false);
  ops::matmul(lm_head_.g, dlogits, true, xf_, false, 1.0f, 1.0f);
  // xf = RMSNorm(x_L)
  ops::rmsnorm_backward(dx, final_norm_.g, dxf, resid_[L], final_norm_.w, rstdf_);
  if (tied) bwd_end(0);
  bwd_end(L + 1);
  // Flat layout: embed | layer 0 | ... | layer L-1 | final norm | lm_head (untied).
  grads_ready(unit_range(L + 1).first, n_params_);

  for (int l = L - 1; l >= 0; --l) {
    BlockActs a = block_acts(fwd_recompute_ ? 0 : l);
    bwd_begin(l + 1);
    if (fwd_recompute_) block_forward(l, resid_[l], resid_[l + 1], a);  // same inputs, same values
    block_backward(l, resid_[l], dx, a);
    bwd_end(l + 1);
    const auto [b, e] = unit_range(l + 1);
    grads_ready(b, e);
  }
  // x = E[tok]: dE[tok] += dx (tied: on top of the logits' contribution)
  bwd_begin(0);
  ops::embedding_backward(embed_.g, dx, tokens_);
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
  ops::embedding_forward(resid_[0], tokens_, embed_.w);
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
  return sum_host(ce_) / double(B_ * T_);
}

}  // namespace retort
