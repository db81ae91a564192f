// Every op in core/ops.h against a naive double-precision reference written here, on random
// inputs (never zeros), several shapes including sizes that are not multiples of the tile
// sizes; determinism (same inputs → bitwise-equal outputs); error messages.
// Backward ops are checked in test_kernel_gradients.cpp.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "core/adamw.h"
#include "core/cpu/fast_math.h"
#include "core/ops.h"
#include "core/random.h"
#include "core/tensor.h"
#include "tests/unit/test_support.h"

using namespace retort;
using retort::test::error_of;

namespace {

constexpr uint64_t kSeed = 1234;

// N(0, scale²) + shift, a pure function of (stream, index).
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

// Norm-wise relative error max|got − ref| / max|ref| ≤ tol (with an absolute floor).
void expect_close(const Tensor& got, const std::vector<double>& ref, double tol,
                  const std::string& what) {
  ASSERT_EQ(got.numel(), static_cast<int64_t>(ref.size())) << what;
  const float* g = got.data<float>();
  double maxref = 0, maxerr = 0;
  int64_t worst = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    maxref = std::max(maxref, std::abs(ref[i]));
    const double e = std::abs(static_cast<double>(g[i]) - ref[i]);
    if (!(e <= maxerr)) maxerr = e, worst = static_cast<int64_t>(i);  // NaN counts as worst
  }
  EXPECT_LE(maxerr, tol * std::max(maxref, 1e-30)) << what << ": worst element " << worst
                                                    << " got " << g[worst] << " want "
                                                    << ref[worst] << " (max |ref| " << maxref
                                                    << ")";
}

// Runs `body` with n OpenMP threads, then restores the previous count.
template <class F>
void with_threads(int n, F&& body) {
  const int old = omp_get_max_threads();
  omp_set_num_threads(n);
  body();
  omp_set_num_threads(old);
}

// ---- references (double) ----------------------------------------------------------------

// Y = alpha op(A) op(B) + beta Y
std::vector<double> ref_matmul(const std::vector<double>& A, bool ta, const std::vector<double>& B,
                               bool tb, std::vector<double> Y, int64_t M, int64_t N, int64_t K,
                               double alpha, double beta) {
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = 0;
      for (int64_t k = 0; k < K; ++k)
        s += (ta ? A[k * M + i] : A[i * K + k]) * (tb ? B[j * K + k] : B[k * N + j]);
      Y[i * N + j] = alpha * s + beta * Y[i * N + j];
    }
  return Y;
}

// Naive causal GQA attention: out [B,T,H,hd], lse [B,H,T].
void ref_attention(const std::vector<double>& q, const std::vector<double>& k,
                   const std::vector<double>& v, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                   int64_t hd, std::vector<double>& out, std::vector<double>& lse) {
  out.assign(B * T * H * hd, 0.0);
  lse.assign(B * H * T, 0.0);
  const double scale = 1.0 / std::sqrt(static_cast<double>(hd));
  std::vector<double> s(T);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t j = h / (H / Hkv);
      for (int64_t t = 0; t < T; ++t) {
        double m = -1e300;
        for (int64_t u = 0; u <= t; ++u) {
          double d = 0;
          for (int64_t c = 0; c < hd; ++c)
            d += q[((b * T + t) * H + h) * hd + c] * k[((b * T + u) * Hkv + j) * hd + c];
          s[u] = d * scale;
          m = std::max(m, s[u]);
        }
        double z = 0;
        for (int64_t u = 0; u <= t; ++u) z += std::exp(s[u] - m);
        lse[(b * H + h) * T + t] = m + std::log(z);
        for (int64_t u = 0; u <= t; ++u) {
          const double p = std::exp(s[u] - m) / z;
          for (int64_t c = 0; c < hd; ++c)
            out[((b * T + t) * H + h) * hd + c] += p * v[((b * T + u) * Hkv + j) * hd + c];
        }
      }
    }
}

}  // namespace

// ---- fast exp -------------------------------------------------------------------------------

