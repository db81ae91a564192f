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
#include "core/ops.h"
#include "models/transformer.h"

namespace retort {

void Transformer::block_forward(int layer, const Tensor& x_in, Tensor& x_out, BlockActs& a) {
  const LayerWeights& w = layers_[layer];
  const int64_t B = B_, T = T_, R = B * T, H = cfg_.n_heads, Hkv = cfg_.n_kv_heads, hd = cfg_.head_dim;
  const float eps = float(cfg_.norm_eps);
  Tensor rope = rope_.slice(0, T);

  // ---- attention ----
  ops::rmsnorm_forward(a.h1, a.rstd1, x_in, w.ln_in.w, eps);
  if (cfg_.qk_norm) {
    ops::matmul(a.q, a.h1, false, w.wq.w, true);
    ops::matmul(a.k, a.h1, false, w.wk.w, true);
    Tensor qr = a.qr.view({R * H, hd}), kr = a.kr.view({R * Hkv, hd});
    ops::rmsnorm_forward(qr, a.rstd_q, a.q.view({R * H, hd}), w.q_norm.w, eps);
    ops::rmsnorm_forward(kr, a.rstd_k, a.k.view({R * Hkv, hd}), w.k_norm.w, eps);
  } else {
    ops::matmul(a.qr, a.h1, false, w.wq.w, true);
    ops::matmul(a.kr, a.h1, false, w.wk.w, true);
  }
  ops::matmul(a.v, a.h1, false, w.wv.w, true);
  Tensor q4 = a.qr.view({B, T, H, hd}), k4 = a.kr.view({B, T, Hkv, hd});
  Tensor v4 = a.v.view({B, T, Hkv, hd}), att4 = a.att.view({B, T, H, hd});
  ops::rope_forward(q4, rope);
  ops::rope_forward(k4, rope);
  ops::attention_forward(att4, a.lse, q4, k4, v4);
  ops::copy(a.x_mid, x_in);
  ops::matmul(a.x_mid, a.att, false, w.wo.w, true, 1.0f, 1.0f);

  // ---- MLP ----
  ops::rmsnorm_forward(a.h2, a.rstd2, a.x_mid, w.ln_post.w, eps);
  ops::matmul(a.gate, a.h2, false, w.w_gate.w, true);
  ops::matmul(a.up, a.h2, false, w.w_up.w, true);
  ops::swiglu_forward(a.act, a.gate, a.up);
  ops::copy(x_out, a.x_mid);
  ops::matmul(x_out, a.act, false, w.w_down.w, true, 1.0f, 1.0f);
}

// dx: dL/dx_out on entry, dL/dx_in on exit. Parameter grads accumulate (+=).
void Transformer::block_backward(int layer, const Tensor& x_in, Tensor& dx, BlockActs& a) {
  const LayerWeights& w = layers_[layer];
  const int64_t B = B_, T = T_, R = B * T, d = cfg_.d_model, H = cfg_.n_heads,
                Hkv = cfg_.n_kv_heads, hd = cfg_.head_dim, F = cfg_.d_ff;
  Tensor rope = rope_.slice(0, T);
  Tensor dtmp = dtmp_b_.get({R, d}), dh = dh_b_.get({R, d});
  Tensor dact = dact_b_.get({R, F}), dgate = dgate_b_.get({R, F}), dup = dup_b_.get({R, F});
  Tensor datt = datt_b_.get({R, H * hd}), dq = dq_b_.get({R, H * hd});
  Tensor dk = dk_b_.get({R, Hkv * hd}), dv = dv_b_.get({R, Hkv * hd});
  Tensor g_gate = w.w_gate.g, g_up = w.w_up.g, g_down = w.w_down.g;
  Tensor g_q = w.wq.g, g_k = w.wk.g, g_v = w.wv.g, g_o = w.wo.g;
  Tensor g_in = w.ln_in.g, g_post = w.ln_post.g;

  // ---- MLP: x_out = x_mid + act W_downᵀ ----
  ops::matmul(dact, dx, false, w.w_down.w, false);               // dact = dx W_down   [R,d]@[d,F]
  ops::matmul(g_down, dx, true, a.act, false, 1.0f, 1.0f);       // dW_down += dxᵀ act [d,R]@[R,F]
  ops::swiglu_backward(dgate, dup, dact, a.gate, a.up);
  ops::matmul(dh, dgate, false, w.w_gate.w, false);              // dh2 = dgate W_gate + dup W_up
  ops::matmul(dh, dup, false, w.w_up.w, false, 1.0f, 1.0f);
  ops::matmul(g_gate, dgate, true, a.h2, false, 1.0f, 1.0f);     // dW_gate += dgateᵀ h2
  ops::matmul(g_up, dup, true, a.h2, false, 1.0f, 1.0f);         // dW_up += dupᵀ h2
  ops::rmsnorm_backward(dtmp, g_post, dh, a.x_mid, w.ln_post.w, a.rstd2);
  ops::add_inplace(dx, dtmp);                                    // dx = dL/dx_mid

  // ---- attention: x_mid = x_in + att Woᵀ ----
  ops::matmul(datt, dx, false, w.wo.w, false);                   // datt = dx Wo   [R,d]@[d,H·hd]
  ops::matmul(g_o, dx, true, a.att, false, 1.0f, 1.0f);          // dWo += dxᵀ att
  Tensor q4 = a.qr.view({B, T, H, hd}), k4 = a.kr.view({B, T, Hkv, hd});
  Tensor v4 = a.v.view({B, T, Hkv, hd}), att4 = a.att.view({B, T, H, hd});
  Tensor dq4 = dq.view({B, T, H, hd}), dk4 = dk.view({B, T, Hkv, hd}), dv4 = dv.view({B, T, Hkv, hd});
  ops::attention_backward(dq4, dk4, dv4, datt.view({B, T, H, hd}), q4, k4, v4, att4, a.lse);
  ops::rope_backward(dq4, rope);
  ops::rope_backward(dk4, rope);
  Tensor dq_raw = dq, dk_raw = dk;  // gradients w.r.t. the projections' outputs
  if (cfg_.qk_norm) {
    dq_raw = dq2_b_.get({R, H * hd});
    dk_raw = dk2_b_.get({R, Hkv * hd});
    Tensor dqr = dq_raw.view({R * H, hd}), dkr = dk_raw.view({R * Hkv, hd});
    Tensor gqn = w.q_norm.g, gkn = w.k_norm.g;
    ops::rmsnorm_backward(dqr, gqn, dq.view({R * H, hd}), a.q.view({R * H, hd}), w.q_norm.w, a.rstd_q);
    ops::rmsnorm_backward(dkr, gkn, dk.view({R * Hkv, hd}), a.k.view({R * Hkv, hd}), w.k_norm.w,
                          a.rstd_k);
  }
  ops::matmul(dh, dq_raw, false, w.wq.w, false);                 // dh1 = dq Wq + dk Wk + dv Wv
  ops::matmul(dh, dk_raw, false, w.wk.w, false, 1.0f, 1.0f);
  ops::matmul(dh, dv, false, w.wv.w, false, 1.0f, 1.0f);
  ops::matmul(g_q, dq_raw, true, a.h1, false, 1.0f, 1.0f);       // dWq += dqᵀ h1, ...
  ops::matmul(g_k, dk_raw, true, a.h1, false, 1.0f, 1.0f);
  ops::matmul(g_v, dv, true, a.h1, false, 1.0f, 1.0f);
  ops::rmsnorm_backward(dtmp, g_in, dh, x_in, w.ln_in.w, a.rstd1);
  ops::add_inplace(dx, dtmp);                                    // dx = dL/dx_in
}

}  // namespace retort
