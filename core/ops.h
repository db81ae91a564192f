// The op set the model needs. Each op checks shapes/dtypes and dispatches on the
// tensors' device (all on one device) to a kernel in core/cpu/ or core/cuda/. models/ calls
// only these.
//
// Conventions
//  - All float tensors are F32 unless stated; ids/targets are I32. Where stated, an output
//    may be BF16 instead: the kernel rounds it once where it is produced (bitwise the F32
//    output converted), for activations whose only readers round them anyway (bf16 matmul
//    operands, cuDNN attention) — half the bytes, no conversion pass.
//  - "rows" = all leading dims flattened; the last dim is the feature dim.
//  - Backward ops OVERWRITE input gradients (dx, dq, ...) and ACCUMULATE (+=) into
//    parameter gradients (dg, dtable), so gradient accumulation over micro-batches is free.
//  - Deterministic for a fixed OpenMP thread count (no atomics, fixed reduction order).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/sampling.h"
#include "core/tensor.h"

namespace retort::ops {

// ---- dense linear algebra ----------------------------------------------------------
// y = alpha * op(a) @ op(b) + beta * y, with op(x) = xᵀ when the flag is set.
// a is viewed as 2-D [rows, last dim]: op(a): [M, K]; op(b): [K, N]; y: [M, N] (rows, last).
// Every transpose combination goes to sgemm.
// The operands' precision follows matmul_precision(); a bfloat16 operand (already rounded,
// e.g. an activation converted once for several products) makes it a bf16 product, bitwise
// the one of its fp32 original under MatmulPrecision::BF16. y is float32, or bfloat16 with
// beta = 0: a bf16 product whose fp32 result is rounded once into y (an activation stored in
// bf16, as cuBLASLt writes it).
void matmul(Tensor& y, const Tensor& a, bool transpose_a, const Tensor& b, bool transpose_b,
            float alpha = 1.0f, float beta = 0.0f);
// y = c + op(a) @ op(b), y and c float32 of one shape, c either y itself or not overlapping it:
// a residual added by the product's own accumulate (no copy of c into y first). Bitwise
// copy(y, c) then matmul(y, a, ·, b, ·, 1, 1).
void matmul_add(Tensor& y, const Tensor& c, const Tensor& a, bool transpose_a, const Tensor& b,
                bool transpose_b);
// Mixed precision (train.precision): F32 multiplies fp32 operands; BF16 rounds both operands
// to bfloat16 and accumulates in fp32 (fp32 output, master weights and every other op stay
// fp32). The GPU runs BF16 on tensor cores; the CPU emulates the rounding (a reference for
// tests, not a speed-up). Process-wide, default F32.
enum class MatmulPrecision { F32, BF16 };
void set_matmul_precision(MatmulPrecision p);
MatmulPrecision matmul_precision();
// How the GPU picks the cuBLASLt algorithm of each product shape (train.matmul_tuning):
//   Heuristic: cuBLASLt's first choice; runs are bitwise reproducible from process to process.
//   Timed: on a shape's first product, up to 8 of the heuristic's candidates each run 3 times on
//          that product's operands (the result is the chosen algorithm's) and the fastest is
//          kept for the process (as XLA autotunes its GEMMs). Faster where the heuristic
//          misjudges a shape; but another process may time another algorithm fastest, so runs
//          are bitwise reproducible across processes only with the earlier process's choices
//          preset (preset_matmul_choices; retort train keeps them in the run directory, so a
//          resume takes them: core/matmul_tuning_file.h).
// The CPU ignores it. Process-wide, default Heuristic.
enum class MatmulTuning { Heuristic, Timed };
void set_matmul_tuning(MatmulTuning t);
MatmulTuning matmul_tuning();
// What Timed chose, one entry per product shape tuned so far in this process (empty on the CPU
// or under Heuristic): the mean of 3 runs of the heuristic's first candidate and of the one kept.
struct TunedProduct {
  std::string shape;      // "matmul MxNxK NT" as in the op profile (+ " fp32" for fp32
                          // operands, " bf16 out" for a bf16 output)
  std::string key;        // the plan: "M,N,K,ta,tb,bf16 operands,bf16 output" and the
                          // alignments in bytes of a, b, c, y (up to 256)
  int candidates = 0;     // timed (those that ran)
  int chosen = 0;         // index in the heuristic's order; 0 = its first choice
  double heuristic_us = 0, chosen_us = 0;
  bool preset = false;    // taken from preset_matmul_choices (an earlier process's timing)
};
std::vector<TunedProduct> matmul_tuned_products();
// Under Timed, a product whose key is among `choices` takes the chosen algorithm instead of
// timing (when the heuristic offers that many): an earlier process's choices, valid for the
// same matmul_tuning_identity(). No-op on the CPU.
void preset_matmul_choices(const std::vector<TunedProduct>& choices);
// What timed choices hold for: the GPU's name, cuBLASLt's version, the candidates and workspace
// (the heuristic's answer depends on them); "" without a GPU.
std::string matmul_tuning_identity();

// ---- elementwise / reductions ------------------------------------------------------
void fill(Tensor& x, float value);           // F32
void copy(Tensor& dst, const Tensor& src);   // same numel and dtype; any dtype, any devices
void add_inplace(Tensor& y, const Tensor& x, float alpha = 1.0f);  // y += alpha * x
void scale_inplace(Tensor& y, float alpha);                         // y *= alpha
double sum_squares(const Tensor& x);         // Σ x², accumulated in double, deterministic
// Σ over xs of sum_squares(x), added in list order (bitwise the loop over sum_squares): all
// tensors in one pass and, on a GPU, one synchronisation instead of one per tensor.
double sum_squares_multi(const std::vector<Tensor>& xs);
void convert(Tensor& dst, const Tensor& src);  // F32 <-> BF16, same numel

// ---- RMSNorm over the last dim -------------------------------------------------------
// x: [rows, C], g: [C] -> y: [rows, C], rstd: [rows] = 1/sqrt(mean(x²) + eps) (saved).
// y = x * rstd * g   (y F32 or BF16)
void rmsnorm_forward(Tensor& y, Tensor& rstd, const Tensor& x, const Tensor& g, float eps);
// dx (overwritten, or += with accumulate_dx: the residual stream's gradient, without a
// separate add pass; bitwise dx + the overwritten result) and dg (+=) from dy. dx may be BF16
// (overwritten, rounded once: a bf16 product's operand). dx_rounded (BF16, dx's shape), when
// defined, receives dx's final value rounded (the residual gradient as the products' operand).
void rmsnorm_backward(Tensor& dx, Tensor& dg, const Tensor& dy, const Tensor& x, const Tensor& g,
                      const Tensor& rstd, bool accumulate_dx = false,
                      const Tensor& dx_rounded = Tensor());

// ---- heads inside the packed q|k|v product -------------------------------------------------
// Heads [first, first + count) of x [B, T, S, hd], each token's row holding S heads of hd
// elements: q, k or v inside the [R, (H + 2·Hkv)·hd] output of the one q|k|v product (or its
// gradient). RoPE, qk-norm and attention read and write such windows in place, a token's
// heads pitch() = S·hd elements after the previous token's. A [B, T, n, hd] tensor converts
// to all n of its heads.
struct Heads {
  Heads(const Tensor& all);  // NOLINT(google-explicit-constructor): any tensor is its heads
  Heads(const Tensor& packed, int64_t first, int64_t count);
  Tensor x;  // [B, T, S, hd]
  int64_t first = 0, count = 0;