TEST(FastMath, ExpMatchesStdExpWithinFewUlp) {
  double worst = 0;
  for (int i = 0; i <= 200000; ++i) {
    const float x = -87.0f + 175.0f * static_cast<float>(i) / 200000.0f;
    const double want = std::exp(static_cast<double>(x));
    worst = std::max(worst, std::abs(cpu::exp_fast(x) - want) / want);
  }
  EXPECT_LT(worst, 4e-7);
  EXPECT_LT(cpu::exp_fast(-std::numeric_limits<float>::infinity()), 1e-37f);
  EXPECT_TRUE(std::isnan(cpu::exp_fast(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(std::isfinite(cpu::exp_fast(1000.0f)));
  EXPECT_EQ(cpu::exp_fast(0.0f), 1.0f);
}

// ---- matmul ---------------------------------------------------------------------------------

TEST(Matmul, AllTransposeCasesAlphaBetaAgainstReference) {
  struct Case { int64_t M, N, K; };
  const Case cases[] = {{1, 1, 1}, {7, 13, 5}, {64, 48, 33}, {130, 70, 257}};
  uint64_t stream = 100;
  for (const Case& c : cases)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (auto [alpha, beta] : {std::pair{1.0f, 0.0f}, std::pair{0.7f, 0.3f},
                                   std::pair{-1.5f, 1.0f}}) {
          Tensor a = ta ? randn({c.K, c.M}, ++stream) : randn({c.M, c.K}, ++stream);
          Tensor b = tb ? randn({c.N, c.K}, ++stream) : randn({c.K, c.N}, ++stream);
          Tensor y = randn({c.M, c.N}, ++stream);
          auto want = ref_matmul(to_double(a), ta, to_double(b), tb, to_double(y), c.M, c.N, c.K,
                                 alpha, beta);
          ops::matmul(y, a, ta, b, tb, alpha, beta);
          expect_close(y, want, 1e-5,
                       "matmul M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) +
                           " K=" + std::to_string(c.K) + " ta=" + std::to_string(ta) +
                           " tb=" + std::to_string(tb) + " alpha=" + std::to_string(alpha) +
                           " beta=" + std::to_string(beta));
        }
}

TEST(Matmul, LeadingDimsAreFlattenedIntoRows) {
  // x [2, 3, 5] @ Wᵀ with W [4, 5] -> y [2, 3, 4]  (the nn.Linear pattern)
  Tensor x = randn({2, 3, 5}, 1), w = randn({4, 5}, 2), y = randn({2, 3, 4}, 3);
  auto want = ref_matmul(to_double(x), false, to_double(w), true, to_double(y), 6, 4, 5, 1, 0);
  ops::matmul(y, x, false, w, true);
  expect_close(y, want, 1e-5, "linear");
  // weight gradient: dW [4, 5] = dyᵀ x, with dy [2, 3, 4] viewed [6, 4]
  Tensor dw = randn({4, 5}, 4);
  auto want_dw = ref_matmul(to_double(y), true, to_double(x), false, to_double(dw), 4, 5, 6, 1, 1);
  ops::matmul(dw, y, true, x, false, 1.0f, 1.0f);
  expect_close(dw, want_dw, 1e-5, "weight gradient");
}

// bf16 precision = fp32 matmul of the operands rounded to bfloat16 (reference in double), and
// the rounding is visible: the result differs from the fp32 one by about bf16's 2^-8.
TEST(Matmul, Bf16PrecisionRoundsBothOperands) {
  Tensor a = randn({37, 70}, 5), b = randn({70, 21}, 6), y = Tensor::zeros({37, 21});
  auto rounded = [](const Tensor& t) {
    std::vector<double> out;
    for (int64_t i = 0; i < t.numel(); ++i) out.push_back(bf16_to_f32(f32_to_bf16(t.data<float>()[i])));
    return out;
  };
  const auto want = ref_matmul(rounded(a), false, rounded(b), false, to_double(y), 37, 21, 70, 1, 0);
  const auto exact = ref_matmul(to_double(a), false, to_double(b), false, to_double(y), 37, 21, 70, 1, 0);
  ops::set_matmul_precision(ops::MatmulPrecision::BF16);
  ops::matmul(y, a, false, b, false);
  ops::set_matmul_precision(ops::MatmulPrecision::F32);
  expect_close(y, want, 1e-5, "bf16 matmul");
  double worst = 0, scale = 0;
  for (size_t i = 0; i < exact.size(); ++i) {
    worst = std::max(worst, std::abs(y.data<float>()[i] - exact[i]));
    scale = std::max(scale, std::abs(exact[i]));
  }
  EXPECT_GT(worst / scale, 1e-4) << "bf16 rounding left no trace";
  EXPECT_LT(worst / scale, 2e-2);
}

// A bfloat16 operand (rounded once, read by several products) gives bitwise the product of its
// fp32 original under bf16 precision, whichever operand it is and at either precision setting.
TEST(Matmul, Bf16OperandIsBitwiseTheRoundedFp32Operand) {
  Tensor a = randn({37, 70}, 7), b = randn({21, 70}, 8), want = Tensor::zeros({37, 21});
  Tensor a16 = Tensor::empty({37, 70}, DType::BF16), b16 = Tensor::empty({21, 70}, DType::BF16);
  ops::convert(a16, a);
  ops::convert(b16, b);
  ops::set_matmul_precision(ops::MatmulPrecision::BF16);
  ops::matmul(want, a, false, b, true);
  for (auto prec : {ops::MatmulPrecision::BF16, ops::MatmulPrecision::F32}) {
    ops::set_matmul_precision(prec);
    for (auto [x, y] : {std::pair{&a16, &b}, {&a, &b16}, {&a16, &b16}}) {
      Tensor got = Tensor::zeros({37, 21});
      ops::matmul(got, *x, false, *y, true);
      EXPECT_EQ(std::memcmp(got.data<float>(), want.data<float>(), got.nbytes()), 0)
          << "a " << dtype_name(x->dtype()) << ", b " << dtype_name(y->dtype());
    }
  }
  ops::set_matmul_precision(ops::MatmulPrecision::F32);
}

// A bfloat16 y: the bf16 product rounded once (bitwise convert of its fp32 y), beta = 0 only.
TEST(Matmul, Bf16OutputIsTheRoundedBf16Product) {
  Tensor a = randn({37, 70}, 17), b = randn({21, 70}, 18), want = Tensor::zeros({37, 21});
  Tensor y16 = Tensor::empty({37, 21}, DType::BF16), want16 = Tensor::empty({37, 21}, DType::BF16);
  ops::set_matmul_precision(ops::MatmulPrecision::BF16);
  ops::matmul(want, a, false, b, true, 0.5f);
  ops::set_matmul_precision(ops::MatmulPrecision::F32);
  ops::convert(want16, want);
  ops::matmul(y16, a, false, b, true, 0.5f);  // a bf16 product at either precision setting
  EXPECT_EQ(std::memcmp(y16.raw(), want16.raw(), y16.nbytes()), 0);
  EXPECT_NE(error_of([&] { ops::matmul(y16, a, false, b, true, 1.0f, 1.0f); }).find("needs beta = 0"),
            std::string::npos);
}

TEST(Matmul, BetaZeroOverwritesNaN) {
  Tensor a = randn({3, 4}, 1), b = randn({4, 2}, 2), y = Tensor::empty({3, 2});
  ops::fill(y, std::numeric_limits<float>::quiet_NaN());
  ops::matmul(y, a, false, b, false);
  for (int i = 0; i < 6; ++i) EXPECT_FALSE(std::isnan(y.data<float>()[i]));
}

TEST(Matmul, ShapeErrorsNameBothShapes) {
  Tensor a = randn({3, 4}, 1), b = randn({5, 2}, 2), y = randn({3, 2}, 3);
  const std::string msg = error_of([&] { ops::matmul(y, a, false, b, false); });
  EXPECT_NE(msg.find("[3, 4]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[5, 2]"), std::string::npos) << msg;
  Tensor b2 = randn({4, 2}, 4), ybad = randn({3, 3}, 5);
  const std::string msg2 = error_of([&] { ops::matmul(ybad, a, false, b2, false); });
  EXPECT_NE(msg2.find("[3, 3]"), std::string::npos) << msg2;
  Tensor ids = randint({3, 4}, 6, 5);
  EXPECT_NE(error_of([&] { ops::matmul(y, ids, false, b2, false); }).find("float32"),
            std::string::npos);
  // y aliasing an input is refused.
  Tensor sq = randn({4, 4}, 7);
  EXPECT_NE(error_of([&] { ops::matmul(sq, sq, false, sq, false); }).find("alias"),
            std::string::npos);
}

TEST(Matmul, Deterministic) {
  Tensor a = randn({200, 300}, 1), b = randn({300, 150}, 2);
  with_threads(2, [&] {
    Tensor y1 = Tensor::empty({200, 150}), y2 = Tensor::empty({200, 150});
    ops::matmul(y1, a, false, b, false);
    ops::matmul(y2, a, false, b, false);
    EXPECT_TRUE(bitwise_equal(y1, y2));
  });
}

// y = c + op(a) op(b) is bitwise copy(y, c) then the accumulating product, at either precision,
// with bf16 operands, and in place (c = y); a c partly overlapping y is refused.
TEST(Matmul, AddIsBitwiseCopyThenAccumulate) {
  Tensor a = randn({13, 20}, 40), b = randn({9, 20}, 41), c = randn({13, 9}, 42);
  Tensor a16 = Tensor::empty({13, 20}, DType::BF16);
  ops::convert(a16, a);
  for (auto prec : {ops::MatmulPrecision::F32, ops::MatmulPrecision::BF16})
    for (const Tensor* x : {&a, &a16}) {
      ops::set_matmul_precision(prec);
      Tensor want = clone(c), y = Tensor::empty({13, 9}), in_place = clone(c);
      ops::matmul(want, *x, false, b, true, 1.0f, 1.0f);
      ops::matmul_add(y, c, *x, false, b, true);
      ops::matmul_add(in_place, in_place, *x, false, b, true);
      EXPECT_TRUE(bitwise_equal(y, want)) << int(prec) << " " << dtype_name(x->dtype());
      EXPECT_TRUE(bitwise_equal(in_place, want)) << "in place";
    }
  ops::set_matmul_precision(ops::MatmulPrecision::F32);
  Tensor buf = randn({2 * 13 * 9}, 43), y = buf.flat(0, 13 * 9).view({13, 9});
  const Tensor shifted = buf.flat(5, 13 * 9).view({13, 9});
  EXPECT_NE(error_of([&] { ops::matmul_add(y, shifted, a, false, b, true); }).find("overlap"),
            std::string::npos);
}

// Tensor::span sees consecutive views as one, never past its storage.
TEST(TensorSpan, JoinsConsecutiveViewsWithinTheStorage) {
  Tensor buf = randn({24}, 1);
  Tensor first = buf.flat(4, 6).view({2, 3}), joined = first.span({3, 2, 3});
  EXPECT_EQ(joined.data<float>(), buf.data<float>() + 4);
  EXPECT_EQ(joined.shape(), (Shape{3, 2, 3}));
  EXPECT_NE(error_of([&] { first.span({4, 2, 3}); }).find("past the end"), std::string::npos);
}

// stack_rows: consecutive matrices of one width as one; anything else undefined.
TEST(TensorSpan, StackRowsJoinsOnlyConsecutiveMatricesOfOneWidth) {
  Tensor buf = randn({40}, 2);
  const Tensor a = buf.flat(0, 6).view({2, 3}), b = buf.flat(6, 9).view({3, 3});
  const Tensor stacked = stack_rows({a, b});
  EXPECT_EQ(stacked.shape(), (Shape{5, 3}));
  EXPECT_EQ(stacked.data<float>(), buf.data<float>());
  EXPECT_FALSE(stack_rows({b, a}).defined());                                 // out of order
  EXPECT_FALSE(stack_rows({a, buf.flat(7, 9).view({3, 3})}).defined());       // a gap
  EXPECT_FALSE(stack_rows({a, buf.flat(6, 8).view({2, 4})}).defined());       // another width
  EXPECT_FALSE(stack_rows({a, randn({3, 3}, 3)}).defined());                  // another storage
  EXPECT_FALSE(stack_rows({a, Tensor()}).defined());
  // vectors (a layer's q, k, v biases) join into one vector; never with a matrix
  const Tensor u = buf.flat(20, 4), w = buf.flat(24, 2);
  EXPECT_EQ(stack_rows({u, w}).shape(), (Shape{6}));
  EXPECT_EQ(stack_rows({u, w}).data<float>(), u.data<float>());
  EXPECT_FALSE(stack_rows({w, u}).defined());
  EXPECT_FALSE(stack_rows({buf.flat(18, 2).view({1, 2}), u}).defined());
}

// ---- elementwise ----------------------------------------------------------------------------

TEST(Elementwise, FillCopyAddScale) {
  for (int64_t n : {1, 17, 100003}) {
    Tensor x = randn({n}, 1), y = randn({n}, 2);
    auto xd = to_double(x), yd = to_double(y);
    ops::add_inplace(y, x, 0.25f);
    for (int64_t i = 0; i < n; ++i) yd[i] += 0.25 * static_cast<double>(static_cast<float>(xd[i]));
    expect_close(y, yd, 1e-6, "add_inplace");
    ops::scale_inplace(y, -3.0f);
    for (auto& e : yd) e *= -3.0;
    expect_close(y, yd, 1e-6, "scale_inplace");
    Tensor z = Tensor::empty({n});
    ops::copy(z, y);
    EXPECT_TRUE(bitwise_equal(z, y));
    ops::fill(z, 2.5f);
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(z.data<float>()[i], 2.5f);
  }
  Tensor ids = randint({5}, 3, 100), ids2 = Tensor::empty({5}, DType::I32);
  ops::copy(ids2, ids);
  EXPECT_TRUE(bitwise_equal(ids, ids2));
  Tensor x5 = randn({5}, 4), x6 = randn({6}, 5);
  EXPECT_NE(error_of([&] { ops::add_inplace(x5, x6); }).find("[6]"), std::string::npos);
  EXPECT_NE(error_of([&] { ops::copy(x5, ids); }).find("dtype"), std::string::npos);
}

TEST(Elementwise, SumSquaresIsExactEnoughAndThreadCountIndependent) {
  for (int64_t n : {1, 4095, 4097, 300001}) {
    Tensor x = randn({n}, 7, 3.0, 0.5);
    double want = 0;
    for (double v : to_double(x)) want += v * v;
    double got1 = 0, got2 = 0;
    with_threads(1, [&] { got1 = ops::sum_squares(x); });
    with_threads(2, [&] { got2 = ops::sum_squares(x); });
    EXPECT_NEAR(got1, want, 1e-12 * want) << n;
    EXPECT_EQ(got1, got2) << n;  // bitwise
  }
}

TEST(Elementwise, ConvertBf16MatchesScalarRounding) {
  const int64_t n = 10007;
  Tensor x = randn({n}, 9, 100.0);
  float* p = x.data<float>();
  p[0] = std::numeric_limits<float>::quiet_NaN();
  p[1] = std::numeric_limits<float>::infinity();
  p[2] = -0.0f;
  uint32_t tie = 0x3f808000u;  // exactly halfway between two bf16 values -> round to even
  std::memcpy(&p[3], &tie, 4);
  Tensor h = Tensor::empty({n}, DType::BF16), back = Tensor::empty({n});
  ops::convert(h, x);
  ops::convert(back, h);
  const uint16_t* hb = h.data<uint16_t>();
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(hb[i], f32_to_bf16(p[i])) << i;
    if (i == 0) continue;
    ASSERT_EQ(back.data<float>()[i], bf16_to_f32(hb[i])) << i;
    if (i > 3) {
      ASSERT_LE(std::abs(back.data<float>()[i] - p[i]), std::abs(p[i]) * (1.0f / 256));
    }
  }
  EXPECT_TRUE(std::isnan(back.data<float>()[0]));
  EXPECT_EQ(hb[3], 0x3f80);
  Tensor ids = Tensor::empty({n}, DType::I32);
  EXPECT_NE(error_of([&] { ops::convert(ids, x); }).find("unsupported"), std::string::npos);
}

// ---- bf16 outputs and inputs (activations of bf16 training) ---------------------------------

Tensor to_bf16(const Tensor& x) {
  Tensor r = Tensor::empty(x.shape(), DType::BF16);
  ops::convert(r, x);
  return r;
}
Tensor to_f32(const Tensor& x) {
  Tensor r = Tensor::empty(x.shape());
  ops::convert(r, x);
  return r;
}

// An op given a BF16 output writes bitwise its F32 output rounded (no other change in the math).
TEST(Bf16Outputs, BitwiseTheFp32OutputRounded) {
  Tensor x = randn({37, 70}, 31), g = randn({70}, 32, 0.3, 1.0);
  Tensor y = Tensor::empty({37, 70}), y16 = Tensor::empty({37, 70}, DType::BF16);
  Tensor rstd = Tensor::empty({37}), rstd16 = Tensor::empty({37});
  ops::rmsnorm_forward(y, rstd, x, g, 1e-5f);
  ops::rmsnorm_forward(y16, rstd16, x, g, 1e-5f);
  EXPECT_TRUE(bitwise_equal(y16, to_bf16(y))) << "rmsnorm y";
  EXPECT_TRUE(bitwise_equal(rstd16, rstd)) << "rmsnorm rstd";

  Tensor gate_up = randn({5, 666}, 33, 3.0), dh = randn({5, 333}, 35);
  Tensor h = Tensor::empty({5, 333}), h16 = Tensor::empty({5, 333}, DType::BF16);
  ops::swiglu_forward(h, gate_up);
  ops::swiglu_forward(h16, gate_up);
  EXPECT_TRUE(bitwise_equal(h16, to_bf16(h))) << "swiglu h";
  Tensor dgu = Tensor::empty({5, 666}), dgu16 = Tensor::empty({5, 666}, DType::BF16);
  ops::swiglu_backward(dgu, dh, gate_up);
  ops::swiglu_backward(dgu16, dh, gate_up);
  EXPECT_TRUE(bitwise_equal(dgu16, to_bf16(dgu))) << "swiglu dgate_up";
  // bf16 gate_up (a bf16 product's output): bitwise the op on its widened values
  Tensor gu16 = to_bf16(gate_up), guw = to_f32(gu16);
  ops::swiglu_forward(h, guw);
  ops::swiglu_forward(h16, gu16);
  EXPECT_TRUE(bitwise_equal(h16, to_bf16(h))) << "swiglu h from bf16";
  // ... and with it a bf16 dh (the bf16 product's output)
  Tensor dh16 = to_bf16(dh), dhw = to_f32(dh16);
  ops::swiglu_backward(dgu, dhw, guw);
  ops::swiglu_backward(dgu16, dh16, gu16);
  EXPECT_TRUE(bitwise_equal(dgu16, to_bf16(dgu))) << "swiglu dgate_up from bf16";
  EXPECT_NE(error_of([&] { ops::swiglu_backward(dgu16, dh, gu16); }).find("dtype of gate_up"),
            std::string::npos);
  {  // qk-norm with RoPE: a bf16 y is the fp32 y rounded; bf16 x and dy give the op on their
     // widened values (dx rounded when bf16)
    const Tensor table = ops::rope_table(9, 8, 10000.0);
    Tensor x = randn({2, 9, 3, 8}, 40), gq = randn({8}, 41, 0.3, 1.0), dyq = randn({2, 9, 3, 8}, 42);
    Tensor yq = Tensor::empty(x.shape()), yq16 = Tensor::empty(x.shape(), DType::BF16);
    Tensor rq = Tensor::empty({54}), rq16 = Tensor::empty({54});
    ops::rmsnorm_rope_forward(yq, rq, x, gq, table, 1e-5f);
    ops::rmsnorm_rope_forward(yq16, rq16, x, gq, table, 1e-5f);
    EXPECT_TRUE(bitwise_equal(yq16, to_bf16(yq)) && bitwise_equal(rq, rq16)) << "rmsnorm_rope y";
    Tensor x16 = to_bf16(x), xw = to_f32(x16), dy16 = to_bf16(dyq), dyw = to_f32(dy16);
    ops::rmsnorm_rope_forward(yq, rq, xw, gq, table, 1e-5f);
    ops::rmsnorm_rope_forward(yq16, rq16, x16, gq, table, 1e-5f);
    EXPECT_TRUE(bitwise_equal(yq16, to_bf16(yq)) && bitwise_equal(rq, rq16)) << "from bf16 x";
    Tensor dxq = Tensor::empty(x.shape()), dxq16 = Tensor::empty(x.shape(), DType::BF16);
    Tensor dgq = Tensor::zeros({8}), dgq16 = Tensor::zeros({8});
    ops::rmsnorm_rope_backward(dxq, dgq, dyw, xw, gq, rq, table);
    ops::rmsnorm_rope_backward(dxq16, dgq16, dy16, x16, gq, rq, table);
    EXPECT_TRUE(bitwise_equal(dxq16, to_bf16(dxq)) && bitwise_equal(dgq, dgq16)) << "backward from bf16";
    EXPECT_NE(error_of([&] { ops::rmsnorm_rope_backward(dxq, dgq, dyq, x16, gq, rq, table); })
                  .find("one dtype"),
              std::string::npos);
  }
  const Tensor table = ops::rope_table(9, 8, 10000.0);
  Tensor q = randn({2, 9, 3, 8}, 36), qr = clone(q), q16 = Tensor::empty({2, 9, 3, 8}, DType::BF16);
  ops::rope_forward(qr, table);
  ops::rope_forward(q16, q, table);
  EXPECT_TRUE(bitwise_equal(q16, to_bf16(qr))) << "rope";
  // backward from a bf16 gradient (cuDNN's): into fp32, into bf16, and in place on bf16
  Tensor dq = to_f32(q16), dq_f = Tensor::empty(q.shape()), dq_b = Tensor::empty(q.shape(), DType::BF16);
  Tensor want = clone(dq);
  ops::rope_backward(want, table);
  ops::rope_backward(dq_f, q16, table);
  ops::rope_backward(dq_b, q16, table);
  EXPECT_TRUE(bitwise_equal(dq_f, want)) << "rope backward bf16 -> fp32";
  EXPECT_TRUE(bitwise_equal(dq_b, to_bf16(want))) << "rope backward bf16 -> bf16";
  ops::rope_backward(q16, table);
  EXPECT_TRUE(bitwise_equal(q16, dq_b)) << "rope backward in place on bf16";
  // RMSNorm's backward with a bf16 dx (qk-norm's gradient, a bf16 product's operand)
  Tensor dy = randn({37, 70}, 37), dx = Tensor::empty({37, 70}), dgain = Tensor::zeros({70});
  Tensor dx16 = Tensor::empty({37, 70}, DType::BF16), dgain16 = Tensor::zeros({70});
  ops::rmsnorm_backward(dx, dgain, dy, x, g, rstd);
  ops::rmsnorm_backward(dx16, dgain16, dy, x, g, rstd);
  EXPECT_TRUE(bitwise_equal(dx16, to_bf16(dx))) << "rmsnorm dx";
  EXPECT_TRUE(bitwise_equal(dgain16, dgain)) << "rmsnorm dg";
  EXPECT_NE(error_of([&] { ops::rmsnorm_backward(dx16, dgain16, dy, x, g, rstd, true); })
                .find("accumulate_dx and dx_rounded need a float32 dx"),
            std::string::npos);
  // cross-entropy's dlogits in bf16 (the head's products' operand); target -1 = another shard
  Tensor logits = randn({4, 50}, 38, 2.0), targets = randint({4}, 39, 50), ce = Tensor::empty({4}),
         lse = Tensor::empty({4}), dl = Tensor::empty({4, 50}), dl16 = Tensor::empty({4, 50}, DType::BF16);
  targets.data<int32_t>()[1] = -1;
  ops::cross_entropy_forward(ce, lse, logits, targets);
  ops::cross_entropy_backward(dl, logits, lse, targets, 0.25f, 1e-3f);
  ops::cross_entropy_backward(dl16, logits, lse, targets, 0.25f, 1e-3f);
  EXPECT_TRUE(bitwise_equal(dl16, to_bf16(dl))) << "cross-entropy dlogits";
  {  // bf16 logits (the head's bf16 product): the loss of the widened logits, dlogits rounded,
     // in place over them too; fp32 dlogits from bf16 logits are refused
    Tensor l16 = to_bf16(logits), lw = to_f32(l16), ce16 = Tensor::empty({4}), lse16 = Tensor::empty({4});
    ops::cross_entropy_forward(ce, lse, lw, targets);
    ops::cross_entropy_forward(ce16, lse16, l16, targets);
    for (int64_t r = 0; r < 4; ++r) {
      EXPECT_NEAR(ce16.data<float>()[r], ce.data<float>()[r], 1e-6) << "ce from bf16, row " << r;
      EXPECT_NEAR(lse16.data<float>()[r], lse.data<float>()[r], 1e-6) << "lse from bf16, row " << r;
    }
    ops::cross_entropy_backward(dl, lw, lse, targets, 0.25f, 1e-3f);
    ops::cross_entropy_backward(dl16, l16, lse, targets, 0.25f, 1e-3f);
    EXPECT_TRUE(bitwise_equal(dl16, to_bf16(dl))) << "cross-entropy dlogits from bf16 logits";
    Tensor tl = Tensor::empty({4}), tl16 = Tensor::empty({4});
    ops::target_logits(tl, lw, targets);
    ops::target_logits(tl16, l16, targets);
    EXPECT_TRUE(bitwise_equal(tl16, tl)) << "target_logits from bf16";
    ops::cross_entropy_backward(l16, l16, lse, targets, 0.25f, 1e-3f);
    EXPECT_TRUE(bitwise_equal(l16, dl16)) << "cross-entropy dlogits in place over bf16 logits";
    EXPECT_NE(error_of([&] { ops::cross_entropy_backward(dl, l16, lse, targets, 1, 0); })
                  .find("bf16 logits need bf16 dlogits"),
              std::string::npos);
  }
  Tensor ids = Tensor::empty({5, 333}, DType::I32);
  EXPECT_NE(error_of([&] { ops::swiglu_forward(ids, gate_up); }).find("`h` must be float32 or bfloat16"),
            std::string::npos);
}

// Attention takes each of q, k, v, out, dout, dq, dk, dv as F32 or BF16: bitwise the F32 op on
// the widened bf16 tensors, with bf16 outputs rounded.
TEST(Bf16Outputs, AttentionTakesEitherTypeForEachTensor) {
  const int64_t B = 2, T = 9, H = 4, Hkv = 2, hd = 8;
  Tensor q16 = to_bf16(randn({B, T, H, hd}, 41)), k16 = to_bf16(randn({B, T, Hkv, hd}, 42)),
         v = randn({B, T, Hkv, hd}, 43), dout = randn({B, T, H, hd}, 44);
  Tensor out = Tensor::empty({B, T, H, hd}), lse = Tensor::empty({B, H, T});
  ops::attention_forward(out, lse, to_f32(q16), to_f32(k16), v);
  Tensor out16 = Tensor::empty({B, T, H, hd}, DType::BF16), lse2 = Tensor::empty({B, H, T});
  ops::attention_forward(out16, lse2, q16, k16, v);
  EXPECT_TRUE(bitwise_equal(out16, to_bf16(out))) << "out";
  EXPECT_TRUE(bitwise_equal(lse2, lse)) << "lse";

  Tensor dq = Tensor::empty(q16.shape()), dk = Tensor::empty(k16.shape()), dv = Tensor::empty(v.shape());
  ops::attention_backward(dq, dk, dv, dout, to_f32(q16), to_f32(k16), v, to_f32(out16), lse);
  Tensor dq2 = Tensor::empty(q16.shape()), dk2 = Tensor::empty(k16.shape());
  Tensor dv16 = Tensor::empty(v.shape(), DType::BF16);
  ops::attention_backward(dq2, dk2, dv16, dout, q16, k16, v, out16, lse);
  EXPECT_TRUE(bitwise_equal(dq2, dq)) << "dq";
  EXPECT_TRUE(bitwise_equal(dk2, dk)) << "dk";
  EXPECT_TRUE(bitwise_equal(dv16, to_bf16(dv))) << "dv";
}

// ---- RMSNorm -----------------------------------------------------------------------------

// accumulate_dx (the residual stream's gradient): dx += the gradient, bitwise dx0 + the
// overwritten result, dg unchanged; dx_rounded gets the final dx rounded to bf16.
TEST(RMSNorm, BackwardAccumulateIsBitwiseDxPlusTheOverwrite) {
  Tensor x = randn({37, 70}, 51), g = randn({70}, 52, 0.3, 1.0), dy = randn({37, 70}, 53);
  Tensor y = Tensor::empty({37, 70}), rstd = Tensor::empty({37});
  ops::rmsnorm_forward(y, rstd, x, g, 1e-5f);
  Tensor dx = Tensor::empty({37, 70}), dg = Tensor::zeros({70});
  ops::rmsnorm_backward(dx, dg, dy, x, g, rstd);
  Tensor acc = randn({37, 70}, 54), want = clone(acc), dg2 = Tensor::zeros({70});
  ops::add_inplace(want, dx);
  Tensor rounded = Tensor::empty({37, 70}, DType::BF16);  // the final dx in bf16 alongside
  ops::rmsnorm_backward(acc, dg2, dy, x, g, rstd, true, rounded);
  EXPECT_TRUE(bitwise_equal(acc, want));
  EXPECT_TRUE(bitwise_equal(dg2, dg));
  Tensor want16 = Tensor::empty({37, 70}, DType::BF16);
  ops::convert(want16, want);
  EXPECT_TRUE(bitwise_equal(rounded, want16));
}

TEST(RMSNorm, ForwardAgainstReference) {
  const float eps = 1e-5f;
  for (auto [rows, C] : {std::pair<int64_t, int64_t>{1, 1}, {5, 7}, {300, 64}, {33, 300}}) {
    Tensor x = randn({rows, C}, 11, 2.0, 0.3), g = randn({C}, 12, 0.5, 1.0);
    Tensor y = Tensor::empty({rows, C}), rstd = Tensor::empty({rows});
    ops::rmsnorm_forward(y, rstd, x, g, eps);
    auto xd = to_double(x), gd = to_double(g);
    std::vector<double> yd(rows * C), rd(rows);
    for (int64_t r = 0; r < rows; ++r) {
      double ss = 0;
      for (int64_t c = 0; c < C; ++c) ss += xd[r * C + c] * xd[r * C + c];
      rd[r] = 1.0 / std::sqrt(ss / C + eps);
      for (int64_t c = 0; c < C; ++c) yd[r * C + c] = xd[r * C + c] * rd[r] * gd[c];
    }
    expect_close(y, yd, 1e-5, "rmsnorm y");
    expect_close(rstd, rd, 1e-5, "rmsnorm rstd");
  }
  // 3-D input: rows are all leading dims
  Tensor x = randn({2, 3, 8}, 13), g = randn({8}, 14), y = Tensor::empty({2, 3, 8});
  Tensor rstd = Tensor::empty({2, 3});
  ops::rmsnorm_forward(y, rstd, x, g, eps);
  Tensor bad_g = randn({7}, 15);
  const std::string msg = error_of([&] { ops::rmsnorm_forward(y, rstd, x, bad_g, eps); });
  EXPECT_NE(msg.find("[7]"), std::string::npos) << msg;
  EXPECT_NE(msg.find("[2, 3, 8]"), std::string::npos) << msg;
}

// ---- RoPE --------------------------------------------------------------------------------

TEST(RoPE, TableAndForwardAgainstReference) {
  const double theta = 500000.0;
  for (auto [T, hd] : {std::pair<int64_t, int64_t>{1, 2}, {7, 16}, {33, 64}}) {
    Tensor table = ops::rope_table(T, hd, theta);
    ASSERT_EQ(table.shape(), (Shape{T, hd}));
    std::vector<double> tref(T * hd);
    for (int64_t t = 0; t < T; ++t)
      for (int64_t i = 0; i < hd / 2; ++i) {
        const double a = t * std::pow(theta, -2.0 * i / hd);
        tref[t * hd + i] = std::cos(a);
        tref[t * hd + hd / 2 + i] = std::sin(a);
      }
    for (int64_t i = 0; i < T * hd; ++i)
      ASSERT_EQ(table.data<float>()[i], static_cast<float>(tref[i])) << i;

    const int64_t B = 2, nh = 3;
    Tensor x = randn({B, T, nh, hd}, 21);
    auto xd = to_double(x);
    std::vector<double> want(xd.size());
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t h = 0; h < nh; ++h)
          for (int64_t i = 0; i < hd / 2; ++i) {
            const int64_t o = ((b * T + t) * nh + h) * hd;
            const double c = static_cast<float>(tref[t * hd + i]);
            const double s = static_cast<float>(tref[t * hd + hd / 2 + i]);
            want[o + i] = xd[o + i] * c - xd[o + i + hd / 2] * s;
            want[o + i + hd / 2] = xd[o + i + hd / 2] * c + xd[o + i] * s;
          }
    ops::rope_forward(x, table);
    expect_close(x, want, 1e-6, "rope forward T=" + std::to_string(T));
  }
}

TEST(RoPE, LongerTableUsesItsFirstRowsAndShapesAreChecked) {
  Tensor big = ops::rope_table(50, 8, 10000.0), small = ops::rope_table(5, 8, 10000.0);
  Tensor x1 = randn({1, 5, 2, 8}, 31), x2 = clone(x1);
  ops::rope_forward(x1, big);
  ops::rope_forward(x2, small);
  EXPECT_TRUE(bitwise_equal(x1, x2));
  Tensor x3 = randn({1, 6, 2, 8}, 32);
  const std::string msg = error_of([&] { ops::rope_forward(x3, small); });
  EXPECT_NE(msg.find("[5, 8]"), std::string::npos) << msg;
  EXPECT_NE(error_of([&] { ops::rope_table(4, 7, 1e4); }).find("even"), std::string::npos);
}

// ---- SwiGLU ------------------------------------------------------------------------------

// gate_up [rows, 2F]: row r's gate is gate_up[r, :F], its up gate_up[r, F:].
TEST(SwiGLU, ForwardAgainstReferenceIncludingLargeInputs) {
  for (auto [rows, F] : {std::pair<int64_t, int64_t>{1, 1}, {3, 37}, {5, 1000}}) {
    Tensor gate_up = randn({rows, 2 * F}, 41, 3.0), h = Tensor::empty({rows, F});
    float* gp = gate_up.data<float>();
    if (F > 4) gp[0] = 100.0f, gp[1] = -100.0f, gp[2] = 30.0f, gp[3] = -30.0f;
    ops::swiglu_forward(h, gate_up);
    auto gu = to_double(gate_up);
    std::vector<double> want(rows * F);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < F; ++c) {
        const double z = gu[r * 2 * F + c], u = gu[r * 2 * F + F + c];
        want[r * F + c] = z / (1.0 + std::exp(-z)) * u;
      }
    const std::string what = "swiglu " + shape_str({rows, F});
    expect_close(h, want, 1e-6, what);
    for (int64_t i = 0; i < rows * F; ++i) ASSERT_TRUE(std::isfinite(h.data<float>()[i])) << what;
  }
  Tensor a = randn({2, 5}, 1), h = Tensor::empty({2, 3});
  EXPECT_NE(error_of([&] { ops::swiglu_forward(h, a); }).find("[2, 6]"), std::string::npos);
}

