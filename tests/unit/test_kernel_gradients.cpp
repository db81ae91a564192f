// Backward ops: (1) against central finite differences of their own forward op, with a
// random projection L = Σ w ⊙ y making the output scalar (so dy = w); (2) against naive
// double-precision analytical gradients on larger shapes; (3) determinism (bitwise repeatable,
// independent of the thread count) and the overwrite (dx) / accumulate (dg, dtable) rules.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "core/ops.h"
#include "core/random.h"
#include "core/tensor.h"
#include "tests/unit/test_support.h"

using namespace retort;
using retort::test::error_of;

namespace {

constexpr uint64_t kSeed = 777;

Tensor randn(const Shape& s, uint64_t stream, double scale = 1.0, double shift = 0.0) {
  Tensor t = Tensor::empty(s);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i)
    p[i] = static_cast<float>(shift + scale * rng::normal(kSeed, stream, i));
  return t;
}

Tensor randint(const Shape& s, uint64_t stream, int32_t n) {
  Tensor t = Tensor::empty(s, DType::I32);
  int32_t* p = t.data<int32_t>();
  for (int64_t i = 0; i < t.numel(); ++i)
    p[i] = static_cast<int32_t>(rng::uniform(kSeed, stream, i) * n) % n;
  return t;
}

std::vector<double> to_double(const Tensor& t) {
  const float* p = t.data<float>();
  return std::vector<double>(p, p + t.numel());
}

Tensor clone(const Tensor& t) {
  Tensor c = Tensor::empty(t.shape(), t.dtype());
  std::memcpy(c.raw(), t.raw(), t.nbytes());
  return c;
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  return a.nbytes() == b.nbytes() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

template <class F>
void with_threads(int n, F&& body) {
  const int old = omp_get_max_threads();
  omp_set_num_threads(n);
  body();
  omp_set_num_threads(old);
}

// Σ w ⊙ y in double.
double project(const Tensor& w, const Tensor& y) {
  double s = 0;
  const float* a = w.data<float>();
  const float* b = y.data<float>();
  for (int64_t i = 0; i < y.numel(); ++i) s += static_cast<double>(a[i]) * b[i];
  return s;
}

// Norm-wise relative error max|got − ref| / max|ref| ≤ tol.
void expect_close(const Tensor& got, const std::vector<double>& ref, double tol,
                  const std::string& what) {
  ASSERT_EQ(got.numel(), static_cast<int64_t>(ref.size())) << what;
  const float* g = got.data<float>();
  double maxref = 0, maxerr = 0;
  int64_t worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    maxref = std::max(maxref, std::abs(ref[i]));
    const double e = std::abs(static_cast<double>(g[i]) - ref[i]);
    if (!(e <= maxerr)) maxerr = e, worst = static_cast<int64_t>(i);
  }
  EXPECT_LE(maxerr, tol * std::max(maxref, 1e-30)) << what << ": worst element " << worst
                                                    << " got " << g[worst] << " want "
                                                    << ref[worst];
}

// Central differences of `loss` w.r.t. every element of `param` (perturbed in place and
// restored) compared with the analytic gradient `grad`, relative to max|grad|.
void check_fd(Tensor& param, const Tensor& grad, const std::function<double()>& loss,
              const std::string& what, double eps = 1e-2, double tol = 2e-3) {
  ASSERT_EQ(param.numel(), grad.numel()) << what;
  float* p = param.data<float>();
  const float* g = grad.data<float>();
  double gmax = 0;
  for (int64_t i = 0; i < grad.numel(); ++i) gmax = std::max(gmax, std::abs(double(g[i])));
  ASSERT_GT(gmax, 0.0) << what << ": gradient is identically zero";
  for (int64_t i = 0; i < param.numel(); ++i) {
    const float saved = p[i];
    p[i] = saved + static_cast<float>(eps);
    const double lp = loss();
    p[i] = saved - static_cast<float>(eps);
    const double lm = loss();
    p[i] = saved;
    const double fd = (lp - lm) / (2 * eps);
    ASSERT_NEAR(g[i], fd, tol * gmax) << what << " element " << i << " (max |grad| " << gmax
                                      << ")";
  }
}

