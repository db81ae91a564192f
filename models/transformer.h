// Transformer: the decoder-only LM of SPEC §1, forward and hand-written backward, math only.
//
//   x = E[tok]; for each layer: x += Attn(RMSNorm(x)); x += MLP(RMSNorm(x))
//   logits = RMSNorm(x) Eᵀ (tied) or W_lmᵀ (untied);  loss = mean CE + z_loss · mean lse²
//
// Parameters live in ONE flat F32 buffer, gradients in another with the same layout, in the
// fixed order of parameters(): embed, layers (input_layernorm, q, k, v, q/k/v biases (qkv_bias),
// o, q_norm, k_norm, post_attention_layernorm, gate, up, down), final norm, lm_head (untied).
// The optimizer, DP and FSDP work on the flat buffers; the model only sees views.
//
// Tensor parallelism (TpLayout, models/tensor_parallel_regions.h): each tp rank holds a slice
// of every matrix — q, k, v, gate, up, the embedding and lm_head by rows (heads, features,
// vocabulary), o and down by columns — and whole copies of the norm gains; the flat buffers
// hold this rank's slices. The model marks where activations enter and leave the parallel
// regions; the regions object communicates.
//
// Every computation goes through core/ops.h (no raw memory, no BLAS). Activations are sized
// lazily from the batch's [B, T] (T <= seq_len) and kept for backward; with recompute on,
// only each block's input is kept and the block's forward is redone during backward
// (gradients are bitwise identical either way).
#pragma once
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "models/logits_loss.h"
#include "models/model_config.h"
#include "models/tensor_parallel_regions.h"

namespace retort {

struct Parameter {
  std::string name;   // Hugging Face name (SPEC §1)
  Tensor value;       // view into flat_params()
  Tensor grad;        // view into flat_grads(), same shape
  bool decay;         // weight decay applies (matrices yes, norm gains no)
  int64_t offset;     // first element in the flat buffers
  Shape shape;        // of value and grad (kept when the views are unbound, e.g. under FSDP)
  Shape global_shape; // of the whole parameter (== shape unless split over tp)
  int shard_dim = -1;        // tp split: -1 none (replicated), 0 rows, 1 columns
  int64_t shard_offset = 0;  // first row/column of this rank's slice along shard_dim
  float lr_scale = 1.0f;     // AdamW learning rate × lr_scale (µP: ModelConfig::mup_lr_scale)
};

struct LossResult {
  double loss;  // ce_weight · ce + extra + z_loss · z
  double ce;    // mean_t CE(logits_t, target_t)
  double z;     // mean_t logsumexp(logits_t)²
  double extra = 0;  // mean_t of the LogitsLoss term (0 without one)
};

class Transformer {
 public:
  // Units: contiguous ranges of the flat layout that a wrapper (FSDP) materialises one at a
  // time: 0 = embedding, 1..L = layer u-1, L+1 = final norm (+ untied lm_head). The model calls
  // before_*(u) right before it reads unit u's parameters (or, in backward, writes its
  // gradients) and after_*(u) when it is done with them; a hook may re-point the unit's views
  // with bind_unit(). Tied embeddings: the logits use unit 0 again, so the head's calls are
  // bracketed by a second before_*(0)/after_*(0) (forward order 0, 1..L, L+1, 0; backward order
  // L+1, 0, L..1, 0). The model never calls a collective; with no hooks nothing changes.
  struct UnitHooks {
    virtual ~UnitHooks() = default;
    virtual void before_forward(int unit) = 0;
    virtual void after_forward(int unit) = 0;
    virtual void before_backward(int unit) = 0;
    virtual void after_backward(int unit) = 0;
  };

  // Allocates the flat parameter and gradient buffers (zeros) for a resolved config on
  // `device` (activations follow); with tp.size > 1 only this rank's slices (H, Hkv, d_ff and
  // V must divide by tp.size). Batches may come from the host: prepare() copies them.
  // Gradients::None: no gradient buffer, a model that only runs forward (a loaded teacher, eval:
  // half the memory); backward() is then an error.
  enum class Gradients { Allocate, None };
  explicit Transformer(const ModelConfig& cfg, const TpLayout& tp = {},
                       Device device = Device::CPU, Gradients gradients = Gradients::Allocate);

  const ModelConfig& config() const { return cfg_; }
  const TpLayout& tp_layout() const { return tp_; }
  Device device() const { return device_; }
  // Required before forward when tp.size > 1 (not owned).
  void set_tensor_parallel(TensorParallelRegions* regions) { regions_ = regions; }
  int64_t num_params() const { return n_params_; }  // on this rank