// ---- bias ----------------------------------------------------------------------------------

// Forward against y + b in double (and, for bf16 y, the fp32 sum rounded once); backward
// against Σ_r dy in double, accumulated onto db; shapes are checked.
TEST(Bias, AddAndBackwardAgainstReference) {
  for (auto [rows, n] : {std::pair<int64_t, int64_t>{1, 1}, {3, 70}, {41, 130}}) {
    const std::string what = "bias " + shape_str({rows, n});
    Tensor y = randn({rows, n}, 51), b = randn({n}, 52, 2.0), y0 = y.to(Device::CPU);
    ops::bias_add(y, b);
    std::vector<double> want(rows * n);
    for (int64_t i = 0; i < rows * n; ++i) want[i] = double(y0.data<float>()[i]) + b.data<float>()[i % n];
    expect_close(y, want, 1e-6, what + " add");
    Tensor y16 = Tensor::empty({rows, n}, DType::BF16);
    ops::convert(y16, y0);
    ops::bias_add(y16, b);
    for (int64_t i = 0; i < rows * n; ++i) {
      const float y_rounded = bf16_to_f32(f32_to_bf16(y0.data<float>()[i]));
      ASSERT_EQ(y16.data<uint16_t>()[i], f32_to_bf16(y_rounded + b.data<float>()[i % n]))
          << what << " bf16 add, element " << i;
    }

    Tensor dy = randn({rows, n}, 53), db = randn({n}, 54), db0 = db.to(Device::CPU);
    ops::bias_backward(db, dy);
    std::vector<double> want_db(n);
    for (int64_t j = 0; j < n; ++j) {
      want_db[j] = db0.data<float>()[j];
      for (int64_t r = 0; r < rows; ++r) want_db[j] += dy.data<float>()[r * n + j];
    }
    expect_close(db, want_db, 1e-5, what + " backward");
  }
  Tensor y = randn({4, 6}, 1), b = randn({5}, 2), db = Tensor::empty({6}, DType::BF16);
  EXPECT_NE(error_of([&] { ops::bias_add(y, b); }).find("[5] must be [n] for y [4, 6]"), std::string::npos);
  EXPECT_NE(error_of([&] { ops::bias_backward(db, y); }).find("`db` must be float32"), std::string::npos);
}