// ---- double-precision analytical references ------------------------------------------------

// Causal GQA attention forward and backward in double; query t sees keys max(0, t − W + 1)..t
// (W = 0: all keys up to t).
struct AttnRef {
  std::vector<double> out, lse, dq, dk, dv;
};

AttnRef ref_attention(const std::vector<double>& q, const std::vector<double>& k,
                      const std::vector<double>& v, const std::vector<double>& dout, int64_t B,
                      int64_t T, int64_t H, int64_t Hkv, int64_t hd, int64_t W) {
  AttnRef r;
  r.out.assign(B * T * H * hd, 0.0);
  r.lse.assign(B * H * T, 0.0);
  r.dq.assign(q.size(), 0.0);
  r.dk.assign(k.size(), 0.0);
  r.dv.assign(v.size(), 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  std::vector<double> p(T), dp(T);
  auto Q = [&](int64_t b, int64_t t, int64_t h) { return ((b * T + t) * H + h) * hd; };
  auto KV = [&](int64_t b, int64_t t, int64_t j) { return ((b * T + t) * Hkv + j) * hd; };
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t j = h / (H / Hkv);
      for (int64_t t = 0; t < T; ++t) {
        const int64_t u0 = W > 0 && t - W + 1 > 0 ? t - W + 1 : 0;
        double m = -1e300;
        for (int64_t u = u0; u <= t; ++u) {
          double s = 0;
          for (int64_t c = 0; c < hd; ++c) s += q[Q(b, t, h) + c] * k[KV(b, u, j) + c];
          p[u] = s * scale;
          m = std::max(m, p[u]);
        }
        double z = 0;
        for (int64_t u = u0; u <= t; ++u) z += std::exp(p[u] - m);
        r.lse[(b * H + h) * T + t] = m + std::log(z);
        for (int64_t u = u0; u <= t; ++u) p[u] = std::exp(p[u] - m) / z;
        for (int64_t u = u0; u <= t; ++u)
          for (int64_t c = 0; c < hd; ++c) r.out[Q(b, t, h) + c] += p[u] * v[KV(b, u, j) + c];
        double D = 0;
        for (int64_t c = 0; c < hd; ++c) D += dout[Q(b, t, h) + c] * r.out[Q(b, t, h) + c];
        for (int64_t u = u0; u <= t; ++u) {
          double s = 0;
          for (int64_t c = 0; c < hd; ++c) s += dout[Q(b, t, h) + c] * v[KV(b, u, j) + c];
          const double ds = p[u] * (s - D);
          for (int64_t c = 0; c < hd; ++c) {
            r.dq[Q(b, t, h) + c] += scale * ds * k[KV(b, u, j) + c];
            r.dk[KV(b, u, j) + c] += scale * ds * q[Q(b, t, h) + c];
            r.dv[KV(b, u, j) + c] += p[u] * dout[Q(b, t, h) + c];
          }
        }
      }
    }
  return r;
}

}  // namespace

// ---- RMSNorm -------------------------------------------------------------------------------

TEST(RMSNormGrad, FiniteDifferences) {
  const int64_t rows = 5, C = 12;
  const float eps = 1e-5f;
  Tensor x = randn({rows, C}, 1, 1.0, 0.2), g = randn({C}, 2, 0.5, 1.0), w = randn({rows, C}, 3);
  Tensor y = Tensor::empty({rows, C}), rstd = Tensor::empty({rows});
  auto loss = [&] {
    ops::rmsnorm_forward(y, rstd, x, g, eps);
    return project(w, y);
  };
  loss();
  Tensor dx = randn({rows, C}, 4), dg = Tensor::zeros({C});  // dx garbage: must be overwritten
  ops::rmsnorm_backward(dx, dg, w, x, g, rstd);
  check_fd(x, dx, loss, "rmsnorm dx");
  check_fd(g, dg, loss, "rmsnorm dg");
}