  // Parameters in their fixed order; views into the flat buffers.
  const std::vector<Parameter>& parameters() const { return params_; }
  const Parameter& parameter(const std::string& name) const;  // Error if unknown
  // What a product reads for that weight: its bf16 copy while armed (arm_bf16_weights), else
  // its value. Error if unknown.
  Tensor product_weight(const std::string& name) const;
  Tensor& flat_params() { return flat_params_; }
  Tensor& flat_grads() { return flat_grads_; }
  // Re-point all parameter/gradient views at external buffers ([N] F32 each), e.g. a
  // gathered FSDP buffer. Invalidates a pending forward.
  void bind(const Tensor& flat_params, const Tensor& flat_grads);

  // ---- units (see UnitHooks) ----
  int num_units() const { return int(cfg_.n_layers) + 2; }
  // [begin, end) of unit `unit` in the flat layout.
  std::pair<int64_t, int64_t> unit_range(int unit) const;
  // Point the views of unit `unit`'s parameters at params[0 .. unit size) and its gradients at
  // grads (undefined grads = forward only; undefined params = unbind). Keeps a pending forward.
  // params16 (BF16, the unit's layout; bf16 matmul precision only), when defined, holds the
  // unit's parameters rounded to bf16 (an fsdp unit gathered in bf16, parallel.param_gather):
  // the products read their weights from it, the embedding lookup widens its rows, and params
  // then holds only the unit's 1-D parameters (norm gains, biases) in fp32, packed in order
  // (unit_gain_runs): the only fp32 values read. The matrices' fp32 views stay unbound.
  void bind_unit(int unit, const Tensor& params, const Tensor& grads,
                 const Tensor& params16 = Tensor());
  // The 1-D parameters (norm gains, biases) of unit `unit`: [begin, end) ranges relative to the
  // unit's first element, adjacent ones merged, in layout order; and their total size.
  std::vector<std::pair<int64_t, int64_t>> unit_gain_runs(int unit) const;
  int64_t unit_gain_elems(int unit) const;
  // Drop the model's own flat buffers and unbind every unit: from now on the unit hooks must
  // bind each unit before it is used (flat_params()/flat_grads() become undefined).
  void release_flat();
  void set_unit_hooks(UnitHooks* hooks) { hooks_ = hooks; }

  // SPEC init: every element i (row-major index in the whole parameter) of `name` is
  //   std(name) · rng::normal(seed, rng::hash_string(name), i)      (gains 1, biases 0),
  // independent of how the parameter is split or sharded. std(name) per cfg.init:
  //   normal:     matrices init_std; o_proj, down_proj init_std / sqrt(2L).
  //   mup_simple: embed_tokens init_std; every hidden matrix W [out, in] 1/sqrt(in)
  //               (o_proj, down_proj additionally / sqrt(2L)); lm_head (untied) 1/in.
  //   mup:        µP relative to the base width d₀ = mup_base_width, s = d₀/d: embed_tokens
  //               init_std; hidden matrices init_std·sqrt(s) (o_proj, down_proj / sqrt(2L));
  //               lm_head init_std·s; and those matrices learn at lr·s (Parameter::lr_scale).
  //               At d = d₀ it is the normal init, bitwise.
  void init(uint64_t seed);
  // The init std of one parameter (0 for norm gains, which are set to 1, and biases, set to 0).
  double init_std(const std::string& name) const;

  void zero_grad();
  // bf16 copies of the weights for the products of one training step (matmul precision bf16,
  // the model's own flat buffers: not under fsdp's unit hooks). arm_bf16_weights() rounds the
  // current parameters once (bitwise what each product would round them to) and every matmul
  // with a weight reads the copy until disarm_bf16_weights(); no-op otherwise. TrainStep arms
  // them for a step's micro-batches and disarms them before the optimizer changes the
  // parameters (Bf16WeightsScope), so a copy is never older than its weights.
  void arm_bf16_weights();
  void disarm_bf16_weights();
  // Takes effect at the next forward().
  void set_recompute(bool on) { recompute_ = on; }
  // The head's logits as its product's bf16 output, like every other activation under bf16
  // products: the loss reads them (fp32 sums) and backward writes the bf16 dlogits over them,
  // so the [B·T, V] logits cost 2 bytes per element instead of 4 (fp32) + 2 (bf16 dlogits).
  // Only while the products are bf16 and no LogitsLoss reads the logits (it needs fp32);
  // TrainStep turns it on for train.precision bf16, while teachers and generators, which read
  // logits(), keep fp32. Takes effect at the next forward() or evaluate().
  void set_bf16_logits(bool on) { bf16_logits_ = on; }
  // Called during backward() each time a contiguous range [begin, end) of flat_grads() holds
  // its final value for this backward: the head's unit (final norm, untied lm_head), then each
  // layer from last to first, then the embedding. Data parallelism starts reducing a range
  // while backward continues on the layers below. Empty = no calls.
  using GradReadyHook = std::function<void(int64_t begin, int64_t end)>;
  void set_grad_ready_hook(GradReadyHook hook) { grad_ready_ = std::move(hook); }
  bool recompute() const { return recompute_; }
  // Extra loss on the logits in forward()/backward() (not evaluate()), CE weighted by
  // ce_weight (models/logits_loss.h). nullptr = plain CE. Takes effect at the next forward().
  void set_logits_loss(LogitsLoss* loss, float ce_weight = 1.0f) {
    logits_loss_ = loss;
    ce_weight_ = ce_weight;
  }