// ---- cross-entropy -----------------------------------------------------------------------

TEST(CrossEntropy, ForwardAgainstReferenceAndStable) {
  for (auto [rows, V] : {std::pair<int64_t, int64_t>{1, 1}, {3, 5}, {17, 1000}, {4, 3001}}) {
    for (double shift : {0.0, 1000.0, -1000.0}) {  // large logits must not overflow
      Tensor logits = randn({rows, V}, 51, 4.0, shift), tgt = randint({rows}, 52, V);
      Tensor ce = Tensor::empty({rows}), lse = Tensor::empty({rows});
      ops::cross_entropy_forward(ce, lse, logits, tgt);
      auto x = to_double(logits);
      std::vector<double> ce_ref(rows), lse_ref(rows), lse_c(rows);
      for (int64_t r = 0; r < rows; ++r) {
        double m = -1e300, z = 0;
        for (int64_t v = 0; v < V; ++v) m = std::max(m, x[r * V + v]);
        for (int64_t v = 0; v < V; ++v) z += std::exp(x[r * V + v] - m);
        lse_ref[r] = m + std::log(z);
        ce_ref[r] = lse_ref[r] - x[r * V + tgt.data<int32_t>()[r]];
        lse_c[r] = lse_ref[r] - shift;  // compare lse without the shift's magnitude
      }
      const std::string what = "rows=" + std::to_string(rows) + " V=" + std::to_string(V) +
                               " shift=" + std::to_string(shift);
      // ce is a difference of two numbers of size |shift|: float cannot do better than
      // eps·|shift| absolute there.
      if (shift == 0.0) {
        expect_close(ce, ce_ref, 1e-5, "ce " + what);
        expect_close(lse, lse_ref, 1e-5, "lse " + what);
      } else {
        for (int64_t r = 0; r < rows; ++r) {
          EXPECT_NEAR(ce.data<float>()[r], ce_ref[r], 2e-4) << what;
          EXPECT_NEAR(lse.data<float>()[r], lse_ref[r], 2e-4) << what;
        }
      }
    }
  }
}

