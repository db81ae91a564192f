// CUDA kernels behind core/ops.h: the same functions and signatures as core/cpu/kernels.h
// (raw DEVICE pointers and sizes; core/ops.cpp checks shapes, dtypes and devices first).
// Every kernel is queued on cuda::compute_stream() and returns without synchronising, except
// those that return a value to the host (sum_squares, sum_squares_multi,
// first_id_out_of_range, sample_tokens).
// Determinism: no floating-point atomics; every output element has one owner thread/block and
// a fixed reduction order, so results are bitwise reproducible run to run on one GPU.
// The math of each function is documented in core/ops.h; the CPU kernels are the reference.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/attention_pitches.h"
#include "core/multi_tensor.h"
#include "core/ops.h"
#include "core/sampling.h"

namespace retort::cuda {

// ---- matmul.cpp ------------------------------------------------------------------------
// y[M, N] = alpha * op(a) @ op(b) + beta * y; a is stored [M, K] (or [K, M] when ta),
// b is stored [K, N] (or [N, K] when tb). cuBLASLt, fp32 (no TF32), row-major.
void matmul(float* y, const float* a, bool ta, const float* b, bool tb, int64_t M, int64_t N,
            int64_t K, float alpha, float beta);
// Mixed precision: op(a) and op(b) rounded to bfloat16, fp32 accumulation and output.
// (cuBLASLt with bf16 operands converted into a workspace; tensor cores.)
void matmul_bf16(float* y, const float* a, bool ta, const float* b, bool tb, int64_t M,
                 int64_t N, int64_t K, float alpha, float beta);
// The same product of operands already rounded (bf16 bits): bitwise matmul_bf16 of their
// fp32 originals.
void matmul_bf16_rounded(float* y, const uint16_t* a, bool ta, const uint16_t* b, bool tb,
                         int64_t M, int64_t N, int64_t K, float alpha, float beta);
// ... with a bf16 output: y = round(alpha · op(a) @ op(b)), the fp32 result rounded once.
void matmul_bf16_rounded(uint16_t* y, const uint16_t* a, bool ta, const uint16_t* b, bool tb,
                         int64_t M, int64_t N, int64_t K, float alpha);

// y[M, N] = c + op(a) @ op(b): c read in place of y's old value (c may be y), fp32 or bf16
// operands, fp32 accumulation and output.
void matmul_add(float* y, const float* c, const float* a, bool ta, const float* b, bool tb,
                int64_t M, int64_t N, int64_t K);
void matmul_add(float* y, const float* c, const uint16_t* a, bool ta, const uint16_t* b, bool tb,
                int64_t M, int64_t N, int64_t K);
// ops::MatmulTuning for the products planned from now on (timed = ops::MatmulTuning::Timed),
// what the timing chose for each shape so far (ops::matmul_tuned_products), choices to take
// instead (ops::preset_matmul_choices) and what they hold for (ops::matmul_tuning_identity).
void set_matmul_timed(bool timed);
std::vector<ops::TunedProduct> matmul_tuned_products();
void preset_matmul_choices(const std::vector<ops::TunedProduct>& choices);
std::string matmul_tuning_identity();

// ---- elementwise.cu -------------------------------------------------------------------
void fill(float* x, int64_t n, float value);
void copy_bytes(void* dst, const void* src, int64_t nbytes);
void add_inplace(float* y, const float* x, int64_t n, float alpha);  // y += alpha x
void scale_inplace(float* y, int64_t n, float alpha);                // y *= alpha
double sum_squares(const float* x, int64_t n);  // fixed chunking: independent of thread count
// Σ over tensors of sum_squares(xs[t], ns[t]) in one pass over all tensors and one
// synchronisation; bitwise equal to cpu::sum_squares_multi (the CPU's chunks of 4096 and its
// order of additions, reproduced on the device). xs, ns: host arrays of device pointers/sizes.
double sum_squares_multi(const float* const* xs, const int64_t* ns, int64_t count);
void f32_to_bf16(uint16_t* dst, const float* src, int64_t n);  // round to nearest even
void bf16_to_f32(float* dst, const uint16_t* src, int64_t n);
// y[r·y_pitch + c] = x[r·x_pitch + c] for r < rows, c < cols (Out, In: float or uint16_t,
// converted; bf16 rounded to nearest even): a window of heads gathered or put back.
template <class Out, class In>
void copy_rows(Out* y, int64_t y_pitch, const In* x, int64_t x_pitch, int64_t rows, int64_t cols);

// ---- rmsnorm.cu -----------------------------------------------------------------------
// x: [rows, C], g: [C] -> y: [rows, C], rstd: [rows] (y float32, or bf16 rounded at the store)
void rmsnorm_forward(float* y, float* rstd, const float* x, const float* g, int64_t rows,
                     int64_t C, float eps);
void rmsnorm_forward(uint16_t* y, float* rstd, const float* x, const float* g, int64_t rows,
                     int64_t C, float eps);
// dx: [rows, C] overwritten (+= when accumulate_dx; dx_rounded, unless null, gets its final
// value in bf16), or bf16 (overwritten, rounded at the store); dg: [C] accumulated (+=)
void rmsnorm_backward(float* dx, float* dg, const float* dy, const float* x, const float* g,
                      const float* rstd, int64_t rows, int64_t C, bool accumulate_dx,
                      uint16_t* dx_rounded);
void rmsnorm_backward(uint16_t* dx, float* dg, const float* dy, const float* x, const float* g,
                      const float* rstd, int64_t rows, int64_t C);

// qk-norm and RoPE in one pass (rows [B, T, nh] of hd; table [T, hd] as rope.cpp): y, dy
// [B, T, nh, hd] contiguous; x, dx windows of heads, a token's nh heads x_pitch / dx_pitch
// elements after the previous token's (ops::Heads). y = RoPE(RMSNorm(x; g)), and dx
// (overwritten), dg (+=) from dy through the inverse rotation then the norm's backward. hd
// even (and <= 1024 on the GPU). Bitwise rmsnorm_forward into fp32 then rope_apply (sign +1),
// and rope_apply (sign −1) into fp32 then rmsnorm_backward. (Out, In: float or uint16_t.)
template <class Out, class In>
void rmsnorm_rope_forward(Out* y, float* rstd, const In* x, int64_t x_pitch, const float* g,
                          const float* table, int64_t B, int64_t T, int64_t nh, int64_t hd,
                          float eps);
template <class Out, class In>
void rmsnorm_rope_backward(Out* dx, int64_t dx_pitch, float* dg, const In* dy, const In* x,
                           int64_t x_pitch, const float* g, const float* rstd,
                           const float* table, int64_t B, int64_t T, int64_t nh, int64_t hd);

// ---- rope.cu ----------------------------------------------------------------------------
// table: [T, hd] = [cos | sin] (see ops.h)
void rope_table(float* table, int64_t T, int64_t hd, double theta);
// y = x: [B, T, nh, hd] rotated by +angle (sign = +1) or -angle (sign = -1); each of y, x
// float or bf16 (uint16_t; rounded at the store); y may be x (in place). A token's nh heads
// lie y_pitch (x_pitch) elements after the previous token's (nh·hd when contiguous; a window
// of the packed q|k|v product, ops::Heads).
template <class Out, class In>
void rope_apply(Out* y, int64_t y_pitch, const In* x, int64_t x_pitch, const float* table,
                int64_t B, int64_t T, int64_t nh, int64_t hd, float sign);

// ---- swiglu.cu --------------------------------------------------------------------------
// gate_up: [rows, 2F], each row gate (its first F columns) then up; h: [rows, F];
// dgate_up: gate_up's layout. Outputs, and gate_up / dh, float32 or bf16 (uint16_t; outputs
// rounded at the store).
// (Out, In: each float or uint16_t.)
template <class Out, class In>
void swiglu_forward(Out* h, const In* gate_up, int64_t rows, int64_t F);
template <class Out, class In>
void swiglu_backward(Out* dgate_up, const In* dh, const In* gate_up, int64_t rows, int64_t F);

// ---- bias.cu ----------------------------------------------------------------------------
// y: [rows, n] += b: [n] on every row; y (T) float32 or bf16 (uint16_t; rounded at the store).
// db: [n] += Σ_r dy[r, :], dy (In) float32 or bf16, in core/bias_order.h's order (both
// backends give the same bits).
template <class T>
void bias_add(T* y, const float* b, int64_t rows, int64_t n);
template <class In>
void bias_backward(float* db, const In* dy, int64_t rows, int64_t n);

// ---- cross_entropy.cu -------------------------------------------------------------------
// logits: [rows, V], targets: [rows] -> ce, lse: [rows]. logits (In) float32 or bf16
// (uint16_t: a bf16 product's output), read as fp32; the sums are fp32 either way.
template <class In>
void cross_entropy_forward(float* ce, float* lse, const In* logits, const int32_t* targets,
                           int64_t rows, int64_t V);
// dlogits (Out) may equal logits (in place, one dtype), or be bf16 from fp32 logits (rounded
// at the store). (Out, In): (float, float), (uint16_t, float), (uint16_t, uint16_t).
template <class Out, class In>
void cross_entropy_backward(Out* dlogits, const In* logits, const float* lse,
                            const int32_t* targets, int64_t rows, int64_t V, float ce_scale,
                            float z_scale);
// Both at once: forward's ce, lse and backward's dlogits from that lse, each row read once
// (dlogits as for backward, logits itself included).
template <class Out, class In>
void cross_entropy_forward_backward(float* ce, float* lse, Out* dlogits, const In* logits,
                                    const int32_t* targets, int64_t rows, int64_t V,
                                    float ce_scale, float z_scale);

// out[r] = logits[r, targets[r]], 0 where targets[r] = -1 (logits float32 or bf16).
template <class In>
void target_logits(float* out, const In* logits, const int32_t* targets, int64_t rows, int64_t V);
// Ids made shard-local: out[i] = ids[i] − begin on [begin, begin + V), else −1.
void vocab_shard_ids(int32_t* out, const int32_t* ids, int64_t n, int32_t begin, int32_t V);
// lse[r] = log Σ_i exp(parts[i, r]), parts: [n, rows].
void logsumexp_merge(float* lse, const float* parts, int64_t n, int64_t rows);

// ---- attention.cu -----------------------------------------------------------------------
// q, out: [B, T, H, hd]; k, v: [B, T, Hkv, hd]; lse: [B, H, T]; q, k, v and their gradients
// at the pitches p (windows read and written in place), out and dout whole; query t sees keys
// t − W < j ≤ t, W in [1, T] (T: every earlier key)
void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const AttentionPitches& p, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                       int64_t hd, int64_t W);
void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                        const float* k, const float* v, const float* out, const float* lse,
                        const AttentionPitches& p, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                        int64_t hd, int64_t W);