  // tokens, targets: [B, T] I32 with T <= seq_len. Keeps what backward needs. Given the
  // grad_scale of the backward() to come, it also writes the loss's gradient in the logits in
  // the same pass over them as the loss (one read of the [B·T, V] logits instead of two;
  // without tp, which needs every shard's lse first): logits() then holds it.
  LossResult forward(const Tensor& tokens, const Tensor& targets, float z_loss,
                     std::optional<float> grad_scale = std::nullopt);
  // grads += grad_scale · d(loss)/dθ for the loss of the last forward (call once per forward;
  // micro-batch accumulation = grad_scale 1/n_micro each; the forward's grad_scale if it had
  // one).
  void backward(float grad_scale);
  // Forward only: mean CE (no z-term). Keeps one block's activations at a time. Invalidates a
  // pending forward.
  double evaluate(const Tensor& tokens, const Tensor& targets);

  // Logits [B·T, V/tp] of the last forward/evaluate (overwritten with dlogits by backward, or
  // by a forward given grad_scale, at fp32 precision without a LogitsLoss, and with
  // set_bf16_logits); F32, or BF16 under set_bf16_logits.
  const Tensor& logits() const { return logits_; }

 private:
  struct Weight {
    Tensor w, g;  // value, grad
    Tensor w16;   // bf16 copy of w while armed (arm_bf16_weights) or bound (bind_unit's
                  // params16), else undefined
  };
  // The operand of a product with weight w: its bf16 copy when there is one.
  static const Tensor& mm(const Weight& w) { return w.w16.defined() ? w.w16 : w.w; }
  struct LayerWeights {
    Weight ln_in, wq, wk, wv, bq, bk, bv, wo, q_norm, k_norm, ln_post, w_gate, w_up, w_down;
    // Consecutive weights stacked as one, for single products: q, k, v as
    // [(H + 2·Hkv)·hd, d] (each row of the product's output holds a token's q, k and v heads),
    // their biases (qkv_bias) as [(H + 2·Hkv)·hd], gate and up as [2F, d]
    // (ops::swiglu_forward's packed layout).
    Weight qkv, qkv_bias, gate_up;
  };
  // The matrices (or vectors) ws stacked as one [Σ rows, cols] ([Σ n]) Weight (stack_rows of
  // their values, gradients and bf16 copies: each undefined where they are not consecutive, or
  // are unbound).
  static Weight stacked(std::initializer_list<const Weight*> ws);
  // What a block's backward needs (R = B·T rows). All but the rstd and lse and x_mid are
  // operand_dtype().
  // R = B·T rows inside the tensor-parallel regions, Rl = R/tp (sp) or R rows in the residual
  // stream; H, Hkv, F per rank.
  // q, k, v side by side in each row of qkv, gate and up in each row of gate_up (one product
  // each).
  struct BlockActs {
    Tensor h1, rstd1;         // [R, d], [Rl]      RMSNorm(x_in) (gathered under sp)
    Tensor qkv;               // [R, (H + 2·Hkv)·hd]: per row q (H heads), k, v (Hkv heads each)
    Tensor rstd_q, rstd_k;    // [R·H], [R·Hkv]   (qk_norm only)
    Tensor qr, kr;            // [R, H·hd], [R, Hkv·hd]: q, k after norm + RoPE (qk_norm only;
                              // else RoPE rotates them in place inside qkv)
    Tensor att, lse;          // [R, H·hd], [B, H, T]
    Tensor x_mid;             // [Rl, d] residual after attention
    Tensor h2, rstd2;         // [R, d], [Rl]
    Tensor gate_up, act;      // [R, 2F] (gate, up per row), [R, F]
  };
  struct Backing {  // capacity-managed storage for one activation
    Tensor buf;
    Tensor get(Device device, const Shape& shape, DType dt = DType::F32);
  };
  struct BlockBacking {
    Backing h1, rstd1, qkv, rstd_q, rstd_k, qkr, att, lse, x_mid, h2, rstd2, gate_up, act;
  };