// Vocabulary-parallel cross-entropy: two shards of the logits with shard-local targets (-1 on
// the other shard), lse merged, target logits summed, give the full-vocabulary ce, lse and
// gradient; the embedding of shard-local ids sums to the full lookup.
TEST(CrossEntropy, VocabularyShardsMergeToTheFullResult) {
  const int64_t R = 5, V = 8, half = V / 2;
  Tensor logits = randn({R, V}, 11), tgt = randint({R}, 12, V);
  Tensor ce = Tensor::empty({R}), lse = Tensor::empty({R});
  ops::cross_entropy_forward(ce, lse, logits, tgt);
  Tensor dfull = Tensor::empty({R, V});
  ops::cross_entropy_backward(dfull, logits, lse, tgt, 0.5f, 0.1f);

  Tensor parts = Tensor::empty({2, R}), tl = Tensor::zeros({R});
  std::vector<Tensor> shard(2), local(2);
  for (int s = 0; s < 2; ++s) {
    shard[s] = Tensor::empty({R, half});
    local[s] = Tensor::empty({R}, DType::I32);
    for (int64_t r = 0; r < R; ++r) {
      for (int64_t v = 0; v < half; ++v)
        shard[s].data<float>()[r * half + v] = logits.data<float>()[r * V + s * half + v];
      const int32_t t = tgt.data<int32_t>()[r] - int32_t(s * half);
      local[s].data<int32_t>()[r] = t >= 0 && t < half ? t : -1;
    }
    Tensor ce_s = Tensor::empty({R}), lse_s = parts.slice(s, s + 1).view({R}), tl_s = Tensor::empty({R});
    ops::cross_entropy_forward(ce_s, lse_s, shard[s], local[s]);
    ops::target_logits(tl_s, shard[s], local[s]);
    ops::add_inplace(tl, tl_s);
  }
  Tensor merged = Tensor::empty({R});
  ops::logsumexp_merge(merged, parts);
  for (int64_t r = 0; r < R; ++r) {
    EXPECT_NEAR(merged.data<float>()[r], lse.data<float>()[r], 1e-5);
    EXPECT_NEAR(merged.data<float>()[r] - tl.data<float>()[r], ce.data<float>()[r], 1e-5);
  }
  for (int s = 0; s < 2; ++s) {
    Tensor d = Tensor::empty({R, half});
    ops::cross_entropy_backward(d, shard[s], merged, local[s], 0.5f, 0.1f);
    for (int64_t r = 0; r < R; ++r)
      for (int64_t v = 0; v < half; ++v)
        EXPECT_NEAR(d.data<float>()[r * half + v], dfull.data<float>()[r * V + s * half + v], 1e-6);
  }
  // Embedding: each shard looks up its own ids (zero rows elsewhere); the sum is the full lookup.
  Tensor table = randn({V, 3}, 13), out = Tensor::empty({R, 3}), sum = Tensor::zeros({R, 3});
  ops::embedding_forward(out, tgt, table);
  for (int s = 0; s < 2; ++s) {
    Tensor rows = table.slice(s * half, (s + 1) * half), part = Tensor::empty({R, 3});
    ops::embedding_forward(part, local[s], rows);
    ops::add_inplace(sum, part);
  }
  for (int64_t i = 0; i < R * 3; ++i) EXPECT_EQ(sum.data<float>()[i], out.data<float>()[i]);
}

