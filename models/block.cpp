// One transformer block, forward and backward together (R = B·T rows, row-vector convention,
// W stored [out, in] so y = x Wᵀ):
//
//   h1 = RMSNorm(x_in; g_in)                                  [R, d]
//   [q | k | v] = h1 [Wq; Wk; Wv]ᵀ    [R, (H + 2·Hkv)·hd] (one product; q [R, H·hd], k, v
//                 (+ [bq | bk | bv])  [R, Hkv·hd] side by side in each row; biases: qkv_bias)
//   qk_norm: q_h = RMSNorm(q_h; g_q), k_h = RMSNorm(k_h; g_k)  per head, over hd
//   q, k = RoPE(q), RoPE(k)                                   viewed [B, T, heads, hd]
//                 (NoPE layers: the identity, a table of cos 1, sin 0)
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
  const int64_t B = B_, T = T_, H = H_, Hkv = Hkv_, hd = cfg_.head_dim;
  const float eps = float(cfg_.norm_eps);
  Tensor rope = (cfg_.rope_on_layer(layer) ? rope_ : no_rope_).slice(0, T);
  // RMSNorm on this rank's rows, then (sp) gathered into the full [R, d] for the projections.
  auto norm_enter = [&](Tensor& full, Tensor& rstd, const Tensor& x, const Tensor& g) {
    Tensor local = sp() ? hl_b_.get(device_, {Rl_, cfg_.d_model}, full.dtype()) : full;
    ops::rmsnorm_forward(local, rstd, x, g, eps);
    if (sp()) regions_->enter_forward(full, local);
  };

  // ---- attention ----
  norm_enter(a.h1, a.rstd1, x_in, w.ln_in.w);
  // q, k, v: one product, in the activations' dtype; each row [q heads | k heads | v heads].
  RETORT_CHECK(mm(w.qkv).defined(), "layer ", layer, ": the q, k, v weights are not consecutive");
  ops::matmul(a.qkv, a.h1, false, mm(w.qkv), true);
  if (cfg_.qkv_bias) ops::bias_add(a.qkv, w.qkv_bias.w);  // the fp32 biases, every row
  const Tensor qkv4 = a.qkv.view({B, T, H + 2 * Hkv, hd});
  const ops::Heads q(qkv4, 0, H), k(qkv4, H, Hkv), v(qkv4, H + Hkv, Hkv);
  Tensor att4 = a.att.view({B, T, H, hd});
  if (cfg_.qk_norm) {  // per head: RMSNorm, then RoPE, in one pass into qr, kr
    Tensor qr = a.qr.view({B, T, H, hd}), kr = a.kr.view({B, T, Hkv, hd});
    ops::rmsnorm_rope_forward(qr, a.rstd_q, q, w.q_norm.w, rope, eps);
    ops::rmsnorm_rope_forward(kr, a.rstd_k, k, w.k_norm.w, rope, eps);
    ops::attention_forward(att4, a.lse, qr, kr, v, cfg_.sliding_window);
  } else {  // RoPE in place on the q and k heads (side by side)
    ops::rope_forward(ops::Heads(qkv4, 0, H + Hkv), rope);
    ops::attention_forward(att4, a.lse, q, k, v, cfg_.sliding_window);
  }
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
  Tensor rope = (cfg_.rope_on_layer(layer) ? rope_ : no_rope_).slice(0, T);
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
  // The gradient w.r.t. the q|k|v product's output, its layout: [R, (H + 2·Hkv)·hd].
  const int64_t S = H + 2 * Hkv;
  Tensor dqkv = dqkv_b_.get(device_, {R, S * hd}, op_dt);
  const Tensor qkv4 = a.qkv.view({B, T, S, hd}), dqkv4 = dqkv.view({B, T, S, hd});
  const ops::Heads q(qkv4, 0, H), k(qkv4, H, Hkv), v(qkv4, H + Hkv, Hkv);
  const ops::Heads dq_raw(dqkv4, 0, H), dk_raw(dqkv4, H, Hkv), dv(dqkv4, H + Hkv, Hkv);
  const Tensor att4 = a.att.view({B, T, H, hd}), datt4 = datt.view({B, T, H, hd});
  if (cfg_.qk_norm) {  // attention's dq, dk into scratch, then RoPE's and the norms' backward
    Tensor dq = dq_b_.get(device_, {B, T, H, hd}, op_dt);
    Tensor dk = dk_b_.get(device_, {B, T, Hkv, hd}, op_dt);
    ops::attention_backward(dq, dk, dv, datt4, a.qr.view({B, T, H, hd}),
                            a.kr.view({B, T, Hkv, hd}), v, att4, a.lse, cfg_.sliding_window);
    const bool split_heads = regions_ != nullptr;
    Tensor gqn = w.q_norm.g, gkn = w.k_norm.g;
    accumulate_gain(gqn, split_heads, [&](Tensor& gain) {
      ops::rmsnorm_rope_backward(dq_raw, gain, dq, q, w.q_norm.w, a.rstd_q, rope);
    });
    accumulate_gain(gkn, split_heads, [&](Tensor& gain) {
      ops::rmsnorm_rope_backward(dk_raw, gain, dk, k, w.k_norm.w, a.rstd_k, rope);
    });
  } else {  // in place in dqkv, then RoPE's backward on the dq and dk heads
    ops::attention_backward(dq_raw, dk_raw, dv, datt4, q, k, v, att4, a.lse, cfg_.sliding_window);
    ops::rope_backward(ops::Heads(dqkv4, 0, H + Hkv), rope);
  }
  Tensor g_qkv = w.qkv.g;
  RETORT_CHECK(g_qkv.defined(), "layer ", layer, ": the q, k, v gradients are not consecutive");
  if (cfg_.qkv_bias) {
    Tensor g_bias = w.qkv_bias.g;
    RETORT_CHECK(g_bias.defined(), "layer ", layer, ": the q, k, v bias gradients are not consecutive");
    ops::bias_backward(g_bias, dqkv);                           // d[bq; bk; bv] += Σ_rows dqkv
  }
  ops::matmul(dh, dqkv, false, mm(w.qkv), false);              // dh1 = dqkv [Wq; Wk; Wv]
  ops::matmul(g_qkv, dqkv, true, a.h1, false, 1.0f, 1.0f);     // d[Wq; Wk; Wv] += dqkvᵀ h1
  dhl = enter_backward(dlocal_b_, dh);
  norm_backward(dx, g_in, dhl, x_in, w.ln_in.w, a.rstd1, sp(), true, dx16);  // dx = dL/dx_in
}

}  // namespace retort