TEST(RMSNormGrad, AgainstAnalyticalReferenceAndAccumulates) {
  const float eps = 1e-5f;
  // (C = 1 is left out: there dx is pure cancellation, ≈ eps/|x|³, below float resolution.)
  for (auto [rows, C] : {std::pair<int64_t, int64_t>{1, 2}, {7, 5}, {300, 64}, {1000, 48},
                         {37, 300}}) {
    Tensor x = randn({rows, C}, 11, 1.5, 0.1), g = randn({C}, 12, 0.5, 1.0);
    Tensor dy = randn({rows, C}, 13), y = Tensor::empty({rows, C}), rstd = Tensor::empty({rows});
    ops::rmsnorm_forward(y, rstd, x, g, eps);
    Tensor dx = randn({rows, C}, 14), dg = randn({C}, 15);
    auto dg0 = to_double(dg);
    ops::rmsnorm_backward(dx, dg, dy, x, g, rstd);
    auto xd = to_double(x), gd = to_double(g), dyd = to_double(dy);
    std::vector<double> dx_ref(rows * C), dg_ref(C, 0.0);
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0, dot = 0;
      for (int64_t c = 0; c < C; ++c) ss += xd[r * C + c] * xd[r * C + c];
      const double rs = 1.0 / std::sqrt(ss / C + eps);
      for (int64_t c = 0; c < C; ++c) dot += dyd[r * C + c] * gd[c] * xd[r * C + c];
      for (int64_t c = 0; c < C; ++c) {
        dx_ref[r * C + c] = rs * gd[c] * dyd[r * C + c] - xd[r * C + c] * rs * rs * rs * dot / C;
        dg_ref[c] += dyd[r * C + c] * xd[r * C + c] * rs;
      }
    }
    const std::string what = "rows=" + std::to_string(rows) + " C=" + std::to_string(C);
    expect_close(dx, dx_ref, 1e-5, "rmsnorm dx " + what);
    for (int64_t c = 0; c < C; ++c) dg_ref[c] += dg0[c];  // accumulated onto the old dg
    expect_close(dg, dg_ref, 1e-5, "rmsnorm dg " + what);
  }
}

// ---- RoPE ----------------------------------------------------------------------------------

TEST(RoPEGrad, FiniteDifferencesAndInverse) {
  const int64_t B = 2, T = 5, nh = 3, hd = 8;
  Tensor table = ops::rope_table(T, hd, 10000.0);
  Tensor x = randn({B, T, nh, hd}, 21), w = randn({B, T, nh, hd}, 22);
  auto loss = [&] {
    Tensor y = clone(x);
    ops::rope_forward(y, table);
    return project(w, y);
  };
  Tensor dx = clone(w);
  ops::rope_backward(dx, table);
  check_fd(x, dx, loss, "rope dx");
  // Analytical: dx = Rᵀ w, with R the rotation of each pair.
  auto wd = to_double(w), td = to_double(table);
  std::vector<double> ref(wd.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t h = 0; h < nh; ++h)
        for (int64_t i = 0; i < hd / 2; ++i) {
          const int64_t o = ((b * T + t) * nh + h) * hd;
          const double c = td[t * hd + i], s = td[t * hd + hd / 2 + i];
          ref[o + i] = wd[o + i] * c + wd[o + i + hd / 2] * s;
          ref[o + i + hd / 2] = wd[o + i + hd / 2] * c - wd[o + i] * s;
        }
  expect_close(dx, ref, 1e-6, "rope backward vs Rᵀ");
  // backward ∘ forward = identity (rotations are orthogonal)
  Tensor z = clone(x);
  ops::rope_forward(z, table);
  ops::rope_backward(z, table);
  expect_close(z, to_double(x), 1e-6, "rope inverse");
}

// ---- qk-norm with RoPE ------------------------------------------------------------------------