TEST(CrossEntropy, TargetsOutOfRangeAreRejected) {
  Tensor logits = randn({3, 5}, 1), tgt = randint({3}, 2, 5);
  Tensor ce = Tensor::empty({3}), lse = Tensor::empty({3});
  tgt.data<int32_t>()[1] = 5;
  const std::string msg = error_of([&] { ops::cross_entropy_forward(ce, lse, logits, tgt); });
  EXPECT_NE(msg.find("targets[1] = 5"), std::string::npos) << msg;
  tgt.data<int32_t>()[1] = -2;  // -1 is allowed: "on another vocabulary shard"
  EXPECT_NE(error_of([&] { ops::cross_entropy_backward(logits, logits, lse, tgt, 1, 0); })
                .find("out of range"),
            std::string::npos);
  Tensor tgt4 = randint({4}, 3, 5);
  EXPECT_NE(error_of([&] { ops::cross_entropy_forward(ce, lse, logits, tgt4); }).find("[4]"),
            std::string::npos);
}

// forward_backward is bitwise forward then backward, for every dlogits the backward takes:
// fp32 apart and in place, bf16 from fp32 logits, bf16 in place over bf16 logits (and
// targets of -1); it refuses what backward refuses.
TEST(CrossEntropy, ForwardBackwardIsBitwiseForwardThenBackward) {
  const int64_t R = 6, V = 300;  // V % 4 == 0 and rows wide enough for several threads' columns
  Tensor logits = randn({R, V}, 21, 3.0), tgt = randint({R}, 22, V);
  tgt.data<int32_t>()[2] = -1;
  const float ce_scale = 0.37f, z_scale = 2e-3f;
  for (DType logits_dtype : {DType::F32, DType::BF16}) {
    const Tensor x = logits_dtype == DType::BF16 ? to_bf16(logits) : logits;
    Tensor ce = Tensor::empty({R}), lse = Tensor::empty({R});
    ops::cross_entropy_forward(ce, lse, x, tgt);
    for (const bool in_place : {false, true}) {
      for (DType d_dtype : {DType::F32, DType::BF16}) {
        if (d_dtype == DType::F32 && logits_dtype == DType::BF16) continue;  // refused below
        if (in_place && d_dtype != logits_dtype) continue;
        const std::string what = std::string(logits_dtype == DType::BF16 ? "bf16" : "fp32") +
                                 " logits, " + (d_dtype == DType::BF16 ? "bf16" : "fp32") +
                                 " dlogits" + (in_place ? " in place" : "");
        Tensor want = Tensor::empty({R, V}, d_dtype);
        ops::cross_entropy_backward(want, x, lse, tgt, ce_scale, z_scale);
        Tensor xs = clone(x), ce2 = Tensor::empty({R}), lse2 = Tensor::empty({R});
        Tensor d = in_place ? xs : Tensor::empty({R, V}, d_dtype);
        ops::cross_entropy_forward_backward(ce2, lse2, d, xs, tgt, ce_scale, z_scale);
        EXPECT_TRUE(bitwise_equal(ce2, ce)) << what;
        EXPECT_TRUE(bitwise_equal(lse2, lse)) << what;
        EXPECT_TRUE(bitwise_equal(d, want)) << what;
      }
    }
  }
  Tensor ce = Tensor::empty({R}), lse = Tensor::empty({R}), d = Tensor::empty({R, V});
  Tensor l16 = to_bf16(logits);
  EXPECT_NE(error_of([&] { ops::cross_entropy_forward_backward(ce, lse, d, l16, tgt, 1, 0); })
                .find("cross_entropy_forward_backward: bf16 logits need bf16 dlogits"),
            std::string::npos);
  Tensor shifted = logits.flat(1, (R - 1) * V).view({R - 1, V}), rows = logits.slice(0, R - 1);
  Tensor ce5 = Tensor::empty({R - 1}), lse5 = Tensor::empty({R - 1}), t5 = tgt.flat(0, R - 1);
  EXPECT_NE(error_of([&] { ops::cross_entropy_forward_backward(ce5, lse5, shifted, rows, t5, 1, 0); })
                .find("dlogits must be logits itself or not overlap it"),
            std::string::npos);
  Tensor ce_short = Tensor::empty({R - 1});
  EXPECT_NE(error_of([&] { ops::cross_entropy_forward_backward(ce_short, lse, d, logits, tgt, 1, 0); })
                .find("ce [5]"),
            std::string::npos);
}

