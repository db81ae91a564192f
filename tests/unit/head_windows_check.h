// Checks of the ops that read and write windows of heads (ops::Heads: q, k, v inside the packed
// q|k|v product), shared by the CPU unit test and the CUDA tests: on one device, each op on
// windows of packed [B, T, S, hd] tensors must give bitwise what it gives on contiguous copies
// of the windows, and leave every element outside the windows it writes as it was.
#pragma once
#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "core/ops.h"
#include "core/random.h"
#include "core/tensor.h"

namespace retort::test {

// Host tensor of N(0, 1) values, rounded to dt.
inline Tensor random_in(const Shape& shape, DType dt, uint64_t stream) {
  Tensor f = Tensor::empty(shape);
  for (int64_t i = 0; i < f.numel(); ++i)
    f.host<float>()[i] = float(rng::normal(4242, stream, uint64_t(i)));
  Tensor r = Tensor::empty(shape, dt);
  ops::convert(r, f);
  return r;
}

// Heads [first, first + count) of a host [B, T, S, hd] tensor as a contiguous host tensor
// (a byte copy per token: the test's own reference of a window).
inline Tensor window_copy(const Tensor& packed, int64_t first, int64_t count) {
  const Tensor h = packed.to(Device::CPU);
  const int64_t B = h.dim(0), T = h.dim(1), S = h.dim(2), hd = h.dim(3);
  const size_t es = dtype_size(h.dtype());
  Tensor r = Tensor::empty({B, T, count, hd}, h.dtype());
  for (int64_t t = 0; t < B * T; ++t)
    std::memcpy(static_cast<char*>(r.raw()) + size_t(t * count * hd) * es,
                static_cast<const char*>(h.raw()) + size_t((t * S + first) * hd) * es,
                size_t(count * hd) * es);
  return r;
}

inline bool same_bytes(const Tensor& a, const Tensor& b) {
  const Tensor x = a.to(Device::CPU), y = b.to(Device::CPU);
  return x.nbytes() == y.nbytes() && std::memcmp(x.raw(), y.raw(), x.nbytes()) == 0;
}

// `after` equals `before` outside heads [first, first + count) (packed host or device tensors).
inline void expect_outside_unchanged(const Tensor& after, const Tensor& before, int64_t first,
                                     int64_t count, const std::string& what) {
  const int64_t S = before.dim(2);
  if (first > 0) {
    EXPECT_TRUE(same_bytes(window_copy(after, 0, first), window_copy(before, 0, first)))
        << what << ": heads before the window changed";
  }
  if (first + count < S) {
    EXPECT_TRUE(same_bytes(window_copy(after, first + count, S - first - count),
                           window_copy(before, first + count, S - first - count)))
        << what << ": heads after the window changed";
  }
}

inline Tensor clone_on(const Tensor& t, Device dev) { return t.to(Device::CPU).to(dev); }

// RoPE in place on the q and k heads and out of place from a window, copy_heads, qk-norm +
// RoPE from and into windows, and attention (GQA, H = 2·Hkv) forward and backward with q, k,
// v and dq, dk, dv as windows; packed tensors and the activations of dtype dt on dev.
inline void check_head_windows(Device dev, DType dt) {
  const int64_t B = 2, T = 9, H = 4, Hkv = 2, hd = 16, S = H + 2 * Hkv;
  const std::string where = std::string(dev == Device::CPU ? "cpu " : "cuda ") + dtype_name(dt);
  const Tensor packed0 = random_in({B, T, S, hd}, dt, 1);
  const Tensor table = ops::rope_table(T, hd, 10000.0).to(dev);

  // ---- RoPE in place on heads [0, H + Hkv) ----
  for (const float sign : {1.0f, -1.0f}) {
    const std::string what = where + (sign > 0 ? " rope_forward" : " rope_backward");
    Tensor packed = clone_on(packed0, dev);
    Tensor want = window_copy(packed0, 0, H + Hkv).to(dev);
    if (sign > 0) {
      ops::rope_forward(ops::Heads(packed, 0, H + Hkv), table);
      ops::rope_forward(want, table);
    } else {
      ops::rope_backward(ops::Heads(packed, 0, H + Hkv), table);
      ops::rope_backward(want, table);
    }
    EXPECT_TRUE(same_bytes(window_copy(packed, 0, H + Hkv), want)) << what;
    expect_outside_unchanged(packed, packed0, 0, H + Hkv, what);
  }

  // ---- RoPE out of place from a window (the decoder's k without qk-norm), and copy_heads
  // between windows of two pitches ----
  {
    const std::string what = where + " rope_forward out of place / copy_heads";
    const Tensor packed = clone_on(packed0, dev);
    Tensor y = Tensor::empty({B, T, Hkv, hd}, dt, dev), want = window_copy(packed0, H, Hkv).to(dev);
    ops::rope_forward(y, ops::Heads(packed, H, Hkv), table);
    ops::rope_forward(want, table);
    EXPECT_TRUE(same_bytes(y, want)) << what;
    const Tensor other0 = random_in({B, T, S + 3, hd}, dt, 8);
    Tensor other = clone_on(other0, dev);
    ops::copy_heads(ops::Heads(other, 2, Hkv), ops::Heads(packed, H + Hkv, Hkv));
    EXPECT_TRUE(same_bytes(window_copy(other, 2, Hkv), window_copy(packed0, H + Hkv, Hkv))) << what;
    expect_outside_unchanged(other, other0, 2, Hkv, what);
  }

  // ---- qk-norm + RoPE: x a window of the packed activations, dx a window of a packed
  // gradient ----
  {
    const std::string what = where + " rmsnorm_rope";
    const Tensor packed = clone_on(packed0, dev);
    const Tensor g = random_in({hd}, DType::F32, 2).to(dev);
    const Tensor xk = window_copy(packed0, H, Hkv).to(dev);  // the k heads, contiguous
    Tensor y = Tensor::empty({B, T, Hkv, hd}, dt, dev), y_want = Tensor::empty(y.shape(), dt, dev);
    Tensor rstd = Tensor::empty({B * T * Hkv}, DType::F32, dev);
    Tensor rstd_want = Tensor::empty(rstd.shape(), DType::F32, dev);
    ops::rmsnorm_rope_forward(y, rstd, ops::Heads(packed, H, Hkv), g, table, 1e-5f);
    ops::rmsnorm_rope_forward(y_want, rstd_want, xk, g, table, 1e-5f);
    EXPECT_TRUE(same_bytes(y, y_want)) << what << " forward y";
    EXPECT_TRUE(same_bytes(rstd, rstd_want)) << what << " forward rstd";

    const Tensor dy = random_in({B, T, Hkv, hd}, dt, 3).to(dev);
    const Tensor grad0 = random_in({B, T, S, hd}, dt, 4);  // what the other heads hold
    Tensor grad = clone_on(grad0, dev), dx_want = Tensor::empty({B, T, Hkv, hd}, dt, dev);
    Tensor dg = Tensor::zeros({hd}, DType::F32, dev),
           dg_want = Tensor::zeros({hd}, DType::F32, dev);
    ops::rmsnorm_rope_backward(ops::Heads(grad, H, Hkv), dg, dy, ops::Heads(packed, H, Hkv), g,
                               rstd, table);
    ops::rmsnorm_rope_backward(dx_want, dg_want, dy, xk, g, rstd, table);
    EXPECT_TRUE(same_bytes(window_copy(grad, H, Hkv), dx_want)) << what << " backward dx";
    EXPECT_TRUE(same_bytes(dg, dg_want)) << what << " backward dg";
    expect_outside_unchanged(grad, grad0, H, Hkv, what + " backward");
  }

  // ---- attention on q, k, v windows; dq, dk, dv windows of one packed gradient ----
  {
    const std::string what = where + " attention";
    const Tensor packed = clone_on(packed0, dev);
    const ops::Heads q(packed, 0, H), k(packed, H, Hkv), v(packed, H + Hkv, Hkv);
    const Tensor qc = window_copy(packed0, 0, H).to(dev), kc = window_copy(packed0, H, Hkv).to(dev),
                 vc = window_copy(packed0, H + Hkv, Hkv).to(dev);
    Tensor out = Tensor::empty({B, T, H, hd}, dt, dev),
           out_want = Tensor::empty(out.shape(), dt, dev);
    Tensor lse = Tensor::empty({B, H, T}, DType::F32, dev),
           lse_want = Tensor::empty(lse.shape(), DType::F32, dev);
    ops::attention_forward(out, lse, q, k, v);
    ops::attention_forward(out_want, lse_want, qc, kc, vc);
    EXPECT_TRUE(same_bytes(out, out_want)) << what << " forward out";
    EXPECT_TRUE(same_bytes(lse, lse_want)) << what << " forward lse";

    const Tensor dout = random_in({B, T, H, hd}, dt, 5).to(dev);
    const Tensor grad0 = random_in({B, T, S + 1, hd}, dt, 6);  // one head past v's: untouched
    Tensor grad = clone_on(grad0, dev);
    Tensor dq = Tensor::empty(qc.shape(), dt, dev), dk = Tensor::empty(kc.shape(), dt, dev),
           dv = Tensor::empty(vc.shape(), dt, dev);
    ops::attention_backward(ops::Heads(grad, 0, H), ops::Heads(grad, H, Hkv),
                            ops::Heads(grad, H + Hkv, Hkv), dout, q, k, v, out, lse);
    ops::attention_backward(dq, dk, dv, dout, qc, kc, vc, out, lse);
    EXPECT_TRUE(same_bytes(window_copy(grad, 0, H), dq)) << what << " backward dq";
    EXPECT_TRUE(same_bytes(window_copy(grad, H, Hkv), dk)) << what << " backward dk";
    EXPECT_TRUE(same_bytes(window_copy(grad, H + Hkv, Hkv), dv)) << what << " backward dv";
    expect_outside_unchanged(grad, grad0, 0, S, what + " backward");
  }
}

}  // namespace retort::test