// The fused op is bitwise the norm into fp32 then RoPE (forward) and RoPE's backward into fp32
// then the norm's backward, on several positions and heads (rows [B, T, nh]); and its gradients
// match finite differences.
TEST(RMSNormRoPEGrad, BitwiseTheCompositionAndFiniteDifferences) {
  const int64_t B = 2, T = 5, nh = 3, hd = 8;
  const float eps = 1e-5f;
  Tensor table = ops::rope_table(T + 2, hd, 10000.0);  // a longer table: its first T rows
  Tensor x = randn({B, T, nh, hd}, 31, 1.0, 0.2), g = randn({hd}, 32, 0.5, 1.0);
  Tensor w = randn({B, T, nh, hd}, 33);
  Tensor y = Tensor::empty({B, T, nh, hd}), rstd = Tensor::empty({B * T * nh});
  auto loss = [&] {
    ops::rmsnorm_rope_forward(y, rstd, x, g, table, eps);
    return project(w, y);
  };
  loss();
  Tensor n = Tensor::empty({B, T, nh, hd}), rstd2 = Tensor::empty({B * T * nh});
  ops::rmsnorm_forward(n, rstd2, x, g, eps);
  ops::rope_forward(n, table.slice(0, T));
  EXPECT_TRUE(bitwise_equal(y, n)) << "forward";
  EXPECT_TRUE(bitwise_equal(rstd, rstd2)) << "rstd";

  Tensor dx = randn({B, T, nh, hd}, 34), dg = randn({hd}, 35);  // dx garbage: overwritten
  Tensor dg2 = clone(dg), dx2 = Tensor::empty({B, T, nh, hd}), dn = clone(w);
  ops::rmsnorm_rope_backward(dx, dg, w, x, g, rstd, table);
  ops::rope_backward(dn, table.slice(0, T));
  ops::rmsnorm_backward(dx2, dg2, dn, x, g, rstd);
  EXPECT_TRUE(bitwise_equal(dx, dx2)) << "dx";
  EXPECT_TRUE(bitwise_equal(dg, dg2)) << "dg";

  Tensor gz = Tensor::zeros({hd});
  ops::rmsnorm_rope_backward(dx, gz, w, x, g, rstd, table);
  check_fd(x, dx, loss, "rmsnorm_rope dx");
  check_fd(g, gz, loss, "rmsnorm_rope dg");

  const std::string odd = error_of([&] {
    Tensor x5 = randn({1, 2, 1, 5}, 36), y5 = Tensor::empty({1, 2, 1, 5}), r5 = Tensor::empty({2});
    Tensor g5 = randn({5}, 37);
    ops::rmsnorm_rope_forward(y5, r5, x5, g5, ops::rope_table(2, 6, 10000.0), eps);
  });
  EXPECT_NE(odd.find("even"), std::string::npos) << odd;
}

// ---- SwiGLU --------------------------------------------------------------------------------

TEST(SwiGLUGrad, FiniteDifferencesAndReference) {
  {
    Tensor gate_up = randn({3, 16}, 31, 2.0), w = randn({3, 8}, 33);
    Tensor h = Tensor::empty({3, 8});
    auto loss = [&] {
      ops::swiglu_forward(h, gate_up);
      return project(w, h);
    };
    Tensor dgate_up = randn({3, 16}, 34);
    ops::swiglu_backward(dgate_up, w, gate_up);
    check_fd(gate_up, dgate_up, loss, "swiglu dgate_up");
  }
  for (auto [rows, F] : {std::pair<int64_t, int64_t>{1, 1}, {3, 1366}}) {
    Tensor gate_up = randn({rows, 2 * F}, 36, 4.0), dh = randn({rows, F}, 38);
    if (F > 4) gate_up.data<float>()[0] = 90.0f, gate_up.data<float>()[1] = -90.0f;
    Tensor dgate_up = Tensor::empty({rows, 2 * F});
    ops::swiglu_backward(dgate_up, dh, gate_up);
    auto gu = to_double(gate_up), d = to_double(dh);
    std::vector<double> want(rows * 2 * F);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < F; ++c) {
        const int64_t i = r * 2 * F + c;
        const double z = gu[i], u = gu[i + F], dd = d[r * F + c], s = 1.0 / (1.0 + std::exp(-z));
        want[i] = dd * u * (s + z * s * (1 - s));  // dgate
        want[i + F] = dd * z * s;                  // dup
      }
    expect_close(dgate_up, want, 1e-5, "swiglu dgate_up ref " + shape_str({rows, F}));
  }
  Tensor gate_up = randn({2, 8}, 1), dh = randn({2, 4}, 3);
  try {
    ops::swiglu_backward(gate_up, dh, gate_up);
    ADD_FAILURE() << "aliasing dgate_up with gate_up must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("alias"), std::string::npos);
  }
}