// ---- attention ---------------------------------------------------------------------------

struct AttnCase { int64_t B, T, H, Hkv, hd; };

TEST(Attention, ForwardAgainstNaiveReference) {
  const AttnCase cases[] = {{1, 1, 1, 1, 4},    {2, 7, 4, 4, 8},    {2, 65, 4, 2, 16},
                            {1, 130, 4, 1, 16}, {3, 64, 2, 2, 32},  {1, 33, 6, 3, 64},
                            {1, 200, 4, 2, 8}};
  uint64_t stream = 600;
  for (const AttnCase& c : cases) {
    Tensor q = randn({c.B, c.T, c.H, c.hd}, ++stream), k = randn({c.B, c.T, c.Hkv, c.hd}, ++stream);
    Tensor v = randn({c.B, c.T, c.Hkv, c.hd}, ++stream);
    Tensor out = Tensor::empty(q.shape()), lse = Tensor::empty({c.B, c.H, c.T});
    ops::attention_forward(out, lse, q, k, v);
    std::vector<double> out_ref, lse_ref;
    ref_attention(to_double(q), to_double(k), to_double(v), c.B, c.T, c.H, c.Hkv, c.hd, out_ref,
                  lse_ref);
    const std::string what = "B=" + std::to_string(c.B) + " T=" + std::to_string(c.T) +
                             " H=" + std::to_string(c.H) + " Hkv=" + std::to_string(c.Hkv) +
                             " hd=" + std::to_string(c.hd);
    expect_close(out, out_ref, 1e-5, "attention out " + what);
    expect_close(lse, lse_ref, 1e-5, "attention lse " + what);
  }
}

TEST(Attention, ShapeErrors) {
  Tensor q = randn({1, 4, 3, 8}, 1), k = randn({1, 4, 2, 8}, 2), v = randn({1, 4, 2, 8}, 3);
  Tensor out = Tensor::empty(q.shape()), lse = Tensor::empty({1, 3, 4});
  const std::string msg = error_of([&] { ops::attention_forward(out, lse, q, k, v); });
  EXPECT_NE(msg.find("multiple"), std::string::npos) << msg;
  Tensor k2 = randn({1, 5, 3, 8}, 4), v2 = randn({1, 5, 3, 8}, 5);
  EXPECT_NE(error_of([&] { ops::attention_forward(out, lse, q, k2, v2); }).find("[1, 5, 3, 8]"),
            std::string::npos);
  Tensor k3 = randn({1, 4, 3, 8}, 6), lse_bad = Tensor::empty({1, 3, 5});
  EXPECT_NE(error_of([&] { ops::attention_forward(out, lse_bad, q, k3, k3); }).find("lse"),
            std::string::npos);
  EXPECT_NE(error_of([&] { ops::attention_forward(out, lse, q, k3, k3, -1); })
                .find("attention_forward: window must be >= 0 (0: none), got -1"),
            std::string::npos);
}

// ---- embedding ---------------------------------------------------------------------------

TEST(Embedding, ForwardGathersRows) {
  const int64_t V = 50, d = 37, rows = 29;
  Tensor table = randn({V, d}, 71), ids = randint({rows}, 72, V), out = Tensor::empty({rows, d});
  ops::embedding_forward(out, ids, table);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < d; ++c)
      ASSERT_EQ(out.data<float>()[r * d + c], table.data<float>()[ids.data<int32_t>()[r] * d + c]);
  // A bf16 table: the rows of the table rounded to bf16, widened exactly; -1 a zero row.
  Tensor table16 = Tensor::empty({V, d}, DType::BF16), rounded = Tensor::empty({V, d});
  ops::convert(table16, table);
  ops::convert(rounded, table16);
  ids.data<int32_t>()[5] = -1;
  ops::embedding_forward(out, ids, table16);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < d; ++c) {
      const int32_t id = ids.data<int32_t>()[r];
      ASSERT_EQ(out.data<float>()[r * d + c], id < 0 ? 0.0f : rounded.data<float>()[id * d + c]);
    }
  ids.data<int32_t>()[3] = V;
  EXPECT_NE(error_of([&] { ops::embedding_forward(out, ids, table); }).find("ids[3] = 50"),
            std::string::npos);
}

// ---- AdamW ---------------------------------------------------------------------------------

TEST(AdamW, ThreeStepsAgainstReference) {
  const int64_t n = 1001;
  const float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
  Tensor p = randn({n}, 81), m = Tensor::zeros({n}), v = Tensor::zeros({n});
  auto pd = to_double(p);
  std::vector<double> md(n, 0.0), vd(n, 0.0);
  for (int64_t step = 1; step <= 3; ++step) {
    Tensor g = randn({n}, 82 + step, 0.1);
    ops::adamw_step(p, g, m, v, lr, b1, b2, eps, wd, step);
    auto gd = to_double(g);
    for (int64_t i = 0; i < n; ++i) {
      md[i] = b1 * md[i] + (1 - b1) * gd[i];
      vd[i] = b2 * vd[i] + (1 - b2) * gd[i] * gd[i];
      const double mh = md[i] / (1 - std::pow(double(b1), step));
      const double vh = vd[i] / (1 - std::pow(double(b2), step));
      pd[i] -= lr * (mh / (std::sqrt(vh) + eps) + wd * pd[i]);
    }
    expect_close(p, pd, 1e-6, "adamw p step " + std::to_string(step));
    expect_close(m, md, 1e-6, "adamw m");
    expect_close(v, vd, 1e-6, "adamw v");
  }
  Tensor g = randn({n}, 90);
  EXPECT_NE(error_of([&] { ops::adamw_step(p, g, m, v, lr, b1, b2, eps, wd, 0); }).find("step"),
            std::string::npos);
}

// ---- multi-tensor ops: bitwise the per-tensor ops -------------------------------------------

