// One transformer block, forward and backward together (R = B·T rows, row-vector convention,
// W stored [out, in] so y = x Wᵀ):
//
//   h1 = RMSNorm(x_in; g_in)                                  [R, d]
//   q = h1 Wqᵀ [R, H·hd];  k = h1 Wkᵀ, v = h1 Wvᵀ [R, Hkv·hd]
//   qk_norm: q_h = RMSNorm(q_h; g_q), k_h = RMSNorm(k_h; g_k)  per head, over hd
//   q, k = RoPE(q), RoPE(k)                                   viewed [B, T, heads, hd]
//   att = causal GQA softmax(q kᵀ/sqrt(hd)) v                 [R, H·hd]
//   x_mid = x_in + att Woᵀ                                    [R, d]
//   h2 = RMSNorm(x_mid; g_post)
//   [gate | up] = h2 [W_gate; W_up]ᵀ                          [R, 2F] (one product)
//   act = silu(gate) ⊙ up                                     [R, F]
//   x_out = x_mid + act W_downᵀ                               [R, d]
//
// Tensor parallelism (models/tensor_parallel_regions.h): H, Hkv and F are this rank's heads and
// features; h1 and h2 enter the parallel region (gathered under sp), the o and down projections
// leave it (partial sums reduced, or reduce-scattered under sp). The residual stream x_in,
// x_mid, x_out holds Rl rows (R/tp under sp, else R).
#include "core/ops.h"
#include "models/transformer.h"