  void build_views();
  void rebuild_weights();  // Weight structs from the views in params_
  // Hook calls (no-ops without hooks).
  void fwd_begin(int u) { if (hooks_) hooks_->before_forward(u); }
  void fwd_end(int u) { if (hooks_) hooks_->after_forward(u); }
  void bwd_begin(int u) { if (hooks_) hooks_->before_backward(u); }
  void bwd_end(int u) { if (hooks_) hooks_->after_backward(u); }
  void check_bound() const;
  void prepare(const Tensor& tokens, const Tensor& targets, int n_block_acts, int n_resid);
  BlockActs block_acts(int i);
  void block_forward(int layer, const Tensor& x_in, Tensor& x_out, BlockActs& a);
  // dx16: dx rounded to bf16 (bf16 activations; kept so by the block), else undefined.
  void block_backward(int layer, const Tensor& x_in, Tensor& dx, const Tensor& dx16, BlockActs& a);
  // Final norm + logits + CE/lse from the residual x: fills xf_, rstdf_, logits_, ce_, lse_;
  // with a grad_scale (and no tp) also the loss's dlogits (fused_grad_scale_).
  void head_forward(const Tensor& x, std::optional<float> grad_scale = std::nullopt);
  // The loss's gradient in the logits: logits_ itself, or apart where a LogitsLoss still reads
  // them (F32) or the bf16 products need bf16 from fp32 logits.
  Tensor dlogits();
  // The cross-entropy's ce_scale and z_scale for the loss of the pending forward: the batch
  // mean (1/R) times the CE weight, or z_loss, times grad_scale.
  float ce_grad_scale(float grad_scale) const;
  float z_grad_scale(float grad_scale) const;
  // x [Rl, d] = E[tokens] (vocabulary-parallel with tp).
  void embed_forward(Tensor& x);
  // ---- tensor-parallel marks (plain copies / matmuls when tp = 1) ----
  // out [Rl, d] = resid + leave(in W^T): a row-parallel projection added to the residual.
  void row_parallel_residual(Tensor& out, const Tensor& resid, const Tensor& in, const Tensor& w);
  // dlocal [Rl, c] ← enter's backward of dfull [R, c] (overwrites dfull); aliases without sp.
  Tensor enter_backward(Backing& dlocal_b, Tensor& dfull);
  // dpartial [R, c] ← leave's backward of dlocal; aliases without sp.
  Tensor leave_backward(Backing& dfull_b, const Tensor& dlocal);
  // rmsnorm_backward whose gain gradient is a partial sum over tp when `partial` (summed over tp
  // before it is added, so micro-batch accumulation stays exact); dx += with accumulate_dx, and
  // dx_rounded (when defined) gets the final dx in bf16.
  void norm_backward(Tensor& dx, Tensor& dg, const Tensor& dy, const Tensor& x, const Tensor& g,
                     const Tensor& rstd, bool partial, bool accumulate_dx = false,
                     const Tensor& dx_rounded = Tensor());
  // dg += the gain gradient `backward` accumulates into its argument: dg itself, or (partial
  // under tp) a zeroed scratch summed over tp first.
  void accumulate_gain(Tensor& dg, bool partial, const std::function<void(Tensor& gain)>& backward);
  // The residual gradient as the operand of the products that read it, [R, d] (gathered under
  // sp): dx16 when defined (bf16 activations: no conversion, half the bytes gathered), else dx
  // (fp32 products).
  Tensor residual_operand(const Tensor& dx, const Tensor& dx16);
  bool sp() const { return regions_ && tp_.sp; }
  // Under bf16 matmuls, an fp32 tensor read by two products (dlogits under a LogitsLoss) is
  // rounded to bf16 once into scratch (bitwise the same products: matmul rounds an fp32 operand
  // the same way); otherwise x itself.
  Tensor shared_operand(const Tensor& x);
  // The dtype of the activations between ops (not the residual stream): BF16 under bf16
  // matmuls, each written rounded by the op that produces it — norms, qk-norm + RoPE,
  // attention, SwiGLU and the products (q, k, v, gate, up; in backward dact, datt) — so no
  // conversion pass and half the memory. Products and cuDNN would round them anyway; the fp32
  // kernels that read some of them (qk-norm: q, k; SwiGLU: gate, up, dact; the plain attention
  // kernel: q, k, v, out, dout) see the rounded values, as under PyTorch's autocast.
  static DType operand_dtype();
  // The elements [begin, begin + numel(shape)) of a flat buffer, viewed as `shape`.
  static Tensor piece(const Tensor& buf, int64_t begin, const Shape& shape);