namespace {
// Sizes: 0 and 1 element, around the kernels' chunks (4096; the GPU's AdamW: 8192), one above
// the CPU kernels' OpenMP thresholds, and small odd ones.
const std::vector<int64_t> kMultiSizes = {0, 1, 7, 4095, 4096, 4097, 8193, 40001, 3, 300, 0, 129};
}  // namespace

// Each tensor at lr · lr_scale (µP's learning rates: 1 and a width ratio).
TEST(MultiTensor, AdamWStepMultiBitwiseEqualsPerTensorSteps) {
  const float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
  std::vector<Tensor> p1, m1, v1, p2, m2, v2;
  std::vector<bool> decay;
  std::vector<float> lr_scale;
  for (size_t t = 0; t < 3 * kMultiSizes.size(); ++t) {  // 36 tensors
    const int64_t n = kMultiSizes[t % kMultiSizes.size()];
    p1.push_back(randn({n}, 100 + t));
    m1.push_back(Tensor::zeros({n}));
    v1.push_back(Tensor::zeros({n}));
    p2.push_back(p1.back().to(Device::CPU));
    m2.push_back(Tensor::zeros({n}));
    v2.push_back(Tensor::zeros({n}));
    decay.push_back(t % 3 != 1);
    lr_scale.push_back(t % 4 == 2 ? 0.375f : 1.0f);
  }
  with_threads(2, [&] {
    for (int64_t step = 1; step <= 3; ++step) {
      std::vector<Tensor> g;
      std::vector<ops::AdamWTensors> ts;
      for (size_t t = 0; t < p1.size(); ++t) g.push_back(randn({p1[t].numel()}, 200 + 50 * step + t, 0.1));
      for (size_t t = 0; t < p1.size(); ++t) {
        ops::adamw_step(p1[t], g[t], m1[t], v1[t], lr * lr_scale[t], b1, b2, eps,
                        decay[t] ? wd : 0.0f, step);
        ts.push_back({&p2[t], &g[t], &m2[t], &v2[t], decay[t], lr_scale[t]});
      }
      ops::adamw_step_multi(ts, lr, b1, b2, eps, wd, step);
    }
  });
  for (size_t t = 0; t < p1.size(); ++t) {
    EXPECT_TRUE(bitwise_equal(p1[t], p2[t])) << "param " << t;
    EXPECT_TRUE(bitwise_equal(m1[t], m2[t])) << "m " << t;
    EXPECT_TRUE(bitwise_equal(v1[t], v2[t])) << "v " << t;
  }
  ops::adamw_step_multi({}, lr, b1, b2, eps, wd, 1);  // no tensors: nothing to do

  Tensor g5 = randn({5}, 300), g6 = randn({6}, 301);
  std::vector<ops::AdamWTensors> bad = {{&p2[1], &g6, &m2[1], &v2[1], true},
                                        {&p2[2], &g5, &m2[2], &v2[2], true}};  // sizes 1, 7
  const std::string e = error_of([&] { ops::adamw_step_multi(bad, lr, b1, b2, eps, wd, 1); });
  EXPECT_NE(e.find("tensors[0]"), std::string::npos) << e;
  EXPECT_NE(e.find("grad [6]"), std::string::npos) << e;
  EXPECT_NE(error_of([&] { ops::adamw_step_multi(bad, lr, b1, b2, eps, wd, 0); }).find("step"),
            std::string::npos);
  EXPECT_TRUE(bitwise_equal(p2[1], p1[1]));  // nothing written before the checks passed
}

// grad_scale (gradient clipping's) is bitwise a scale_inplace of the gradients before the step,
// and leaves the gradients as they were.
TEST(MultiTensor, AdamWGradScaleIsTheScaledGradient) {
  const float lr = 1e-2f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f, scale = 0.37f;
  const int64_t n = 1001;
  Tensor p1 = randn({n}, 400), m1 = randn({n}, 401, 0.01), v1 = randn({n}, 402, 0.01);
  for (int64_t i = 0; i < n; ++i) v1.data<float>()[i] *= v1.data<float>()[i];
  Tensor p2 = p1.to(Device::CPU), m2 = m1.to(Device::CPU), v2 = v1.to(Device::CPU);
  for (int64_t step = 1; step <= 2; ++step) {
    Tensor g = randn({n}, 403 + step), scaled = g.to(Device::CPU);
    const Tensor g0 = g.to(Device::CPU);
    ops::scale_inplace(scaled, scale);
    ops::adamw_step_multi({{&p1, &scaled, &m1, &v1, true}}, lr, b1, b2, eps, wd, step);
    ops::adamw_step_multi({{&p2, &g, &m2, &v2, true}}, lr, b1, b2, eps, wd, step, scale);
    EXPECT_TRUE(bitwise_equal(g, g0));
  }
  EXPECT_TRUE(bitwise_equal(p1, p2));
  EXPECT_TRUE(bitwise_equal(m1, m2));
  EXPECT_TRUE(bitwise_equal(v1, v2));
}

TEST(MultiTensor, SumSquaresMultiBitwiseEqualsLoopOverSumSquares) {
  std::vector<Tensor> xs;
  for (size_t t = 0; t < 3 * kMultiSizes.size(); ++t)
    xs.push_back(randn({kMultiSizes[t % kMultiSizes.size()]}, 400 + t, 2.0, 0.5));
  for (int threads : {1, 2}) {
    with_threads(threads, [&] {
      double loop = 0;  // how clip_grad_norm added the tensors up before
      for (const Tensor& x : xs) loop += ops::sum_squares(x);
      const double got = ops::sum_squares_multi(xs);
      EXPECT_EQ(std::memcmp(&got, &loop, sizeof got), 0) << got << " vs " << loop;
    });
  }
  EXPECT_EQ(ops::sum_squares_multi({}), 0.0);
  std::vector<Tensor> grads = {xs[5], xs[7]};
  double norm2 = 0;
  for (const Tensor& g : grads) norm2 += ops::sum_squares(g);
  const double norm = clip_grad_norm(grads, 0.0);  // no clipping: only the norm
  EXPECT_EQ(norm, std::sqrt(norm2));
  xs[2] = Tensor::zeros({4}, DType::I32);
  const std::string e = error_of([&] { ops::sum_squares_multi(xs); });
  EXPECT_NE(e.find("xs[2]"), std::string::npos) << e;
}

// ---- determinism ---------------------------------------------------------------------------

// Forward ops twice with 2 threads: bitwise equal; and equal to the 1-thread result where the
// kernels promise thread-count independence (all the fused ones do).
TEST(Determinism, FusedForwardOpsBitwiseRepeatableAndThreadCountIndependent) {
  const int64_t B = 2, T = 97, H = 4, Hkv = 2, hd = 32, V = 513, d = 64;
  Tensor q = randn({B, T, H, hd}, 1), k = randn({B, T, Hkv, hd}, 2), v = randn({B, T, Hkv, hd}, 3);
  Tensor logits = randn({B * T, V}, 4, 3.0), tgt = randint({B * T}, 5, V);
  Tensor x = randn({B * T, d}, 6), g = randn({d}, 7), gate_up = randn({B * T, 2 * d}, 8);
  Tensor table = ops::rope_table(T, hd, 1e4);
  auto run = [&](int threads) {
    std::vector<Tensor> outs;
    with_threads(threads, [&] {
      Tensor out = Tensor::empty(q.shape()), lse = Tensor::empty({B, H, T});
      ops::attention_forward(out, lse, q, k, v);
      Tensor ce = Tensor::empty({B * T}), l2 = Tensor::empty({B * T});
      ops::cross_entropy_forward(ce, l2, logits, tgt);
      Tensor y = Tensor::empty(x.shape()), rstd = Tensor::empty({B * T});
      ops::rmsnorm_forward(y, rstd, x, g, 1e-5f);
      Tensor h = Tensor::empty(x.shape());
      ops::swiglu_forward(h, gate_up);
      Tensor qr = clone(q);
      ops::rope_forward(qr, table);
      outs = {out, lse, ce, l2, y, rstd, h, qr};
    });
    return outs;
  };
  auto a = run(2), b = run(2), c = run(1);
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(bitwise_equal(a[i], b[i])) << "output " << i;
    EXPECT_TRUE(bitwise_equal(a[i], c[i])) << "output " << i << " (1 vs 2 threads)";
  }
}