// ---- attention_cudnn.cpp ----------------------------------------------------------------
// The same two functions through cuDNN's fused flash attention: bf16 q, k, v, out, dout and
// gradients, fp32 statistics. False when cuDNN has no engine for the shape (nothing written),
// or when the plan's first run disagrees with the plain kernel; `why` then says why.
// q, k, v and their gradients are read and written at their pitches (core/attention_pitches.h).
// W: the sliding window, 1..T (T: none; a shorter one adds a second mask to the graph).
bool attention_forward_cudnn(uint16_t* out, float* lse, const uint16_t* q, const uint16_t* k,
                             const uint16_t* v, const AttentionPitches& p, int64_t B, int64_t T,
                             int64_t H, int64_t Hkv, int64_t hd, int64_t W, std::string* why);
bool attention_backward_cudnn(uint16_t* dq, uint16_t* dk, uint16_t* dv, const uint16_t* dout,
                              const uint16_t* q, const uint16_t* k, const uint16_t* v,
                              const uint16_t* out, const float* lse, const AttentionPitches& p,
                              int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t hd, int64_t W,
                              std::string* why);

// ---- attention_decode.cu ---------------------------------------------------------------
// q, out: [B, H, hd]; k, v: [B, T_max, Hkv, hd], keys 0..n-1 used (Out, KV: float, or uint16_t
// for a bf16 output or cache)
template <class Out, class KV>
void attention_decode(Out* out, const float* q, const KV* k, const KV* v, int64_t B,
                      int64_t T_max, int64_t n, int64_t H, int64_t Hkv, int64_t hd);