// ---- cross-entropy with z-loss ------------------------------------------------------------------

TEST(CrossEntropyGrad, FiniteDifferencesWithZLoss) {
  const int64_t rows = 4, V = 11;
  const float ce_scale = 1.0f / rows, z_scale = 0.1f / rows;
  Tensor logits = randn({rows, V}, 41, 2.0, 0.5), tgt = randint({rows}, 42, V);
  Tensor ce = Tensor::empty({rows}), lse = Tensor::empty({rows});
  auto loss = [&] {
    ops::cross_entropy_forward(ce, lse, logits, tgt);
    double s = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const double l = lse.data<float>()[r];
      s += ce_scale * ce.data<float>()[r] + z_scale * l * l;
    }
    return s;
  };
  loss();
  Tensor dlogits = randn({rows, V}, 43);
  ops::cross_entropy_backward(dlogits, logits, lse, tgt, ce_scale, z_scale);
  check_fd(logits, dlogits, loss, "cross-entropy dlogits", 1e-2, 2e-3);
}

TEST(CrossEntropyGrad, AgainstReferenceInPlaceAndOutOfPlace) {
  for (auto [rows, V] : {std::pair<int64_t, int64_t>{1, 1}, {5, 7}, {33, 2049}}) {
    Tensor logits = randn({rows, V}, 51, 3.0), tgt = randint({rows}, 52, V);
    Tensor ce = Tensor::empty({rows}), lse = Tensor::empty({rows});
    ops::cross_entropy_forward(ce, lse, logits, tgt);
    const float ce_scale = 0.37f, z_scale = 1e-2f;
    auto x = to_double(logits);
    std::vector<double> ref(rows * V);
    for (int64_t r = 0; r < rows; ++r) {
      double m = -1e300, z = 0;
      for (int64_t v = 0; v < V; ++v) m = std::max(m, x[r * V + v]);
      for (int64_t v = 0; v < V; ++v) z += std::exp(x[r * V + v] - m);
      const double l = m + std::log(z);
      for (int64_t v = 0; v < V; ++v) {
        const double p = std::exp(x[r * V + v] - l);
        ref[r * V + v] = ce_scale * (p - (v == tgt.data<int32_t>()[r])) + z_scale * 2 * l * p;
      }
    }
    Tensor d = Tensor::empty({rows, V});
    ops::cross_entropy_backward(d, logits, lse, tgt, ce_scale, z_scale);
    const std::string what = "rows=" + std::to_string(rows) + " V=" + std::to_string(V);
    expect_close(d, ref, 1e-5, "ce backward " + what);
    Tensor inplace = clone(logits);
    ops::cross_entropy_backward(inplace, inplace, lse, tgt, ce_scale, z_scale);
    EXPECT_TRUE(bitwise_equal(inplace, d)) << "in place differs, " << what;
  }
}

// ---- attention -------------------------------------------------------------------------------

struct AttnCase {
  int64_t B, T, H, Hkv, hd, W = 0;  // W: the sliding window (0: none)
};

std::string case_text(const AttnCase& c) {
  return "B=" + std::to_string(c.B) + " T=" + std::to_string(c.T) + " H=" + std::to_string(c.H) +
         " Hkv=" + std::to_string(c.Hkv) + " hd=" + std::to_string(c.hd) +
         " window=" + std::to_string(c.W);
}