namespace retort {

void Transformer::block_forward(int layer, const Tensor& x_in, Tensor& x_out, BlockActs& a) {
  const LayerWeights& w = layers_[layer];
  const int64_t B = B_, T = T_, R = R_, H = H_, Hkv = Hkv_, hd = cfg_.head_dim;
  const float eps = float(cfg_.norm_eps);
  Tensor rope = rope_.slice(0, T);
  // RMSNorm on this rank's rows, then (sp) gathered into the full [R, d] for the projections.
  auto norm_enter = [&](Tensor& full, Tensor& rstd, const Tensor& x, const Tensor& g) {
    Tensor local = sp() ? hl_b_.get(device_, {Rl_, cfg_.d_model}, full.dtype()) : full;
    ops::rmsnorm_forward(local, rstd, x, g, eps);
    if (sp()) regions_->enter_forward(full, local);
  };

  // ---- attention ----
  norm_enter(a.h1, a.rstd1, x_in, w.ln_in.w);
  // q, k, v (one after another) written by their products in the activations' dtype: one
  // batched product when they have one shape (no GQA), else q, then k and v batched.
  if (mm(w.qkv).defined()) {
    Tensor qkv = a.q.span({3, R, H * hd});
    ops::matmul_batched(qkv, a.h1, false, mm(w.qkv), true);
  } else {
    ops::matmul(a.q, a.h1, false, mm(w.wq), true);
    if (mm(w.kv).defined()) {
      Tensor kv = a.k.span({2, R, Hkv * hd});
      ops::matmul_batched(kv, a.h1, false, mm(w.kv), true);
    } else {
      ops::matmul(a.k, a.h1, false, mm(w.wk), true);
      ops::matmul(a.v, a.h1, false, mm(w.wv), true);
    }
  }
  Tensor q4 = a.qr.view({B, T, H, hd}), k4 = a.kr.view({B, T, Hkv, hd});
  Tensor v4 = a.v.view({B, T, Hkv, hd}), att4 = a.att.view({B, T, H, hd});
  if (cfg_.qk_norm) {  // per head: RMSNorm, then RoPE, in one pass into qr, kr
    ops::rmsnorm_rope_forward(q4, a.rstd_q, a.q.view({B, T, H, hd}), w.q_norm.w, rope, eps);
    ops::rmsnorm_rope_forward(k4, a.rstd_k, a.k.view({B, T, Hkv, hd}), w.k_norm.w, rope, eps);
  } else {
    ops::rope_forward(q4, rope);
    ops::rope_forward(k4, rope);
  }
  ops::attention_forward(att4, a.lse, q4, k4, v4);
  row_parallel_residual(a.x_mid, x_in, a.att, mm(w.wo));

  // ---- MLP ----
  norm_enter(a.h2, a.rstd2, a.x_mid, w.ln_post.w);
  ops::matmul(a.gate_up, a.h2, false, mm(w.gate_up), true);  // [R, 2F] = h2 [W_gate; W_up]ᵀ
  ops::swiglu_forward(a.act, a.gate_up);
  row_parallel_residual(x_out, a.x_mid, a.act, mm(w.w_down));
}

// dx: dL/dx_out on entry, dL/dx_in on exit ([Rl, d]). Parameter grads accumulate (+=).
// Norm gains see only this rank's rows under sp, and the q/k norm gains only this rank's heads
// under tp: their gradients are summed over tp (norm_backward's `partial`). The activations and
// their gradients that products read are operand_dtype() already (bf16 under bf16 products).
void Transformer::block_backward(int layer, const Tensor& x_in, Tensor& dx, const Tensor& dx16,
                                 BlockActs& a) {
  const LayerWeights& w = layers_[layer];
  const int64_t B = B_, T = T_, R = R_, d = cfg_.d_model, H = H_, Hkv = Hkv_, hd = cfg_.head_dim,
                F = F_;
  Tensor rope = rope_.slice(0, T);
  Tensor dh = dh_b_.get(device_, {R, d});
  // Gradients read only by bf16 products, SwiGLU, RoPE and cuDNN (dact, dgate_up, datt, dq, dk,
  // dv): op_dt.
  const DType op_dt = operand_dtype();
  Tensor dact = dact_b_.get(device_, {R, F}, op_dt);
  Tensor dgate_up = dgate_up_b_.get(device_, {R, 2 * F}, op_dt);  // per row dgate, then dup
  Tensor g_down = w.w_down.g, g_gate_up = w.gate_up.g, g_o = w.wo.g;
  Tensor g_in = w.ln_in.g, g_post = w.ln_post.g;

  // ---- MLP: x_out = x_mid + act W_downᵀ ----
  Tensor op = residual_operand(dx, dx16);                        // dy [R, d]
  ops::matmul(dact, op, false, mm(w.w_down), false);             // dact = dy W_down   [R,d]@[d,F]
  ops::matmul(g_down, op, true, a.act, false, 1.0f, 1.0f);       // dW_down += dyᵀ act [d,R]@[R,F]
  ops::swiglu_backward(dgate_up, dact, a.gate_up);
  ops::matmul(dh, dgate_up, false, mm(w.gate_up), false);        // dh2 = [dgate|dup] [W_gate; W_up]
  ops::matmul(g_gate_up, dgate_up, true, a.h2, false, 1.0f, 1.0f);  // += dgate_upᵀ h2 [2F,R]@[R,d]
  Tensor dhl = enter_backward(dlocal_b_, dh);                    // [Rl, d]
  norm_backward(dx, g_post, dhl, a.x_mid, w.ln_post.w, a.rstd2, sp(), true, dx16);  // dL/dx_mid

  // ---- attention: x_mid = x_in + att Woᵀ ----
  Tensor datt = datt_b_.get(device_, {R, H * hd}, op_dt);
  op = residual_operand(dx, dx16);
  ops::matmul(datt, op, false, mm(w.wo), false);                 // datt = dy Wo   [R,d]@[d,H·hd]
  ops::matmul(g_o, op, true, a.att, false, 1.0f, 1.0f);          // dWo += dyᵀ att
  // The gradients w.r.t. the projections' outputs q, k, v, one after the other (batched dW).
  const int64_t nq = R * H * hd, nk = R * Hkv * hd;
  const Tensor dqkv = dqkv_b_.get(device_, {nq + 2 * nk}, op_dt);
  Tensor dq_raw = piece(dqkv, 0, {R, H * hd}), dk_raw = piece(dqkv, nq, {R, Hkv * hd}),
         dv = piece(dqkv, nq + nk, {R, Hkv * hd});
  // Attention's dq, dk: into scratch when the norms' backward follows, else in place.
  Tensor dq = cfg_.qk_norm ? dq_b_.get(device_, {R, H * hd}, op_dt) : dq_raw;
  Tensor dk = cfg_.qk_norm ? dk_b_.get(device_, {R, Hkv * hd}, op_dt) : dk_raw;
  Tensor q4 = a.qr.view({B, T, H, hd}), k4 = a.kr.view({B, T, Hkv, hd});
  Tensor v4 = a.v.view({B, T, Hkv, hd}), att4 = a.att.view({B, T, H, hd});
  Tensor dq4 = dq.view({B, T, H, hd}), dk4 = dk.view({B, T, Hkv, hd}), dv4 = dv.view({B, T, Hkv, hd});
  ops::attention_backward(dq4, dk4, dv4, datt.view({B, T, H, hd}), q4, k4, v4, att4, a.lse);
  if (cfg_.qk_norm) {  // RoPE's and the norms' backward in one pass each
    Tensor dqr = dq_raw.view({B, T, H, hd}), dkr = dk_raw.view({B, T, Hkv, hd});
    const bool split_heads = regions_ != nullptr;
    Tensor gqn = w.q_norm.g, gkn = w.k_norm.g;
    accumulate_gain(gqn, split_heads, [&](Tensor& gain) {
      ops::rmsnorm_rope_backward(dqr, gain, dq4, a.q.view({B, T, H, hd}), w.q_norm.w, a.rstd_q, rope);
    });
    accumulate_gain(gkn, split_heads, [&](Tensor& gain) {
      ops::rmsnorm_rope_backward(dkr, gain, dk4, a.k.view({B, T, Hkv, hd}), w.k_norm.w, a.rstd_k,
                                 rope);
    });
  } else {
    ops::rope_backward(dq4, rope);
    ops::rope_backward(dk4, rope);
  }
  ops::matmul(dh, dq_raw, false, mm(w.wq), false);               // dh1 = dq Wq + dk Wk + dv Wv
  ops::matmul(dh, dk_raw, false, mm(w.wk), false, 1.0f, 1.0f);
  ops::matmul(dh, dv, false, mm(w.wv), false, 1.0f, 1.0f);
  if (w.qkv.g.defined()) {  // dWq += dqᵀ h1, dWk += dkᵀ h1, dWv += dvᵀ h1 in one batched product
    Tensor g_qkv = w.qkv.g;
    ops::matmul_batched(g_qkv, dqkv.view({3, R, H * hd}), true, a.h1, false, 1.0f, 1.0f);
  } else {  // GQA: dWq, then dWk and dWv batched
    Tensor g_q = w.wq.g, g_k = w.wk.g, g_v = w.wv.g, g_kv = w.kv.g;
    ops::matmul(g_q, dq_raw, true, a.h1, false, 1.0f, 1.0f);
    if (g_kv.defined()) {
      ops::matmul_batched(g_kv, dk_raw.span({2, R, Hkv * hd}), true, a.h1, false, 1.0f, 1.0f);
    } else {
      ops::matmul(g_k, dk_raw, true, a.h1, false, 1.0f, 1.0f);
      ops::matmul(g_v, dv, true, a.h1, false, 1.0f, 1.0f);
    }
  }
  dhl = enter_backward(dlocal_b_, dh);
  norm_backward(dx, g_in, dhl, x_in, w.ln_in.w, a.rstd1, sp(), true, dx16);  // dx = dL/dx_in
}

}  // namespace retort