// ---- embedding.cu -----------------------------------------------------------------------
// ids: [rows] in [0, V) or -1 (zero row), table: [V, d] (fp32 or bf16) -> out: [rows, d]
// (Table: float, or uint16_t for bf16.)
template <class Table>
void embedding_forward(float* out, const int32_t* ids, const Table* table, int64_t rows,
                       int64_t d);
// dtable[ids[r]] += dout[r] (ids -1 skipped), rows in ascending order for every vocab row.
void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t rows,
                        int64_t d);

// ---- adamw.cu ---------------------------------------------------------------------------
// The gradient is g scaled by grad_scale (gradient clipping's, 1 = none) as it is read.
void adamw_step(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                float beta2, float eps, float weight_decay, int64_t step, float grad_scale = 1.0f);
// adamw_step on each of tensors[0, count) at lr · .lr_scale (weight_decay where .decay, else 0)
// in one launch per 64 tensors; bitwise equal to adamw_step per tensor. `tensors`: a host array.
void adamw_step_multi(const AdamWTensor* tensors, int64_t count, float lr, float beta1,
                      float beta2, float eps, float weight_decay, int64_t step,
                      float grad_scale = 1.0f);

// ---- kd_loss.cu (knowledge distillation; see core/ops.h) --------------------------------
// logits: [rows, V] (V: this shard's vocabulary); ids, logp: [rows, k], ids shard-local or -1;
// tail: 0 = renormalize, 1 = bucket. lse_s, lse_t: logsumexp(·/τ) over the whole vocabulary.
// lse[r] = logsumexp(logits[r, :] · inv_tau) over this shard.
void kd_logsumexp(float* lse, const float* logits, int64_t rows, int64_t V, float inv_tau);
// kl = this shard's part of the top-k sum; tail_q = its part of Q (bucket; 0 otherwise) [rows].
void kd_topk_shard_forward(float* kl, float* tail_q, const float* logits, const float* lse_s,
                           const int32_t* ids, const float* logp, int64_t rows, int64_t V,
                           int64_t k, float inv_tau, int tail);