TEST(AttentionGrad, FiniteDifferencesMhaAndGqa) {
  const AttnCase cases[] = {{1, 9, 2, 2, 4}, {1, 6, 4, 2, 4}, {2, 5, 4, 1, 4}, {1, 9, 4, 2, 4, 3}};
  uint64_t stream = 60;
  for (const AttnCase& c : cases) {
    Tensor q = randn({c.B, c.T, c.H, c.hd}, ++stream), k = randn({c.B, c.T, c.Hkv, c.hd}, ++stream);
    Tensor v = randn({c.B, c.T, c.Hkv, c.hd}, ++stream), w = randn(q.shape(), ++stream);
    Tensor out = Tensor::empty(q.shape()), lse = Tensor::empty({c.B, c.H, c.T});
    auto loss = [&] {
      ops::attention_forward(out, lse, q, k, v, c.W);
      return project(w, out);
    };
    loss();
    Tensor dq = randn(q.shape(), 1), dk = randn(k.shape(), 2), dv = randn(v.shape(), 3);
    ops::attention_backward(dq, dk, dv, w, q, k, v, out, lse, c.W);
    const std::string what = " " + case_text(c);
    check_fd(q, dq, loss, "attention dq" + what);
    check_fd(k, dk, loss, "attention dk" + what);
    check_fd(v, dv, loss, "attention dv" + what);
  }
}

TEST(AttentionGrad, AgainstAnalyticalReference) {
  // Sliding windows: one key, shorter than a 64-row tile, exactly one, one more, longer than
  // two, and longer than T (no window).
  const AttnCase cases[] = {{1, 1, 1, 1, 4},         {2, 7, 4, 4, 8},       {2, 65, 4, 2, 16},
                            {1, 130, 4, 1, 16},      {1, 64, 2, 2, 64},     {1, 77, 6, 3, 32},
                            {2, 65, 4, 2, 16, 1},    {1, 130, 4, 1, 16, 37}, {1, 200, 4, 2, 8, 64},
                            {2, 200, 2, 2, 8, 65},   {1, 300, 2, 1, 8, 150}, {1, 77, 6, 3, 32, 100}};
  uint64_t stream = 80;
  // 1 thread: one task per (b, kv head) unless B·Hkv = 1; 4 threads: mostly the two-pass path.
  for (int threads : {1, 4})
    for (const AttnCase& c : cases) {
      Tensor q = randn({c.B, c.T, c.H, c.hd}, ++stream);
      Tensor k = randn({c.B, c.T, c.Hkv, c.hd}, ++stream);
      Tensor v = randn({c.B, c.T, c.Hkv, c.hd}, ++stream), dout = randn(q.shape(), ++stream);
      Tensor out = Tensor::empty(q.shape()), lse = Tensor::empty({c.B, c.H, c.T});
      Tensor dq = randn(q.shape(), 1), dk = randn(k.shape(), 2), dv = randn(v.shape(), 3);
      with_threads(threads, [&] {
        ops::attention_forward(out, lse, q, k, v, c.W);
        ops::attention_backward(dq, dk, dv, dout, q, k, v, out, lse, c.W);
      });
      AttnRef r = ref_attention(to_double(q), to_double(k), to_double(v), to_double(dout), c.B, c.T,
                                c.H, c.Hkv, c.hd, c.W);
      const std::string what = case_text(c) + " threads=" + std::to_string(threads);
      expect_close(out, r.out, 1e-5, "out " + what);
      expect_close(lse, r.lse, 1e-5, "lse " + what);
      expect_close(dq, r.dq, 1e-5, "dq " + what);
      expect_close(dk, r.dk, 1e-5, "dk " + what);
      expect_close(dv, r.dv, 1e-5, "dv " + what);
    }
}

// ---- embedding -------------------------------------------------------------------------------