  Shape shape() const { return {x.dim(0), x.dim(1), count, x.dim(3)}; }
  int64_t pitch() const { return x.dim(2) * x.dim(3); }
  bool whole() const { return count == x.dim(2); }  // all of x (then first = 0)
  template <class T> T* data() const { return x.data<T>() + first * x.dim(3); }
};
// dst = src, windows of one shape, each F32 or BF16 (converted; bf16 rounded to nearest even).
void copy_heads(const Heads& dst, const Heads& src);

// ---- RoPE, rotate-half convention ------------------------------------------------------
// table: [T, hd] with cos(pos·inv_freq_i) in [:, i] and sin(...) in [:, hd/2 + i], i < hd/2,
//        inv_freq_i = theta^(-2i/hd), pos = 0..T-1 (computed in double, stored in float).
Tensor rope_table(int64_t T, int64_t head_dim, double theta);
// The same from given inverse frequencies (hd = 2·inv_freq.size(); models/rope_frequencies.h).
Tensor rope_table(int64_t T, const std::vector<double>& inv_freq);
// x: [B, T, nh, hd], in place. Pair (x_i, x_{i+hd/2}) -> (x_i c - x_j s, x_j c + x_i s).
// The table may have more than T rows: rows 0..T-1 are used (pass table.slice(p, p + T) for
// positions starting at p). x may be a window of heads (q and k inside the packed product).
void rope_forward(const Heads& x, const Tensor& table);
// y = rope_forward of x, y F32 or BF16 (rounded once: an attention input in bf16 training);
// either may be a window.
void rope_forward(const Heads& y, const Heads& x, const Tensor& table);
// Gradient of rope_forward, in place on dx (rotation by -angle; F32 or BF16), or into y
// (each of y, dx F32 or BF16: cuDNN's bf16 gradients in, fp32 or a bf16 operand out).
void rope_backward(const Heads& dx, const Tensor& table);
void rope_backward(const Heads& y, const Heads& dx, const Tensor& table);

// ---- qk-norm with RoPE, one pass each way -------------------------------------------------
// x: [B, T, nh, hd] (F32 or BF16), g: [hd] -> rstd [B·T·nh] and y = RoPE(RMSNorm(x; g))
// [B, T, nh, hd] (F32 or BF16): rmsnorm_forward into fp32 then rope_forward into y (bitwise on
// the CPU), without the fp32 intermediate. hd even, at most 1024; table as rope_forward.
// x may be a window of heads (q or k inside the packed product).
void rmsnorm_rope_forward(Tensor& y, Tensor& rstd, const Heads& x, const Tensor& g,
                          const Tensor& table, float eps);
// Its gradient: dx (overwritten; F32 or BF16) and dg (+=) from dy (dy and x one dtype):
// rope_backward into fp32 then rmsnorm_backward, in one pass. dx and x may be windows.
void rmsnorm_rope_backward(const Heads& dx, Tensor& dg, const Tensor& dy, const Heads& x,
                           const Tensor& g, const Tensor& rstd, const Tensor& table);

// ---- SwiGLU ----------------------------------------------------------------------------
// gate_up: [rows, 2F], each row gate (its first F columns) then up: the output of ONE product
// with the gate and up weights stacked [2F, d] (they lie one after the other in the flat
// layout), so the MLP's input projection, its input gradient and its weight gradient are one
// product each. h: [rows, F] = silu(gate) * up, silu(z) = z * sigmoid(z). h F32 or BF16;
// gate_up F32 or BF16 (a bf16 product's output).
void swiglu_forward(Tensor& h, const Tensor& gate_up);
// dgate_up (gate_up's layout: dgate, then dup per row) overwritten, F32 or BF16, may NOT alias
// gate_up or dh; dh [rows, F] has the dtype of gate_up (a bf16 product's output under bf16
// activations).
void swiglu_backward(Tensor& dgate_up, const Tensor& dh, const Tensor& gate_up);

// ---- bias (Qwen2's q, k, v projections) --------------------------------------------------
// y: [rows, n] += b: [n] on every row; y F32 or BF16 (a bf16 product's output, rounded again
// at the store), b F32.
void bias_add(Tensor& y, const Tensor& b);
// db: [n] F32 += Σ_rows dy[rows, n], dy F32 or BF16; fp32 sums in one fixed order (the same
// bits on the CPU and the GPU, core/bias_order.h).
void bias_backward(Tensor& db, const Tensor& dy);

// ---- softmax cross-entropy with z-loss ------------------------------------------------
// logits: [rows, V] F32 or BF16 (the head's bf16 product), targets: [rows] I32 in [0, V).
// ce[r] = lse_r - logits[r, target_r]; lse[r] = logsumexp(logits[r, :]) (ce, lse F32; the sums
// are fp32 for either logits dtype).
void cross_entropy_forward(Tensor& ce, Tensor& lse, const Tensor& logits, const Tensor& targets);
// dlogits[r, :] = ce_scale * (softmax_r - onehot(target_r)) + z_scale * 2 * lse_r * softmax_r.
// The loss this differentiates is ce_scale·Σ ce + z_scale·Σ lse². dlogits may be logits itself
// (in place), or BF16 from F32 logits (rounded once: the operand of the head's bf16 products);
// BF16 logits need BF16 dlogits.
void cross_entropy_backward(Tensor& dlogits, const Tensor& logits, const Tensor& lse,
                            const Tensor& targets, float ce_scale, float z_scale);
// Both in one pass over the logits: forward's ce and lse, and backward's dlogits from that
// lse (bitwise the two calls; dlogits as for backward, logits itself included). Training
// without tensor parallelism, where a row's lse needs no other shard's: the logits are read
// once instead of twice.
void cross_entropy_forward_backward(Tensor& ce, Tensor& lse, Tensor& dlogits, const Tensor& logits,
                                    const Tensor& targets, float ce_scale, float z_scale);
// Vocabulary-parallel cross-entropy (logits hold one shard [rows, V/tp] of the vocabulary):
// targets are shard-local ids, -1 where the target lies on another shard (then ce_r = lse_r
// and backward adds no one-hot term). The full-vocabulary lse merges the shards' lse:
//   lse[r] = log Σ_i exp(parts[i, r]),   parts: [n_shards, rows]
// and the target logit is Σ over shards of target_logits (0 where the target is elsewhere).
void target_logits(Tensor& out, const Tensor& logits, const Tensor& targets);
void logsumexp_merge(Tensor& lse, const Tensor& parts);
// Global ids (I32, any shape: tokens, targets, top-k ids) in [0, vocab) → this shard's, on the
// ids' device: out = id − begin for ids in [begin, begin + shard_vocab), −1 elsewhere. An error
// names the first id outside [0, vocab).
void vocab_shard_ids(Tensor& out, const Tensor& ids, int64_t begin, int64_t shard_vocab, int64_t vocab);

// ---- causal attention (GQA) -------------------------------------------------------------
// q: [B, T, H, hd], k, v: [B, T, Hkv, hd], H % Hkv == 0; head h reads kv head h / (H/Hkv).
// out: [B, T, H, hd] = softmax(q kᵀ / sqrt(hd) + mask) v, the mask keeping key j for query i
//   where i − window < j ≤ i (window 0: every j ≤ i; Mistral's sliding_window, model.sliding_window)
// lse: [B, H, T] logsumexp of the scaled masked scores (saved for backward).
// Never materialises more than a tile of queries × T scores per thread.
// q, k, v, out (and in backward dout, dq, dk, dv) may each be F32 or BF16 (lse is F32): each
// kernel converts what is not its own type (cuDNN: bf16; the plain kernels: fp32), so bf16
// tensors in bf16 training skip cuDNN's conversions and a BF16 out is rounded once.
// q, k, v and their gradients may be windows of heads (Heads: cuDNN reads and writes them in
// place; the plain kernels through contiguous copies).
void attention_forward(Tensor& out, Tensor& lse, const Heads& q, const Heads& k, const Heads& v,
                       int64_t window = 0);
// dq, dk, dv overwritten; `window` as the forward's.
void attention_backward(const Heads& dq, const Heads& dk, const Heads& dv, const Tensor& dout,
                        const Heads& q, const Heads& k, const Heads& v, const Tensor& out,
                        const Tensor& lse, int64_t window = 0);
// Which kernel runs causal attention on a GPU (train.attention; the CPU has one kernel):
//   Auto:  cuDNN's fused flash attention when matmul_precision() is BF16 and cuDNN has an
//          engine for the shape (and window), else the plain tiled kernel
//          (core/cuda/attention.cu);
//   Cudnn: cuDNN at any precision (q, k, v, out and the gradients pass through bf16; softmax
//          statistics stay fp32); an error when cuDNN has no engine for the shape;
//   Plain: the plain fp32 kernel.
// Both kernels write the same lse, so a forward of one can be followed by a backward of the
// other. Process-wide, default Auto.
enum class AttentionKernel { Auto, Cudnn, Plain };
void set_attention_kernel(AttentionKernel k);
AttentionKernel attention_kernel();
// The kernel the last attention_forward ran: "cudnn", "plain" or "cpu" ("" before any).
const char* attention_kernel_used();

// ---- attention of one new query per sequence over a KV cache (generation) -------------------
// q: [B, H, hd] (normed and rotated) F32; k_cache, v_cache: [B, T_max, Hkv, hd], both F32 or
// both BF16 (widened exactly), with keys 0..n_keys-1 valid (n_keys <= T_max); head h reads kv
// head h / (H/Hkv).
// out: [B, H, hd] = softmax(q k[j0:n_keys]ᵀ / sqrt(hd)) v[j0:n_keys]   (no causal mask needed:
// the cache only holds the past; j0 = n_keys − window when a window shorter than n_keys is
// given, else 0); F32, or BF16 (rounded once: a bf16 product's input).
void attention_decode(Tensor& out, const Tensor& q, const Tensor& k_cache, const Tensor& v_cache,
                      int64_t n_keys, int64_t window = 0);

// ---- embedding -----------------------------------------------------------------------------
// ids: [rows] I32, table: [V, d] F32 or BF16 -> out: [rows, d] F32 = table[ids] (a bf16 table,
// fsdp's bf16 gather, widened exactly). An id of -1 (vocabulary-parallel: the token's row lives
// on another rank) gives a zero row and no gradient.
void embedding_forward(Tensor& out, const Tensor& ids, const Tensor& table);
// dtable[ids[r], :] += dout[r, :], deterministic (fixed order per vocab row).
void embedding_backward(Tensor& dtable, const Tensor& dout, const Tensor& ids);

// ---- AdamW (decoupled weight decay) ------------------------------------------------------------
// step counts from 1. m, v: same shape as param.
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g²
//   p -= lr * ( (m / (1-b1^step)) / (sqrt(v / (1-b2^step)) + eps) + weight_decay * p )
void adamw_step(Tensor& param, const Tensor& grad, Tensor& m, Tensor& v, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t step);
// Many tensors at once (a few kernel launches on a GPU instead of one per tensor), bitwise
// equal to adamw_step on each at lr · lr_scale (a float product) with weight_decay where .decay
// and 0 elsewhere. grad_scale multiplies each gradient as it is read (gradient clipping's scale,
// bitwise a scale_inplace of the gradients first, without that pass; the gradients are left as
// they are).
struct AdamWTensors {
  Tensor* param;
  const Tensor* grad;
  Tensor* m;
  Tensor* v;
  bool decay;
  float lr_scale = 1.0f;  // this tensor's learning rate: lr · lr_scale
};
void adamw_step_multi(const std::vector<AdamWTensors>& tensors, float lr, float beta1,
                      float beta2, float eps, float weight_decay, int64_t step,
                      float grad_scale = 1.0f);

// ==== knowledge distillation (core/ops_kd.cpp, core/cpu/kd_loss.cpp) =========================
// Per row r (one token): student logits z [V], temperature τ > 0, q = softmax(z/τ),
// kl[r] = KL(p_T ‖ q) with the teacher distribution p_T given either as its top-k (ids and
// log-probs at τ over the full vocabulary) or as full teacher logits (p_T = softmax(t/τ)).
// Exact math and tail options: docs/DISTILLATION.md. The caller weights the loss (λ·τ²).
// Backward ops ADD scale · d(Σ_r kl[r])/dz into dlogits, so they compose with
// cross_entropy_backward; dlogits must NOT alias logits (the logits are read).
enum class KdTail {
  Renormalize,  // top-k probabilities renormalised to 1; KL over the top-k support
  Bucket,       // one extra bucket: teacher mass 1 − Σ top-k vs the student's mass off the top-k
};
// logits: [rows, V]; topk_ids: [rows, k] I32 (distinct, in [0, V)); topk_logprobs: [rows, k] F32.
// Outputs [rows]: kl; lse = logsumexp(z/τ); tail_q = Σ_{v ∉ top-k} q_v (Bucket; 0 otherwise).
void kd_topk_forward(Tensor& kl, Tensor& lse, Tensor& tail_q, const Tensor& logits,
                     const Tensor& topk_ids, const Tensor& topk_logprobs, float temperature,
                     KdTail tail);
// lse, tail_q: as kd_topk_forward gives them (whole vocabulary). Ids may be -1 (vocabulary-
// parallel: on another shard, skipped).
void kd_topk_backward(Tensor& dlogits, const Tensor& logits, const Tensor& lse, const Tensor& tail_q,
                      const Tensor& topk_ids, const Tensor& topk_logprobs, float temperature,
                      KdTail tail, float scale);
// teacher_logits: [rows, V]. Outputs [rows]: kl, lse = logsumexp(z/τ), teacher_lse = logsumexp(t/τ).
void kd_dense_forward(Tensor& kl, Tensor& lse, Tensor& teacher_lse, const Tensor& logits,
                      const Tensor& teacher_logits, float temperature);
void kd_dense_backward(Tensor& dlogits, const Tensor& logits, const Tensor& lse,
                       const Tensor& teacher_logits, const Tensor& teacher_lse, float temperature,
                       float scale);
// Vocabulary-parallel KD: logits (and teacher logits) [rows, V/tp] hold one shard of the
// vocabulary; the caller sums over the shards between the steps (kd_topk_forward and
// kd_dense_forward are these steps with one shard):
//   1. kd_logsumexp on each shard, merged with logsumexp_merge → lse over the vocabulary
//      (online: the teacher's the same way)
//   2. kd_topk_shard_forward / kd_dense_shard_forward → each shard's part of kl (and of tail_q)
//   3. Σ over shards of kl (and tail_q); Bucket: kd_bucket_finish
// Backward is local: kd_topk_backward / kd_dense_backward with the global lse (and tail_q).
// lse[r] = logsumexp(logits[r, :] / τ) over this shard.
void kd_logsumexp(Tensor& lse, const Tensor& logits, float temperature);
// topk_ids shard-local ([0, V/tp)) or -1 (on another shard); lse: global. Outputs [rows]:
// kl = Σ_{i on this shard} p_i (log p_i − log q_{I_i}); tail_q = Σ_{v on this shard ∉ top-k} q_v
// (Bucket; 0 otherwise).
void kd_topk_shard_forward(Tensor& kl, Tensor& tail_q, const Tensor& logits, const Tensor& lse,
                           const Tensor& topk_ids, const Tensor& topk_logprobs, float temperature,
                           KdTail tail);
// Bucket, on the sums over shards: tail_q ← max(tail_q, 1e-30), kl += P (log P − log tail_q).
void kd_bucket_finish(Tensor& kl, Tensor& tail_q, const Tensor& topk_logprobs);
// lse, teacher_lse: global. kl = Σ_{v on this shard} p_v (log p_v − log q_v) [rows].
void kd_dense_shard_forward(Tensor& kl, const Tensor& logits, const Tensor& lse,
                            const Tensor& teacher_logits, const Tensor& teacher_lse,
                            float temperature);

// ==== generation: a corpus's targets, the next tokens (core/ops_kd.cpp, core/*/generation.*) ==
// Per row of logits [rows, V] (τ > 0): the k = ids.dim(-1) largest of log_softmax(logits / τ)
// into ids [rows, k] I32 and logprobs [rows, k] F32, by descending value, ties by the smaller
// id (core/descending_order.h). In double: lse = m + log Σ exp(x/τ − m), logprob =
// float(x/τ − lse). The ids are the same on every device; the GPU sums Σ exp in a fixed tree
// instead of in order, so a log-prob may differ from the CPU's by its last bit (both
// reproducible run to run). On a GPU it runs on the device for any k (only the [rows, k]
// results cross to the host).
void topk_log_softmax(Tensor& ids, Tensor& logprobs, const Tensor& logits, double tau);
// The next token of each row of logits [rows, V]: tokens [rows] I32 (on the logits' device)
// = sample_token(row r, p, draws.u(r)) (core/sampling.h). Nothing crosses to the host: on a GPU
// the draws are computed and the tokens drawn on the device, for any top_k and top_p, as a
// selection by probability mass in fixed point (exact, order-free sums;
// core/cuda/generation.cu): a token differs from the CPU's only when u·total lies within the
// weights' rounding (V·2^-47 of the largest at V = 32768) of a boundary, and a token whose weight
// is below 2^-47 of the largest is never drawn.
void sample_tokens(Tensor& tokens, const Tensor& logits, const RowDraws& draws,
                   const SamplingParams& p);

}  // namespace retort::ops
