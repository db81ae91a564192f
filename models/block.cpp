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
//   act = silu(h2 W_gateᵀ) ⊙ (h2 W_upᵀ)                       [R, F]
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
  const Tensor h1 = shared_operand(0, a.h1);  // read by three products
  // q, k in fp32 go straight into qr, kr (RoPE in place), or with bf16 activations into fp32
  // scratch, rotated and rounded into the bf16 qr, kr; v (as gate, up below) is written by its
  // product in the activation's dtype.
  auto before_rope = [&](const Tensor& x, Backing& scratch) {
    return x.dtype() == DType::F32 ? x : scratch.get(device_, x.shape());
  };
  Tensor qn = before_rope(a.qr, qn_b_), kn = before_rope(a.kr, kn_b_);
  if (cfg_.qk_norm) {
    ops::matmul(a.q, h1, false, mm(w.wq), true);
    ops::matmul(a.k, h1, false, mm(w.wk), true);
    Tensor qr = qn.view({R * H, hd}), kr = kn.view({R * Hkv, hd});
    ops::rmsnorm_forward(qr, a.rstd_q, a.q.view({R * H, hd}), w.q_norm.w, eps);
    ops::rmsnorm_forward(kr, a.rstd_k, a.k.view({R * Hkv, hd}), w.k_norm.w, eps);
  } else {
    ops::matmul(qn, h1, false, mm(w.wq), true);
    ops::matmul(kn, h1, false, mm(w.wk), true);
  }
  ops::matmul(a.v, h1, false, mm(w.wv), true);
  Tensor q4 = a.qr.view({B, T, H, hd}), k4 = a.kr.view({B, T, Hkv, hd});
  Tensor v4 = a.v.view({B, T, Hkv, hd}), att4 = a.att.view({B, T, H, hd});
  ops::rope_forward(q4, qn.view({B, T, H, hd}), rope);
  ops::rope_forward(k4, kn.view({B, T, Hkv, hd}), rope);
  ops::attention_forward(att4, a.lse, q4, k4, v4);
  row_parallel_residual(a.x_mid, x_in, a.att, mm(w.wo));

  // ---- MLP ----
  norm_enter(a.h2, a.rstd2, a.x_mid, w.ln_post.w);
  const Tensor h2 = shared_operand(0, a.h2);
  ops::matmul(a.gate, h2, false, mm(w.w_gate), true);
  ops::matmul(a.up, h2, false, mm(w.w_up), true);
  ops::swiglu_forward(a.act, a.gate, a.up);
  row_parallel_residual(x_out, a.x_mid, a.act, mm(w.w_down));
}