TEST(EmbeddingGrad, FiniteDifferencesAndAccumulation) {
  const int64_t V = 6, d = 5, rows = 9;
  Tensor table = randn({V, d}, 91), ids = randint({rows}, 92, V), w = randn({rows, d}, 93);
  ids.data<int32_t>()[0] = ids.data<int32_t>()[1] = 2;  // a repeated id
  Tensor out = Tensor::empty({rows, d});
  auto loss = [&] {
    ops::embedding_forward(out, ids, table);
    return project(w, out);
  };
  Tensor dtable = Tensor::zeros({V, d});
  ops::embedding_backward(dtable, w, ids);
  check_fd(table, dtable, loss, "embedding dtable");

  // Larger, accumulating onto a non-zero dtable, against the reference.
  const int64_t V2 = 300, d2 = 100, rows2 = 2000;
  Tensor ids2 = randint({rows2}, 94, 40), dout = randn({rows2, d2}, 95);  // many repeats
  Tensor dt = randn({V2, d2}, 96);
  std::vector<double> ref = to_double(dt);
  auto dd = to_double(dout);
  for (int64_t r = 0; r < rows2; ++r)
    for (int64_t c = 0; c < d2; ++c) ref[ids2.data<int32_t>()[r] * d2 + c] += dd[r * d2 + c];
  ops::embedding_backward(dt, dout, ids2);
  expect_close(dt, ref, 1e-6, "embedding backward accumulate");
}

// ---- determinism of the backward kernels -------------------------------------------------

TEST(GradDeterminism, BitwiseRepeatableAndThreadCountIndependent) {
  const int64_t B = 3, T = 70, H = 4, Hkv = 2, hd = 16, C = 48, V = 300;
  Tensor q = randn({B, T, H, hd}, 1), k = randn({B, T, Hkv, hd}, 2), v = randn({B, T, Hkv, hd}, 3);
  Tensor dout = randn(q.shape(), 4), out = Tensor::empty(q.shape()), lse = Tensor::empty({B, H, T});
  ops::attention_forward(out, lse, q, k, v);
  Tensor x = randn({B * T * H, C}, 5), g = randn({C}, 6), dy = randn(x.shape(), 7);
  Tensor y = Tensor::empty(x.shape()), rstd = Tensor::empty({B * T * H});
  ops::rmsnorm_forward(y, rstd, x, g, 1e-5f);
  Tensor ids = randint({B * T}, 8, 17), demb = randn({B * T, C}, 9);
  Tensor logits = randn({B * T, V}, 10), tgt = randint({B * T}, 11, V);
  Tensor ce = Tensor::empty({B * T}), l2 = Tensor::empty({B * T});
  ops::cross_entropy_forward(ce, l2, logits, tgt);
  Tensor q1 = randn({1, T, H, hd}, 12), k1 = randn({1, T, 1, hd}, 13);
  Tensor v1 = randn({1, T, 1, hd}, 14);
  Tensor dout1 = randn(q1.shape(), 15), out1 = Tensor::empty(q1.shape());
  Tensor lse1 = Tensor::empty({1, H, T});
  ops::attention_forward(out1, lse1, q1, k1, v1);
  auto run = [&](int threads) {
    std::vector<Tensor> r;
    with_threads(threads, [&] {
      Tensor dq = Tensor::empty(q.shape()), dk = Tensor::empty(k.shape());
      Tensor dv = Tensor::empty(v.shape());
      ops::attention_backward(dq, dk, dv, dout, q, k, v, out, lse);
      Tensor dx = Tensor::empty(x.shape()), dg = Tensor::zeros({C});
      ops::rmsnorm_backward(dx, dg, dy, x, g, rstd);
      Tensor dtable = Tensor::zeros({17, C});
      ops::embedding_backward(dtable, demb, ids);
      Tensor dl = Tensor::empty(logits.shape());
      ops::cross_entropy_backward(dl, logits, l2, tgt, 0.5f, 1e-3f);
      // one (b, kv head) pair: the two-pass backward
      Tensor dq1 = Tensor::empty(q1.shape()), dk1 = Tensor::empty(k1.shape());
      Tensor dv1 = Tensor::empty(k1.shape());
      ops::attention_backward(dq1, dk1, dv1, dout1, q1, k1, v1, out1, lse1);
      r = {dq, dk, dv, dx, dg, dtable, dl, dq1, dk1, dv1};
    });
    return r;
  };
  auto a = run(2), b = run(2), c = run(1);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(bitwise_equal(a[i], b[i])) << "gradient " << i;
    EXPECT_TRUE(bitwise_equal(a[i], c[i])) << "gradient " << i << " (1 vs 2 threads)";
  }
}