// Bucket, on the shards' sums: tail_q = max(Q, 1e-30), kl += P (log P − log Q).
void kd_bucket_finish(float* kl, float* tail_q, const float* logp, int64_t rows, int64_t k);
// dlogits += scale · dKL/dlogits (must not alias logits); tail_q: the global Q.
void kd_topk_backward(float* dlogits, const float* logits, const float* lse_s, const float* tail_q,
                      const int32_t* ids, const float* logp, int64_t rows, int64_t V, int64_t k,
                      float inv_tau, int tail, float scale);
// teacher: [rows, V] logits (the same shard). kl = this shard's part of the dense KL [rows].
void kd_dense_shard_forward(float* kl, const float* logits, const float* teacher,
                            const float* lse_s, const float* lse_t, int64_t rows, int64_t V,
                            float inv_tau);
void kd_dense_backward(float* dlogits, const float* logits, const float* lse_s,
                       const float* teacher, const float* lse_t, int64_t rows, int64_t V,
                       float inv_tau, float scale);

// ---- generation.cu (a corpus's top-k targets and the next tokens; see core/ops.h) ----------
// logits [rows, V] -> ids, logprobs [rows, k], any k ≤ V (sorted in shared memory up to
// kSharedSortTopK, above it in a scratch of rows × the power of two ≥ k)
inline constexpr int64_t kSharedSortTopK = 1024;
void topk_log_softmax(int32_t* ids, float* logprobs, const float* logits, int64_t rows,
                      int64_t V, int64_t k, double tau);
// tokens[r] (device) = the draw of row r with draws.u(r) (computed on the device), any top_k
// and top_p.
void sample_tokens(int32_t* tokens, const float* logits, int64_t rows, int64_t V,
                   const RowDraws& draws, const SamplingParams& p);

// ---- ids.cu ------------------------------------------------------------------------------
// Index of the first id outside [lo, hi), or -1 when all are inside (synchronises).
int64_t first_id_out_of_range(const int32_t* ids, int64_t n, int32_t lo, int32_t hi);

}  // namespace retort::cuda