  ModelConfig cfg_;
  TpLayout tp_;
  TensorParallelRegions* regions_ = nullptr;
  Device device_ = Device::CPU;
  int64_t H_ = 0, Hkv_ = 0, F_ = 0, V_ = 0;  // heads, kv heads, d_ff, vocab on this rank
  int64_t v_begin_ = 0;                      // first vocabulary id of this rank's shard
  int64_t n_params_ = 0;
  std::vector<Parameter> params_;
  std::vector<double> init_std_;
  std::vector<float> init_fill_;  // the value of a parameter with init std 0
  std::vector<Shape> shapes_;
  Tensor flat_params_, flat_grads_;
  Weight embed_, final_norm_, lm_head_;  // lm_head_ == embed_ when tied
  std::vector<LayerWeights> layers_;
  Tensor rope_;     // [seq_len, hd]
  Tensor no_rope_;  // [seq_len, hd], cos 1 and sin 0: the NoPE layers' (model.no_rope_interval)

  std::vector<size_t> unit_first_param_;  // unit u owns params_[first[u], first[u+1])
  UnitHooks* hooks_ = nullptr;

  bool recompute_ = false;
  bool bf16_logits_ = false;
  DType logits_dtype() const;  // of the next forward's logits
  GradReadyHook grad_ready_;
  void grads_ready(int64_t begin, int64_t end) {
    if (grad_ready_ && end > begin) grad_ready_(begin, end);
  }
  bool have_forward_ = false;  // a forward() is waiting for its backward()
  float z_loss_ = 0;           // of the pending forward
  std::optional<float> fused_grad_scale_;  // the pending forward wrote dlogits at this scale
  bool fwd_recompute_ = false; // recompute setting of the pending forward
  LogitsLoss* logits_loss_ = nullptr;
  float ce_weight_ = 1.0f;
  int64_t B_ = 0, T_ = 0, R_ = 0, Rl_ = 0;

  // activations
  Backing tokens_b_, targets_b_, xf_b_, rstdf_b_, logits_b_, ce_b_, lse_b_;
  // tensor parallelism: shard-local ids (-1 elsewhere), gathered/partial scratch
  Backing local_tokens_b_, local_targets_b_, xfl_b_, hl_b_, part_b_, red_b_, lse_parts_b_, tl_b_,
      gain_b_, dfull_b_, dlocal_b_;
  Tensor local_tokens_, local_targets_;
  std::vector<Backing> resid_b_;        // residual stream at each block input (+ output)
  std::vector<BlockBacking> block_b_;   // L blocks, or 1 with recompute / evaluate
  Tensor tokens_, targets_, xf_, rstdf_, logits_, ce_, lse_;
  std::vector<Tensor> resid_;
  // backward scratch
  Backing dlogits_b_;  // with a LogitsLoss (fp32) or bf16 products on fp32 logits (bf16); else
                       // dlogits overwrites logits_
  Backing dx_b_, dx16_b_, dfull16_b_, dh_b_, dxf_b_, dact_b_, dgate_up_b_, datt_b_, dq_b_, dk_b_,
      dqkv_b_;
  Backing operand_b_;                 // shared_operand's bf16 copy
  Tensor flat16_;                     // arm_bf16_weights' copy of flat_params_
  std::vector<Tensor> bound16_;       // per parameter: its view of bind_unit's params16
  bool bf16_armed_ = false;
};

// Arms the model's bf16 weight copies for the scope (Transformer::arm_bf16_weights).
class Bf16WeightsScope {
 public:
  explicit Bf16WeightsScope(Transformer& m) : m_(m) { m_.arm_bf16_weights(); }
  ~Bf16WeightsScope() { m_.disarm_bf16_weights(); }
  Bf16WeightsScope(const Bf16WeightsScope&) = delete;
  Bf16WeightsScope& operator=(const Bf16WeightsScope&) = delete;

 private:
  Transformer& m_;
};

}  // namespace retort