// dx: dL/dx_out on entry, dL/dx_in on exit ([Rl, d]). Parameter grads accumulate (+=).
// Norm gains see only this rank's rows under sp, and the q/k norm gains only this rank's heads
// under tp: their gradients are summed over tp (norm_backward's `partial`).
void Transformer::block_backward(int layer, const Tensor& x_in, Tensor& dx, const Tensor& dx16,
                                 BlockActs& a) {
  const LayerWeights& w = layers_[layer];
  const int64_t B = B_, T = T_, R = R_, d = cfg_.d_model, H = H_, Hkv = Hkv_, hd = cfg_.head_dim,
                F = F_;
  Tensor rope = rope_.slice(0, T);
  Tensor dh = dh_b_.get(device_, {R, d});
  // Gradients read only by bf16 products, RoPE and cuDNN (dgate, dup, datt, dq, dk, dv): op_dt.
  const DType op_dt = operand_dtype();
  Tensor dact = dact_b_.get(device_, {R, F}), dgate = dgate_b_.get(device_, {R, F}, op_dt),
         dup = dup_b_.get(device_, {R, F}, op_dt);
  Tensor datt = datt_b_.get(device_, {R, H * hd}, op_dt), dq = dq_b_.get(device_, {R, H * hd}, op_dt);
  Tensor dk = dk_b_.get(device_, {R, Hkv * hd}, op_dt), dv = dv_b_.get(device_, {R, Hkv * hd}, op_dt);
  Tensor g_gate = w.w_gate.g, g_up = w.w_up.g, g_down = w.w_down.g;
  Tensor g_q = w.wq.g, g_k = w.wk.g, g_v = w.wv.g, g_o = w.wo.g;
  Tensor g_in = w.ln_in.g, g_post = w.ln_post.g;

  // ---- MLP: x_out = x_mid + act W_downᵀ ----
  // (fp32 operands read by two or three products are rounded once under bf16: shared_operand.)
  Tensor op = residual_operand(dx, dx16);                        // dy [R, d]
  ops::matmul(dact, op, false, mm(w.w_down), false);             // dact = dy W_down   [R,d]@[d,F]
  ops::matmul(g_down, op, true, a.act, false, 1.0f, 1.0f);       // dW_down += dyᵀ act [d,R]@[R,F]
  ops::swiglu_backward(dgate, dup, dact, a.gate, a.up);
  const Tensor dgate_op = shared_operand(1, dgate), dup_op = shared_operand(2, dup);
  ops::matmul(dh, dgate_op, false, mm(w.w_gate), false);         // dh2 = dgate W_gate + dup W_up
  ops::matmul(dh, dup_op, false, mm(w.w_up), false, 1.0f, 1.0f);
  op = shared_operand(0, a.h2);
  ops::matmul(g_gate, dgate_op, true, op, false, 1.0f, 1.0f);    // dW_gate += dgateᵀ h2
  ops::matmul(g_up, dup_op, true, op, false, 1.0f, 1.0f);        // dW_up += dupᵀ h2
  Tensor dhl = enter_backward(dlocal_b_, dh);                    // [Rl, d]
  norm_backward(dx, g_post, dhl, a.x_mid, w.ln_post.w, a.rstd2, sp(), true, dx16);  // dL/dx_mid

  // ---- attention: x_mid = x_in + att Woᵀ ----
  op = residual_operand(dx, dx16);
  ops::matmul(datt, op, false, mm(w.wo), false);                 // datt = dy Wo   [R,d]@[d,H·hd]
  ops::matmul(g_o, op, true, a.att, false, 1.0f, 1.0f);          // dWo += dyᵀ att
  Tensor q4 = a.qr.view({B, T, H, hd}), k4 = a.kr.view({B, T, Hkv, hd});
  Tensor v4 = a.v.view({B, T, Hkv, hd}), att4 = a.att.view({B, T, H, hd});
  Tensor dq4 = dq.view({B, T, H, hd}), dk4 = dk.view({B, T, Hkv, hd}), dv4 = dv.view({B, T, Hkv, hd});
  ops::attention_backward(dq4, dk4, dv4, datt.view({B, T, H, hd}), q4, k4, v4, att4, a.lse);
  Tensor dq_raw = dq, dk_raw = dk;  // gradients w.r.t. the projections' outputs
  if (cfg_.qk_norm) {  // RoPE's backward into fp32 for the norms' backward
    Tensor dqn = dqn_b_.get(device_, {B, T, H, hd}), dkn = dkn_b_.get(device_, {B, T, Hkv, hd});
    ops::rope_backward(dqn, dq4, rope);
    ops::rope_backward(dkn, dk4, rope);
    dq_raw = dq2_b_.get(device_, {R, H * hd}, op_dt);
    dk_raw = dk2_b_.get(device_, {R, Hkv * hd}, op_dt);
    Tensor dqr = dq_raw.view({R * H, hd}), dkr = dk_raw.view({R * Hkv, hd});
    Tensor gqn = w.q_norm.g, gkn = w.k_norm.g;
    const bool split_heads = regions_ != nullptr;
    norm_backward(dqr, gqn, dqn.view({R * H, hd}), a.q.view({R * H, hd}), w.q_norm.w, a.rstd_q,
                  split_heads);
    norm_backward(dkr, gkn, dkn.view({R * Hkv, hd}), a.k.view({R * Hkv, hd}), w.k_norm.w,
                  a.rstd_k, split_heads);
  } else {
    ops::rope_backward(dq4, rope);
    ops::rope_backward(dk4, rope);
  }
  const Tensor dq_op = shared_operand(1, dq_raw), dk_op = shared_operand(2, dk_raw),
               dv_op = shared_operand(3, dv);
  ops::matmul(dh, dq_op, false, mm(w.wq), false);                // dh1 = dq Wq + dk Wk + dv Wv
  ops::matmul(dh, dk_op, false, mm(w.wk), false, 1.0f, 1.0f);
  ops::matmul(dh, dv_op, false, mm(w.wv), false, 1.0f, 1.0f);
  op = shared_operand(0, a.h1);
  ops::matmul(g_q, dq_op, true, op, false, 1.0f, 1.0f);          // dWq += dqᵀ h1, ...
  ops::matmul(g_k, dk_op, true, op, false, 1.0f, 1.0f);
  ops::matmul(g_v, dv_op, true, op, false, 1.0f, 1.0f);
  dhl = enter_backward(dlocal_b_, dh);
  norm_backward(dx, g_in, dhl, x_in, w.ln_in.w, a.rstd1, sp(), true, dx16);  // dx = dL/dx_in
}

}  // namespace retort
