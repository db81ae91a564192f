// Every kernel of core/cuda/kernels.h (except first_id_out_of_range) against the CPU
// kernel of the same name (core/cpu/kernels.h; for the cuDNN attention, the plain one) on random inputs: several shapes, including odd
// sizes, rows not a multiple of the block size, V not a multiple of 32, GQA (H/Hkv = 2) and T
// not a multiple of the attention tiles. Agreement: ‖gpu − cpu‖₂ / ‖cpu‖₂ ≤ 1e-5 (bf16, the
// embedding gradient and the multi-tensor sum of squares: bitwise; multi-tensor AdamW: bitwise
// against the per-tensor CUDA kernel). Determinism: every GPU kernel runs twice on the same
// inputs and must give bitwise-equal results.
// Exits with 77 (ctest: skipped) when no GPU is visible.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "core/cpu/kernels.h"
#include "core/cuda/kernels.h"
#include "core/cuda/runtime.h"
#include "core/random.h"

using namespace retort;

namespace {

constexpr uint64_t kSeed = 4321;
constexpr double kTol = 1e-5;

// ---- host data --------------------------------------------------------------------------------

// N(0, scale²) + shift, a pure function of (stream, index).
std::vector<float> randn(size_t n, uint64_t stream, double scale = 1.0, double shift = 0.0) {
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = float(shift + scale * rng::normal(kSeed, stream, i));
  return v;
}

// Uniform ints in [0, n); a fraction `minus_one` of them replaced by −1.
std::vector<int32_t> randint(size_t count, uint64_t stream, int32_t n, double minus_one = 0.0) {
  std::vector<int32_t> v(count);
  for (size_t i = 0; i < count; ++i) {
    v[i] = int32_t(rng::uniform(kSeed, stream, 2 * i) * n) % n;
    if (rng::uniform(kSeed, stream, 2 * i + 1) < minus_one) v[i] = -1;
  }
  return v;
}

// ‖got − ref‖₂ / max(‖ref‖₂, floor): relative error, against `floor` where the true value is
// zero or nearly so (then both sides are rounding residue). NaN anywhere gives NaN, which fails
// every comparison.
void expect_close(const std::vector<float>& got, const std::vector<float>& ref,
                  const std::string& what, double tol = kTol, double floor = 0) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = double(got[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * ref[i];
  }
  const double e = std::sqrt(num) / std::max({std::sqrt(den), floor, 1e-300});
  EXPECT_TRUE(e <= tol) << what << ": relative error " << e << " > " << tol << " (|got - ref| "
                        << std::sqrt(num) << ", |ref| " << std::sqrt(den) << ")";
}

template <class T>
bool bitwise_equal(const std::vector<T>& a, const std::vector<T>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(T)) == 0;
}

#define EXPECT_BITWISE(a, b, what) EXPECT_TRUE(bitwise_equal(a, b)) << what << ": not bitwise equal"

// ---- device buffers ---------------------------------------------------------------------------
// Transfers are queued on the compute stream (where every kernel runs) and downloads wait for
// it, so host data and kernels are ordered without relying on the legacy default stream.

template <class T>
class Dev {
 public:
  explicit Dev(size_t n) : n_(n) {
    RETORT_CUDA_CHECK(cudaMalloc(&p_, std::max<size_t>(n, 1) * sizeof(T)));
  }
  explicit Dev(const std::vector<T>& h) : Dev(h.size()) { upload(h); }
  ~Dev() { cudaFree(p_); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
  T* get() const { return p_; }
  operator T*() const { return p_; }
  void upload(const std::vector<T>& h) {
    ASSERT_EQ(h.size(), n_);
    RETORT_CUDA_CHECK(cudaMemcpyAsync(p_, h.data(), n_ * sizeof(T), cudaMemcpyHostToDevice,
                                      cuda::compute_stream()));
    RETORT_CUDA_CHECK(cudaStreamSynchronize(cuda::compute_stream()));
  }
  std::vector<T> download() const {
    std::vector<T> h(n_);
    RETORT_CUDA_CHECK(cudaMemcpyAsync(h.data(), p_, n_ * sizeof(T), cudaMemcpyDeviceToHost,
                                      cuda::compute_stream()));
    RETORT_CUDA_CHECK(cudaStreamSynchronize(cuda::compute_stream()));
    return h;
  }

 private:
  T* p_ = nullptr;
  size_t n_;
};

std::string str(std::initializer_list<int64_t> xs) {
  std::string s = "[";
  for (int64_t x : xs) {
    if (s.size() > 1) s += ",";
    s += std::to_string(x);
  }
  return s + "]";
}

}  // namespace

// ---- elementwise --------------------------------------------------------------------------------

// A failed CUDA call becomes an Error naming the file, line, call and CUDA's error name.
TEST(CudaRuntime, FailedCallNamesItsErrorFileAndLine) {
  std::string what;
  try {
    RETORT_CUDA_CHECK(cudaSetDevice(-1));
  } catch (const Error& e) {
    what = e.what();
  }
  EXPECT_NE(what.find("test_cuda_kernels.cpp:"), std::string::npos) << what;
  EXPECT_NE(what.find("CUDA error cudaErrorInvalidDevice"), std::string::npos) << what;
  EXPECT_NE(what.find("in `cudaSetDevice(-1)`"), std::string::npos) << what;
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidDevice);  // sticky until read, as CUDA's
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
}

TEST(CudaElementwise, FillAddScaleCopyMatchCpu) {
  uint64_t stream = 10;
  for (int64_t n : {1LL, 1000LL, 257LL * 1024 + 3, 3LL * 1000 * 1000 + 1}) {
    const std::vector<float> x = randn(n, ++stream), y0 = randn(n, ++stream);
    Dev<float> dx(x), dy(y0);
    std::vector<float> y = y0;
    cpu::add_inplace(y.data(), x.data(), n, -0.75f);
    cpu::scale_inplace(y.data(), n, 1.5f);
    cuda::add_inplace(dy, dx, n, -0.75f);
    cuda::scale_inplace(dy, n, 1.5f);
    expect_close(dy.download(), y, "add+scale n=" + std::to_string(n), 1e-6);

    std::vector<float> f(n);
    cpu::fill(f.data(), n, 0.3f);
    cuda::fill(dy, n, 0.3f);
    EXPECT_BITWISE(dy.download(), f, "fill n=" + std::to_string(n));

    cuda::copy_bytes(dy, dx, n * int64_t(sizeof(float)));
    EXPECT_BITWISE(dy.download(), x, "copy n=" + std::to_string(n));
  }
  // Overlapping ranges: memmove semantics, both directions.
  const int64_t n = 100003;
  const std::vector<float> x = randn(n, 77);
  for (int64_t shift : {-17LL, 17LL}) {
    Dev<float> d(x);
    std::vector<float> h = x;
    const int64_t len = n - 17, src = shift > 0 ? 0 : 17, dst = shift > 0 ? 17 : 0;
    cpu::copy_bytes(h.data() + dst, h.data() + src, len * 4);
    cuda::copy_bytes(d.get() + dst, d.get() + src, len * 4);
    EXPECT_BITWISE(d.download(), h, "overlapping copy shift " + std::to_string(shift));
  }
}

TEST(CudaElementwise, SumSquaresMatchesCpuAndIsDeterministic) {
  uint64_t stream = 20;
  EXPECT_EQ(cuda::sum_squares(nullptr, 0), 0.0);
  for (int64_t n : {1LL, 4095LL, 4097LL, 1000003LL, 9LL * 1000 * 1000 + 7}) {
    const std::vector<float> x = randn(n, ++stream, 2.0, 0.5);
    Dev<float> dx(x);
    const double ref = cpu::sum_squares(x.data(), n);
    const double a = cuda::sum_squares(dx, n), b = cuda::sum_squares(dx, n);
    EXPECT_NEAR(a, ref, 1e-10 * ref) << "n=" << n;
    EXPECT_EQ(std::memcmp(&a, &b, sizeof a), 0) << "n=" << n << ": not deterministic";
  }
}

TEST(CudaElementwise, Bf16ConversionsBitwiseEqualCpu) {
  std::vector<uint32_t> bits = {
      0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u,  // ±0, ±inf
      0x7fc00000u, 0xffc00001u, 0x7f800001u, 0x7fbfffffu,  // quiet/signalling NaNs, payloads
      0x00000001u, 0x807fffffu, 0x00008000u, 0x00018000u,  // denormals, halfway cases
      0x3f808000u, 0x3f818000u, 0x3f80ffffu, 0x7f7fffffu,  // ties to even, max float
      0x7f7f8000u, 0xff7fffffu, 0x3f7fffffu, 0x4049fdb0u};
  for (uint32_t i = 0; i < 100000; ++i)  // random bit patterns
    bits.push_back(uint32_t(rng::hash(kSeed, 30, i)));
  std::vector<float> src(bits.size());
  std::memcpy(src.data(), bits.data(), bits.size() * 4);
  const int64_t n = int64_t(src.size());
  std::vector<uint16_t> ref(n);
  cpu::f32_to_bf16(ref.data(), src.data(), n);
  Dev<float> dsrc(src);
  Dev<uint16_t> dbf(n);
  cuda::f32_to_bf16(dbf, dsrc, n);
  EXPECT_BITWISE(dbf.download(), ref, "f32_to_bf16");
  // Views that are not 16-byte aligned (the one-by-one path) and odd lengths (its tail).
  for (int64_t off : {1, 2, 3, 4}) {
    const int64_t m = n - off - 5;
    std::vector<uint16_t> part(m);
    cuda::f32_to_bf16(dbf.get() + off, dsrc.get() + off, m);
    const std::vector<uint16_t> got = dbf.download();
    std::copy(got.begin() + off, got.begin() + off + m, part.begin());
    EXPECT_BITWISE(part, std::vector<uint16_t>(ref.begin() + off, ref.begin() + off + m),
                   "f32_to_bf16 at offset " + std::to_string(off));
  }

  std::vector<uint16_t> all(65536);
  std::iota(all.begin(), all.end(), uint16_t(0));
  std::vector<float> back(65536);
  cpu::bf16_to_f32(back.data(), all.data(), 65536);
  Dev<uint16_t> dall(all);
  Dev<float> dback(65536);
  cuda::bf16_to_f32(dback, dall, 65536);
  EXPECT_BITWISE(dback.download(), back, "bf16_to_f32 (all 65536 patterns)");
}

// ---- matmul (cuBLASLt) ----------------------------------------------------------------------------
// y = alpha·op(a)op(b) + beta·y for all four transpose combinations and odd shapes, fp32 and bf16
// operands, against the CPU (bf16: its exact emulation; both sum exact bf16 products in fp32).

TEST(CudaMatmul, AllTransposesAndBf16MatchCpu) {
  uint64_t stream = 700;
  for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{1, 1, 1}, {7, 5, 3}, {33, 17, 65},
                         {64, 96, 128}}) {
    for (bool ta : {false, true})
      for (bool tb : {false, true})
        for (bool bf16 : {false, true}) {
          const std::vector<float> a = randn(M * K, ++stream), b = randn(K * N, ++stream),
                                   y0 = randn(M * N, ++stream);
          std::vector<float> y = y0;
          Dev<float> da(a), db(b), dy(y0);
          const float alpha = 0.5f, beta = ta ? 1.0f : 0.0f;
          if (bf16) {
            cpu::matmul_bf16(y.data(), a.data(), ta, b.data(), tb, M, N, K, alpha, beta);
            cuda::matmul_bf16(dy, da, ta, db, tb, M, N, K, alpha, beta);
          } else {
            cpu::matmul(y.data(), a.data(), ta, b.data(), tb, M, N, K, alpha, beta);
            cuda::matmul(dy, da, ta, db, tb, M, N, K, alpha, beta);
          }
          expect_close(dy.download(), y,
                       "matmul " + str({M, N, K, ta, tb, bf16}), 1e-6);
          if (!bf16) continue;
          // operands rounded beforehand: bitwise the product above
          std::vector<uint16_t> a16(a.size()), b16(b.size());
          cpu::f32_to_bf16(a16.data(), a.data(), int64_t(a.size()));
          cpu::f32_to_bf16(b16.data(), b.data(), int64_t(b.size()));
          Dev<uint16_t> da16(a16), db16(b16);
          Dev<float> dy16(y0);
          cuda::matmul_bf16_rounded(dy16, da16, ta, db16, tb, M, N, K, alpha, beta);
          EXPECT_BITWISE(dy16.download(), dy.download(), "matmul_bf16_rounded " + str({M, N, K, ta, tb}));
          // bf16 output (beta = 0): the fp32 result rounded once; cuBLASLt may pick another
          // algorithm for it (another summation order), so within one bf16 step of the rounded
          // fp32 product, and bitwise on the simulator
          Dev<float> dy32(M * N);
          Dev<uint16_t> dyb(M * N);
          cuda::matmul_bf16_rounded(dy32, da16, ta, db16, tb, M, N, K, alpha, 0.0f);
          cuda::matmul_bf16_rounded(dyb, da16, ta, db16, tb, M, N, K, alpha);
          const std::vector<float> y32 = dy32.download();
          std::vector<float> yb(y32.size());
          cpu::bf16_to_f32(yb.data(), dyb.download().data(), int64_t(yb.size()));
          for (size_t i = 0; i < y32.size(); ++i)
            ASSERT_LE(std::abs(yb[i] - y32[i]), std::abs(y32[i]) * (1.0f / 128))
                << "bf16-output matmul " << str({M, N, K, ta, tb}) << " element " << i;
        }
  }
}

// K = 0, the empty sum, as on the CPU: y = beta · y (beta 0 overwrites y, NaN included), a
// bf16 output +0, and matmul_add's y = c; no operand is read (null here).
TEST(CudaMatmul, EmptySumsGiveBetaTimesYOrC) {
  const int64_t M = 5, N = 7;
  const std::vector<float> y0 = randn(M * N, 970), c = randn(M * N, 971);
  std::vector<float> want(M * N, 0.0f), cpu_y = y0;
  Dev<float> dy(std::vector<float>(M * N, std::numeric_limits<float>::quiet_NaN()));
  Dev<float> dy2(y0), dc(c), dyc(M * N);
  Dev<uint16_t> dy16(M * N);
  cuda::matmul(dy, nullptr, false, nullptr, true, M, N, 0, 1.0f, 0.0f);
  EXPECT_BITWISE(dy.download(), want, "K = 0, beta 0");
  cuda::matmul(dy2, nullptr, false, nullptr, true, M, N, 0, 1.0f, 2.0f);
  cpu::matmul(cpu_y.data(), nullptr, false, nullptr, true, M, N, 0, 1.0f, 2.0f);
  EXPECT_BITWISE(dy2.download(), cpu_y, "K = 0, beta 2");
  cuda::matmul_bf16_rounded(static_cast<uint16_t*>(dy16), nullptr, false, nullptr, true, M, N, 0, 1.0f);
  EXPECT_BITWISE(dy16.download(), std::vector<uint16_t>(M * N, 0), "K = 0, bf16 out");
  cuda::matmul_add(dyc, dc, static_cast<const float*>(nullptr), false, nullptr, true, M, N, 0);
  EXPECT_BITWISE(dyc.download(), c, "K = 0, matmul_add");
}

// y = c + op(a) op(b) with C and D apart (the residual read where y is written), fp32 and bf16
// operands, against the CPU; in place (c = y) too.
TEST(CudaMatmul, AddReadsCApartFromD) {
  const int64_t M = 37, N = 19, K = 50;
  const std::vector<float> a = randn(M * K, 960), b = randn(N * K, 961), c = randn(M * N, 962);
  std::vector<uint16_t> a16(a.size()), b16(b.size());
  cpu::f32_to_bf16(a16.data(), a.data(), int64_t(a.size()));
  cpu::f32_to_bf16(b16.data(), b.data(), int64_t(b.size()));
  std::vector<float> y(M * N), y16(M * N);
  cpu::matmul_add(y.data(), c.data(), a.data(), false, b.data(), true, M, N, K);
  cpu::matmul_add(y16.data(), c.data(), a16.data(), false, b16.data(), true, M, N, K);
  Dev<float> da(a), db(b), dc(c), dy(M * N), dy16(M * N), dcc(c);
  Dev<uint16_t> da16(a16), db16(b16);
  cuda::matmul_add(dy, dc, da, false, db, true, M, N, K);
  cuda::matmul_add(dy16, dc, da16, false, db16, true, M, N, K);
  cuda::matmul_add(dcc, dcc, da16, false, db16, true, M, N, K);
  expect_close(dy.download(), y, "matmul_add fp32", 1e-6);
  expect_close(dy16.download(), y16, "matmul_add bf16", 1e-6);
  expect_close(dcc.download(), y16, "matmul_add in place", 1e-6);
  EXPECT_BITWISE(dc.download(), c, "matmul_add leaves c");
}

// Operands at any element offset, as views into the flat weights are: each plan is made for
// the alignments its operands have (cuBLASLt assumes 256 bytes unless told, and an algorithm
// chosen for that refuses a less aligned operand). a, b, c and y each shifted by a different
// number of elements into its buffer, fp32 and bf16 operands, fp32 and bf16 output, against
// the CPU.
TEST(CudaMatmul, OperandsAtAnyOffsetMatchCpu) {
  const int64_t M = 24, N = 40, K = 32;
  const std::vector<float> a = randn(M * K, 990), b = randn(N * K, 991), c = randn(M * N, 992);
  std::vector<uint16_t> a16(a.size()), b16(b.size());
  cpu::f32_to_bf16(a16.data(), a.data(), int64_t(a.size()));
  cpu::f32_to_bf16(b16.data(), b.data(), int64_t(b.size()));
  std::vector<float> want(M * N), want16(M * N);
  cpu::matmul_add(want.data(), c.data(), a.data(), false, b.data(), true, M, N, K);
  cpu::matmul_add(want16.data(), c.data(), a16.data(), false, b16.data(), true, M, N, K);
  // v placed `shift` elements into a device buffer; what comes back is v's part of it.
  const auto shifted = [](const auto& v, int64_t shift) {
    auto padded = v;
    padded.insert(padded.begin(), size_t(shift), typename std::decay_t<decltype(v)>::value_type{});
    return padded;
  };
  const auto part = [](const auto& v, int64_t shift) {
    return std::decay_t<decltype(v)>(v.begin() + shift, v.end());
  };
  for (int64_t s : {0, 1, 2, 3, 8, 64}) {
    const int64_t sa = s, sb = (s + 1) % 5, sc = (s + 2) % 7, sy = (s + 3) % 9;
    const std::string at = " at offsets " + str({sa, sb, sc, sy});
    Dev<float> da(shifted(a, sa)), db(shifted(b, sb)), dc(shifted(c, sc));
    Dev<uint16_t> da16(shifted(a16, sa)), db16(shifted(b16, sb));
    Dev<float> dy(size_t(sy + M * N)), dy16(size_t(sy + M * N));
    Dev<uint16_t> dyb(size_t(sy + M * N));
    cuda::matmul_add(dy.get() + sy, dc.get() + sc, da.get() + sa, false, db.get() + sb, true, M, N, K);
    cuda::matmul_add(dy16.get() + sy, dc.get() + sc, da16.get() + sa, false, db16.get() + sb, true,
                     M, N, K);
    cuda::matmul_bf16_rounded(dyb.get() + sy, da16.get() + sa, false, db16.get() + sb, true, M, N,
                              K, 1.0f);
    expect_close(part(dy.download(), sy), want, "fp32 matmul_add" + at, 1e-6);
    expect_close(part(dy16.download(), sy), want16, "bf16 matmul_add" + at, 1e-6);
    const std::vector<uint16_t> yb = part(dyb.download(), sy);
    std::vector<float> got(yb.size()), product(want16.size());
    cpu::bf16_to_f32(got.data(), yb.data(), int64_t(yb.size()));
    for (size_t i = 0; i < product.size(); ++i) product[i] = want16[i] - c[i];
    expect_close(got, product, "bf16-output matmul" + at, 1e-2);
  }
}

// ---- RMSNorm ----------------------------------------------------------------------------------

TEST(CudaRMSNorm, ForwardBackwardMatchCpuAndAreDeterministic) {
  const int64_t shapes[][2] = {{1, 7},      {37, 64},   {300, 1000}, {129, 4096},
                               {257, 33},   {1000, 768}, {9000, 64}};  // qk-norm-like: > 256 dg partials
  uint64_t stream = 100;
  for (const auto& s : shapes) {
    const int64_t rows = s[0], C = s[1];
    const std::string what = "rmsnorm " + str({rows, C});
    const std::vector<float> x = randn(rows * C, ++stream, 1.5), g = randn(C, ++stream, 0.3, 1.0);
    const std::vector<float> dy = randn(rows * C, ++stream), dg0 = randn(C, ++stream);
    std::vector<float> y(rows * C), rstd(rows), dx(rows * C, NAN), dg = dg0;
    cpu::rmsnorm_forward(y.data(), rstd.data(), x.data(), g.data(), rows, C, 1e-5f);
    cpu::rmsnorm_backward(dx.data(), dg.data(), dy.data(), x.data(), g.data(), rstd.data(), rows,
                          C, false, nullptr);

    Dev<float> d_x(x), d_g(g), d_dy(dy), d_y(rows * C), d_rstd(rows), d_dx(dx), d_dg(dg0);
    cuda::rmsnorm_forward(d_y, d_rstd, d_x, d_g, rows, C, 1e-5f);
    const std::vector<float> y1 = d_y.download(), rstd1 = d_rstd.download();
    expect_close(y1, y, what + " y");
    expect_close(rstd1, rstd, what + " rstd");
    // Backward from the CPU's rstd, so that only the backward kernel is compared.
    d_rstd.upload(rstd);
    cuda::rmsnorm_backward(d_dx, d_dg, d_dy, d_x, d_g, d_rstd, rows, C, false, nullptr);
    const std::vector<float> dx1 = d_dx.download(), dg1 = d_dg.download();
    expect_close(dx1, dx, what + " dx");
    expect_close(dg1, dg, what + " dg (accumulated)");

    cuda::rmsnorm_forward(d_y, d_rstd, d_x, d_g, rows, C, 1e-5f);
    EXPECT_BITWISE(d_y.download(), y1, what + " y rerun");
    EXPECT_BITWISE(d_rstd.download(), rstd1, what + " rstd rerun");
    d_rstd.upload(rstd);
    d_dg.upload(dg0);
    cuda::rmsnorm_backward(d_dx, d_dg, d_dy, d_x, d_g, d_rstd, rows, C, false, nullptr);
    EXPECT_BITWISE(d_dx.download(), dx1, what + " dx rerun");
    EXPECT_BITWISE(d_dg.download(), dg1, what + " dg rerun");
    // accumulate_dx: dx += the gradient, bitwise dx0 + the overwritten result
    std::vector<float> dx_sum = randn(rows * C, ++stream), want = dx_sum;
    for (size_t i = 0; i < want.size(); ++i) want[i] += dx1[i];
    d_dx.upload(dx_sum);
    Dev<uint16_t> d_rounded(rows * C);  // and its final value rounded to bf16 alongside
    cuda::rmsnorm_backward(d_dx, d_dg, d_dy, d_x, d_g, d_rstd, rows, C, true, d_rounded);
    EXPECT_BITWISE(d_dx.download(), want, what + " dx accumulated");
    std::vector<uint16_t> want16(want.size());
    cpu::f32_to_bf16(want16.data(), want.data(), int64_t(want.size()));
    EXPECT_TRUE(d_rounded.download() == want16) << what << " dx rounded";
  }
}

// ---- RoPE -------------------------------------------------------------------------------------


// qk-norm with RoPE in one pass each way, against the CPU (fp32; bf16 x, dy in and y, dx out),
// rows [B, T, nh] at head dims 64 and 128, and bitwise on a rerun.
TEST(CudaRMSNormRoPE, ForwardBackwardMatchCpuAndAreDeterministic) {
  uint64_t stream = 980;
  for (auto [B, T, nh, hd] : {std::array<int64_t, 4>{2, 37, 5, 64}, {1, 9, 3, 128}, {3, 4, 2, 8}}) {
    const int64_t rows = B * T * nh, n = rows * hd;
    const std::string what = "rmsnorm_rope " + str({B, T, nh, hd});
    std::vector<float> table(size_t(T * hd));
    cpu::rope_table(table.data(), T, hd, 10000.0);
    std::vector<float> x = randn(n, ++stream, 1.5), dy = randn(n, ++stream);
    const std::vector<float> g = randn(hd, ++stream, 0.3, 1.0), dg0 = randn(hd, ++stream);
    std::vector<float> y(n), rstd(rows), dx(n), dg = dg0;
    cpu::rmsnorm_rope_forward(y.data(), rstd.data(), x.data(), nh * hd, g.data(), table.data(), B,
                              T, nh, hd, 1e-5f);
    cpu::rmsnorm_rope_backward(dx.data(), nh * hd, dg.data(), dy.data(), x.data(), nh * hd,
                               g.data(), rstd.data(), table.data(), B, T, nh, hd);
    Dev<float> d_x(x), d_dy(dy), d_g(g), d_t(table), d_y(n), d_rstd(rows), d_dx(n), d_dg(dg0);
    cuda::rmsnorm_rope_forward(d_y.get(), d_rstd.get(), d_x.get(), nh * hd, d_g.get(), d_t.get(), B,
                               T, nh, hd, 1e-5f);
    const std::vector<float> y1 = d_y.download();
    expect_close(y1, y, what + " y");
    expect_close(d_rstd.download(), rstd, what + " rstd");
    d_rstd.upload(rstd);  // only the backward kernel compared
    cuda::rmsnorm_rope_backward(d_dx.get(), nh * hd, d_dg.get(), d_dy.get(), d_x.get(), nh * hd,
                                d_g.get(), d_rstd.get(), d_t.get(), B, T, nh, hd);
    const std::vector<float> dx1 = d_dx.download(), dg1 = d_dg.download();
    expect_close(dx1, dx, what + " dx");
    expect_close(dg1, dg, what + " dg (accumulated)");
    cuda::rmsnorm_rope_forward(d_y.get(), d_rstd.get(), d_x.get(), nh * hd, d_g.get(), d_t.get(), B,
                               T, nh, hd, 1e-5f);
    EXPECT_BITWISE(d_y.download(), y1, what + " y rerun");
    d_rstd.upload(rstd);
    d_dg.upload(dg0);
    cuda::rmsnorm_rope_backward(d_dx.get(), nh * hd, d_dg.get(), d_dy.get(), d_x.get(), nh * hd,
                                d_g.get(), d_rstd.get(), d_t.get(), B, T, nh, hd);
    EXPECT_BITWISE(d_dx.download(), dx1, what + " dx rerun");
    EXPECT_BITWISE(d_dg.download(), dg1, what + " dg rerun");

    // bf16 x and dy (the products' and cuDNN's outputs), bf16 y and dx
    std::vector<uint16_t> x16(n), dy16(n);
    cpu::f32_to_bf16(x16.data(), x.data(), n);
    cpu::f32_to_bf16(dy16.data(), dy.data(), n);
    std::vector<uint16_t> y16(n), dx16(n);
    std::vector<float> dg16 = dg0;
    cpu::rmsnorm_rope_forward(y16.data(), rstd.data(), x16.data(), nh * hd, g.data(), table.data(),
                              B, T, nh, hd, 1e-5f);
    cpu::rmsnorm_rope_backward(dx16.data(), nh * hd, dg16.data(), dy16.data(), x16.data(), nh * hd,
                               g.data(), rstd.data(), table.data(), B, T, nh, hd);
    Dev<uint16_t> d_x16(x16), d_dy16(dy16), d_y16(n), d_dx16(n);
    d_dg.upload(dg0);
    cuda::rmsnorm_rope_forward(d_y16.get(), d_rstd.get(), d_x16.get(), nh * hd, d_g.get(),
                               d_t.get(), B, T, nh, hd, 1e-5f);
    d_rstd.upload(rstd);
    cuda::rmsnorm_rope_backward(d_dx16.get(), nh * hd, d_dg.get(), d_dy16.get(), d_x16.get(),
                                nh * hd, d_g.get(), d_rstd.get(), d_t.get(), B, T, nh, hd);
    std::vector<float> got(n), want(n);
    const auto widen = [&](const std::vector<uint16_t>& v, std::vector<float>& out) {
      cpu::bf16_to_f32(out.data(), v.data(), n);
    };
    widen(d_y16.download(), got);
    widen(y16, want);
    expect_close(got, want, what + " bf16 y", 1e-2);
    widen(d_dx16.download(), got);
    widen(dx16, want);
    expect_close(got, want, what + " bf16 dx", 1e-2);
    expect_close(d_dg.download(), dg16, what + " dg from bf16");
  }
}
TEST(CudaRoPE, TableAndApplyMatchCpu) {
  uint64_t stream = 200;
  for (int64_t hd : {2LL, 64LL, 128LL})
    for (double theta : {10000.0, 500000.0}) {
      const int64_t T = 37;
      std::vector<float> ref(T * hd);
      cpu::rope_table(ref.data(), T, hd, theta);
      Dev<float> d(T * hd);
      cuda::rope_table(d, T, hd, theta);
      expect_close(d.download(), ref, "rope_table hd=" + std::to_string(hd), 1e-6);
    }
  const int64_t shapes[][4] = {{2, 37, 3, 64}, {1, 5, 1, 2}, {3, 130, 4, 128}};
  for (const auto& s : shapes) {
    const int64_t B = s[0], T = s[1], nh = s[2], hd = s[3], Ttab = T + 13;  // longer table
    std::vector<float> table(Ttab * hd);
    cpu::rope_table(table.data(), Ttab, hd, 10000.0);
    const std::vector<float> x0 = randn(B * T * nh * hd, ++stream);
    Dev<float> d_table(table), d_x(x0);
    for (float sign : {1.0f, -1.0f}) {
      std::vector<float> x = x0;
      cpu::rope_apply(x.data(), nh * hd, x.data(), nh * hd, table.data(), B, T, nh, hd, sign);
      d_x.upload(x0);
      cuda::rope_apply(d_x.get(), nh * hd, d_x.get(), nh * hd, d_table.get(), B, T, nh, hd,
                       sign);  // in place
      const std::vector<float> got = d_x.download();
      const std::string what =
          "rope_apply " + str({B, T, nh, hd}) + " sign " + std::to_string(sign);
      expect_close(got, x, what);
      d_x.upload(x0);
      Dev<float> d_y(x0.size());
      cuda::rope_apply(d_y.get(), nh * hd, d_x.get(), nh * hd, d_table.get(), B, T, nh, hd,
                       sign);  // out of place: the same values
      EXPECT_BITWISE(d_y.download(), got, what + " out of place");
      Dev<uint16_t> d_y16(x0.size());
      cuda::rope_apply(d_y16.get(), nh * hd, d_x.get(), nh * hd, d_table.get(), B, T, nh, hd,
                       sign);  // bf16: rounded at the store
      std::vector<uint16_t> want16(got.size());
      cpu::f32_to_bf16(want16.data(), got.data(), int64_t(got.size()));
      EXPECT_TRUE(d_y16.download() == want16) << what << " bf16 output";
      // from a bf16 input: bitwise the fp32 kernel on the widened input, into fp32 and bf16
      std::vector<float> x16(want16.size()), want(x16.size());
      cpu::bf16_to_f32(x16.data(), want16.data(), int64_t(want16.size()));
      cpu::rope_apply(want.data(), nh * hd, x16.data(), nh * hd, table.data(), B, T, nh, hd, sign);
      cuda::rope_apply(d_y.get(), nh * hd, d_y16.get(), nh * hd, d_table.get(), B, T, nh, hd, sign);
      expect_close(d_y.download(), want, what + " bf16 input");
      std::vector<uint16_t> want_b(want.size());
      d_x.upload(x16);
      cuda::rope_apply(d_x.get(), nh * hd, d_x.get(), nh * hd, d_table.get(), B, T, nh, hd, sign);
      const std::vector<float> from_fp32 = d_x.download();
      cpu::f32_to_bf16(want_b.data(), from_fp32.data(), int64_t(want_b.size()));
      EXPECT_BITWISE(d_y.download(), from_fp32,
                     what + " bf16 input = fp32 kernel on the widened input");
      cuda::rope_apply(d_y16.get(), nh * hd, d_y16.get(), nh * hd, d_table.get(), B, T, nh, hd,
                       sign);  // in place, bf16
      EXPECT_TRUE(d_y16.download() == want_b) << what << " bf16 in place";
      d_x.upload(x0);
      cuda::rope_apply(d_x.get(), nh * hd, d_x.get(), nh * hd, d_table.get(), B, T, nh, hd, sign);
      EXPECT_BITWISE(d_x.download(), got, what + " rerun");
    }
  }
}

// ---- SwiGLU -----------------------------------------------------------------------------------

// gate_up [rows, 2F] (gate, up per row): F a multiple of 4 goes four at a time, else one.
TEST(CudaSwiGLU, ForwardBackwardMatchCpu) {
  uint64_t stream = 300;
  for (const auto& [rows, F] : {std::pair<int64_t, int64_t>{1, 1}, {7, 333}, {37, 2752}}) {
    const int64_t n = rows * F;
    std::vector<float> gate_up = randn(2 * n, ++stream, 3.0);
    gate_up[0] = 95.0f;  // saturated sigmoid on both sides
    if (F > 1) gate_up[1] = -95.0f;
    const std::vector<float> dh = randn(n, ++stream);
    std::vector<float> h(n), dgate_up(2 * n);
    cpu::swiglu_forward(h.data(), gate_up.data(), rows, F);
    cpu::swiglu_backward(dgate_up.data(), dh.data(), gate_up.data(), rows, F);
    Dev<float> d_gate_up(gate_up), d_dh(dh), d_h(n), d_dgate_up(2 * n);
    cuda::swiglu_forward(d_h.get(), d_gate_up.get(), rows, F);
    cuda::swiglu_backward(d_dgate_up.get(), d_dh.get(), d_gate_up.get(), rows, F);
    const std::string what = "swiglu " + str({rows, F});
    const std::vector<float> h1 = d_h.download(), dgu1 = d_dgate_up.download();
    expect_close(h1, h, what + " h");
    expect_close(dgu1, dgate_up, what + " dgate_up");
    cuda::swiglu_forward(d_h.get(), d_gate_up.get(), rows, F);
    cuda::swiglu_backward(d_dgate_up.get(), d_dh.get(), d_gate_up.get(), rows, F);
    EXPECT_BITWISE(d_h.download(), h1, what + " h rerun");
    EXPECT_BITWISE(d_dgate_up.download(), dgu1, what + " dgate_up rerun");
  }
}

// The bias kernels: forward to rounding (bitwise for an fp32 y: one addition), the backward's
// sums bitwise the CPU's (one summation order, core/bias_order.h) for fp32 and bf16 dy.
TEST(CudaBias, AddAndBackwardBitwiseEqualCpu) {
  uint64_t stream = 350;
  for (const auto& [rows, n] : {std::pair<int64_t, int64_t>{1, 1}, {7, 33}, {300, 1152}}) {
    const std::string what = "bias " + str({rows, n});
    const std::vector<float> y0 = randn(rows * n, ++stream), b = randn(n, ++stream),
                             dy = randn(rows * n, ++stream), db0 = randn(n, ++stream);
    std::vector<float> y = y0, db = db0;
    cpu::bias_add(y.data(), b.data(), rows, n);
    cpu::bias_backward(db.data(), dy.data(), rows, n);
    Dev<float> d_y(y0), d_b(b), d_dy(dy), d_db(db0);
    cuda::bias_add(d_y.get(), d_b.get(), rows, n);
    cuda::bias_backward(d_db.get(), d_dy.get(), rows, n);
    EXPECT_BITWISE(d_y.download(), y, what + " add");
    EXPECT_BITWISE(d_db.download(), db, what + " backward");

    std::vector<uint16_t> y16(rows * n), dy16(rows * n);
    for (int64_t i = 0; i < rows * n; ++i) y16[i] = retort::f32_to_bf16(y0[i]), dy16[i] = retort::f32_to_bf16(dy[i]);
    std::vector<uint16_t> y16_cpu = y16;
    std::vector<float> db16 = db0;
    cpu::bias_add(y16_cpu.data(), b.data(), rows, n);
    cpu::bias_backward(db16.data(), dy16.data(), rows, n);
    Dev<uint16_t> d_y16(y16), d_dy16(dy16);
    d_db.upload(db0);
    cuda::bias_add(d_y16.get(), d_b.get(), rows, n);
    cuda::bias_backward(d_db.get(), d_dy16.get(), rows, n);
    EXPECT_BITWISE(d_y16.download(), y16_cpu, what + " bf16 add");
    EXPECT_BITWISE(d_db.download(), db16, what + " bf16 backward");
  }
}

// x and dx as windows of heads in wider rows (the k window of a packed q|k|v row), in both of
// the GPU's kernels: the vector kernel where the window and its pitch allow 4-element loads
// (pitch and offset multiples of 4), the scalar kernel where not (pitch + 2, offset 1).
TEST(CudaRMSNormRoPE, HeadWindowsInBothKernels) {
  uint64_t stream = 1200;
  const int64_t B = 2, T = 5, nh = 3, hd = 64, rows = B * T * nh, n = rows * hd;
  std::vector<float> table(size_t(T * hd));
  cpu::rope_table(table.data(), T, hd, 10000.0);
  const std::vector<float> g = randn(hd, ++stream, 0.3, 1.0), dg0 = randn(hd, ++stream);
  const std::vector<float> dy = randn(n, ++stream);
  for (const auto& [pitch, offset] :
       {std::pair<int64_t, int64_t>{(nh + 2) * hd, hd}, {(nh + 2) * hd + 2, 1}}) {
    const std::string what = "rmsnorm_rope window pitch " + std::to_string(pitch) + " offset " +
                             std::to_string(offset);
    const int64_t len = B * T * pitch + offset;
    const std::vector<float> row_buf = randn(len, ++stream, 1.5);
    std::vector<float> y(n), rstd(rows), dx(len, 7.0f), dg = dg0;
    cpu::rmsnorm_rope_forward(y.data(), rstd.data(), row_buf.data() + offset, pitch, g.data(),
                              table.data(), B, T, nh, hd, 1e-5f);
    cpu::rmsnorm_rope_backward(dx.data() + offset, pitch, dg.data(), dy.data(),
                               row_buf.data() + offset, pitch, g.data(), rstd.data(),
                               table.data(), B, T, nh, hd);
    Dev<float> d_x(row_buf), d_dy(dy), d_g(g), d_t(table), d_y(n), d_rstd(rows);
    Dev<float> d_dx(std::vector<float>(len, 7.0f)), d_dg(dg0);
    cuda::rmsnorm_rope_forward(d_y.get(), d_rstd.get(), d_x.get() + offset, pitch, d_g.get(),
                               d_t.get(), B, T, nh, hd, 1e-5f);
    expect_close(d_y.download(), y, what + " y");
    expect_close(d_rstd.download(), rstd, what + " rstd");
    d_rstd.upload(rstd);
    cuda::rmsnorm_rope_backward(d_dx.get() + offset, pitch, d_dg.get(), d_dy.get(),
                                d_x.get() + offset, pitch, d_g.get(), d_rstd.get(), d_t.get(), B,
                                T, nh, hd);
    expect_close(d_dx.download(), dx, what + " dx (and the columns outside the window kept)");
    expect_close(d_dg.download(), dg, what + " dg");
  }
}

// Kernels that write a bf16 activation round once at the store: bitwise the kernel's own fp32
// output rounded (cpu::f32_to_bf16, round to nearest even). SwiGLU at offsets 0..4 (an
// unaligned view, or F not a multiple of 4, goes one element at a time; else four at a time).
TEST(CudaBf16Outputs, BitwiseTheFp32OutputRounded) {
  auto rounded = [](const std::vector<float>& x) {
    std::vector<uint16_t> h(x.size());
    cpu::f32_to_bf16(h.data(), x.data(), int64_t(x.size()));
    return h;
  };
  uint64_t stream = 330;
  for (const auto& [rows, C] : {std::pair<int64_t, int64_t>{1, 7}, {37, 64}, {300, 1000}}) {
    const std::vector<float> x = randn(rows * C, ++stream, 1.5), g = randn(C, ++stream, 0.3, 1.0);
    Dev<float> d_x(x), d_g(g), d_y(rows * C), d_rstd(rows);
    Dev<uint16_t> d_y16(rows * C);
    cuda::rmsnorm_forward(d_y, d_rstd, d_x, d_g, rows, C, 1e-5f);
    cuda::rmsnorm_forward(d_y16, d_rstd, d_x, d_g, rows, C, 1e-5f);
    EXPECT_TRUE(d_y16.download() == rounded(d_y.download())) << "rmsnorm " << str({rows, C});
    Dev<float> d_dy(randn(rows * C, ++stream)), d_dx(rows * C), d_dg(std::vector<float>(C, 0.0f));
    Dev<uint16_t> d_dx16(rows * C);
    cuda::rmsnorm_backward(d_dx, d_dg, d_dy, d_x, d_g, d_rstd, rows, C, false, nullptr);
    cuda::rmsnorm_backward(d_dx16, d_dg, d_dy, d_x, d_g, d_rstd, rows, C);
    EXPECT_TRUE(d_dx16.download() == rounded(d_dx.download())) << "rmsnorm dx " << str({rows, C});
  }
  for (const int64_t V : {1003, 1004}) {  // cross-entropy's dlogits, one / four columns at a time
    const int64_t rows = 7;
    std::vector<int32_t> t(rows);
    for (int64_t r = 0; r < rows; ++r) t[r] = int32_t((r * 131) % V);
    t[2] = -1;  // on another shard
    Dev<float> d_logits(randn(rows * V, ++stream, 2.0)), d_ce(rows), d_lse(rows), d_dl(rows * V);
    Dev<int32_t> d_t(t);
    Dev<uint16_t> d_dl16(rows * V);
    cuda::cross_entropy_forward(d_ce, d_lse, d_logits.get(), d_t, rows, V);
    cuda::cross_entropy_backward(d_dl.get(), d_logits.get(), d_lse, d_t, rows, V, 0.5f, 1e-3f);
    cuda::cross_entropy_backward(d_dl16.get(), d_logits.get(), d_lse, d_t, rows, V, 0.5f, 1e-3f);
    EXPECT_TRUE(d_dl16.download() == rounded(d_dl.download())) << "cross-entropy dlogits V " << V;
    // bf16 logits (the head's bf16 product): loss and lse bitwise those of the widened logits,
    // dlogits the widened logits' rounded, in place over the logits too; target_logits exact
    const std::vector<uint16_t> l16 = rounded(d_logits.download());
    std::vector<float> lw(l16.size());
    cpu::bf16_to_f32(lw.data(), l16.data(), int64_t(l16.size()));
    Dev<uint16_t> d_l16(l16);
    Dev<float> d_lw(lw), d_ce16(rows), d_lse16(rows), d_tl16(rows), d_tlw(rows);
    cuda::cross_entropy_forward(d_ce, d_lse, d_lw.get(), d_t, rows, V);
    cuda::cross_entropy_forward(d_ce16, d_lse16, d_l16.get(), d_t, rows, V);
    EXPECT_BITWISE(d_ce16.download(), d_ce.download(), "ce from bf16 logits V " + str({V}));
    EXPECT_BITWISE(d_lse16.download(), d_lse.download(), "lse from bf16 logits V " + str({V}));
    cuda::cross_entropy_backward(d_dl.get(), d_lw.get(), d_lse, d_t, rows, V, 0.5f, 1e-3f);
    cuda::cross_entropy_backward(d_dl16.get(), d_l16.get(), d_lse, d_t, rows, V, 0.5f, 1e-3f);
    EXPECT_TRUE(d_dl16.download() == rounded(d_dl.download()))
        << "cross-entropy bf16 dlogits from bf16 logits V " << V;
    cuda::target_logits(d_tlw, d_lw.get(), d_t, rows, V);
    cuda::target_logits(d_tl16, d_l16.get(), d_t, rows, V);
    EXPECT_BITWISE(d_tl16.download(), d_tlw.download(), "target_logits from bf16 V " + str({V}));
    // forward_backward: bf16 dlogits from fp32 logits, and in place over bf16 logits
    Dev<uint16_t> d_fb16(rows * V), d_fb16_in_place(l16);
    cuda::cross_entropy_forward_backward(d_ce16.get(), d_lse16.get(), d_fb16.get(), d_lw.get(),
                                         d_t, rows, V, 0.5f, 1e-3f);
    EXPECT_TRUE(d_fb16.download() == d_dl16.download())
        << "forward_backward bf16 dlogits from fp32 logits V " << V;
    cuda::cross_entropy_forward_backward(d_ce16.get(), d_lse16.get(), d_fb16_in_place.get(),
                                         d_fb16_in_place.get(), d_t, rows, V, 0.5f, 1e-3f);
    EXPECT_TRUE(d_fb16_in_place.download() == d_dl16.download())
        << "forward_backward bf16 dlogits in place over bf16 logits V " << V;
    EXPECT_BITWISE(d_lse16.download(), d_lse.download(), "forward_backward lse from bf16 V " + str({V}));
    cuda::cross_entropy_backward(d_l16.get(), d_l16.get(), d_lse, d_t, rows, V, 0.5f, 1e-3f);
    EXPECT_TRUE(d_l16.download() == d_dl16.download())
        << "cross-entropy bf16 dlogits in place over bf16 logits V " << V;
  }
  for (const auto& [rows, F] : {std::pair<int64_t, int64_t>{1, 3}, {13, 100}, {37, 1000}}) {
    const int64_t n = rows * F, total = 2 * n + 4;  // room for gate_up at offsets 0..4
    const std::vector<float> gate_up = randn(total, ++stream, 3.0), dh = randn(total, ++stream);
    Dev<float> d_gu(gate_up), d_dh(dh), d_h(total), d_dgu(total);
    Dev<uint16_t> d_h16(total), d_dgu16(total);
    // gate_up rounded to bf16, and widened back
    std::vector<uint16_t> gu16(total), dh16(total);  // with it a bf16 dh (a bf16 product's output)
    cpu::f32_to_bf16(gu16.data(), gate_up.data(), total);
    cpu::f32_to_bf16(dh16.data(), dh.data(), total);
    std::vector<float> guw(total), dhw(total);
    cpu::bf16_to_f32(guw.data(), gu16.data(), total);
    cpu::bf16_to_f32(dhw.data(), dh16.data(), total);
    Dev<uint16_t> d_gu16(gu16), d_dh16(dh16);
    Dev<float> d_guw(guw), d_dhw(dhw), d_hw(total), d_dguw(total);
    for (int64_t off = 0; off <= 4; ++off) {
      const std::string what = "swiglu " + str({rows, F}) + " offset " + std::to_string(off);
      cuda::swiglu_forward(d_h + off, d_gu + off, rows, F);
      cuda::swiglu_forward(d_h16 + off, d_gu + off, rows, F);
      cuda::swiglu_backward(d_dgu + off, d_dh + off, d_gu + off, rows, F);
      cuda::swiglu_backward(d_dgu16 + off, d_dh + off, d_gu + off, rows, F);
      auto part = [&](const auto& v, int64_t len) {
        return std::remove_cvref_t<decltype(v)>(v.begin() + off, v.begin() + off + len);
      };
      EXPECT_TRUE(part(d_h16.download(), n) == rounded(part(d_h.download(), n))) << what << " h";
      EXPECT_TRUE(part(d_dgu16.download(), 2 * n) == rounded(part(d_dgu.download(), 2 * n)))
          << what << " dgate_up";
      // bf16 gate_up and dh (products' outputs): bitwise the kernels on the widened values
      cuda::swiglu_forward(d_h16 + off, d_gu16 + off, rows, F);
      cuda::swiglu_forward(d_hw + off, d_guw + off, rows, F);
      EXPECT_TRUE(part(d_h16.download(), n) == rounded(part(d_hw.download(), n)))
          << what << " h from bf16";
      cuda::swiglu_backward(d_dgu + off, d_dh16 + off, d_gu16 + off, rows, F);
      cuda::swiglu_backward(d_dguw + off, d_dhw + off, d_guw + off, rows, F);
      EXPECT_BITWISE(part(d_dgu.download(), 2 * n), part(d_dguw.download(), 2 * n),
                     what + " dgate_up from bf16");
      cuda::swiglu_backward(d_dgu16 + off, d_dh16 + off, d_gu16 + off, rows, F);
      EXPECT_TRUE(part(d_dgu16.download(), 2 * n) == rounded(part(d_dguw.download(), 2 * n)))
          << what << " bf16 dgate_up from bf16";
      // and the fp32 outputs at this offset agree with the CPU
      std::vector<float> h(n), dgu(2 * n);
      cpu::swiglu_forward(h.data(), gate_up.data() + off, rows, F);
      cpu::swiglu_backward(dgu.data(), dh.data() + off, gate_up.data() + off, rows, F);
      cuda::swiglu_backward(d_dgu + off, d_dh + off, d_gu + off, rows, F);
      expect_close(part(d_h.download(), n), h, what + " h vs cpu");
      expect_close(part(d_dgu.download(), 2 * n), dgu, what + " dgate_up vs cpu");
    }
  }
}

// ---- cross-entropy ------------------------------------------------------------------------------

TEST(CudaCrossEntropy, ForwardBackwardMatchCpuInPlaceToo) {
  // V % 4 == 0 (1000, 32768): four columns at a time; the others one at a time
  const int64_t shapes[][2] = {{1, 3}, {7, 31}, {130, 1000}, {33, 32003}, {300, 257}, {5, 32768}};
  uint64_t stream = 400;
  for (const auto& s : shapes) {
    const int64_t rows = s[0], V = s[1];
    const std::string what = "cross_entropy " + str({rows, V});
    const std::vector<float> logits = randn(rows * V, ++stream, 3.0, 1.0);
    const std::vector<int32_t> targets = randint(rows, ++stream, int32_t(V), 0.2);  // some −1
    std::vector<float> ce(rows), lse(rows), dl(rows * V);
    cpu::cross_entropy_forward(ce.data(), lse.data(), logits.data(), targets.data(), rows, V);
    const float ce_scale = 1.0f / float(rows), z_scale = 1e-4f;
    cpu::cross_entropy_backward(dl.data(), logits.data(), lse.data(), targets.data(), rows, V,
                                ce_scale, z_scale);

    Dev<float> d_logits(logits), d_ce(rows), d_lse(rows), d_dl(rows * V);
    Dev<int32_t> d_t(targets);
    cuda::cross_entropy_forward(d_ce, d_lse, d_logits.get(), d_t, rows, V);
    const std::vector<float> ce1 = d_ce.download(), lse1 = d_lse.download();
    expect_close(ce1, ce, what + " ce");
    expect_close(lse1, lse, what + " lse");
    d_lse.upload(lse);
    cuda::cross_entropy_backward(d_dl.get(), d_logits.get(), d_lse, d_t, rows, V, ce_scale,
                                 z_scale);
    const std::vector<float> dl1 = d_dl.download();
    expect_close(dl1, dl, what + " dlogits");

    cuda::cross_entropy_forward(d_ce, d_lse, d_logits.get(), d_t, rows, V);
    EXPECT_BITWISE(d_ce.download(), ce1, what + " ce rerun");
    EXPECT_BITWISE(d_lse.download(), lse1, what + " lse rerun");
    d_lse.upload(lse);
    cuda::cross_entropy_backward(d_logits.get(), d_logits.get(), d_lse, d_t, rows, V, ce_scale,
                                 z_scale);
    EXPECT_BITWISE(d_logits.download(), dl1, what + " in place (dlogits = logits)");

    // forward_backward: bitwise forward, then backward from that forward's lse, in place too
    d_logits.upload(logits);
    d_lse.upload(lse1);
    cuda::cross_entropy_backward(d_dl.get(), d_logits.get(), d_lse, d_t, rows, V, ce_scale, z_scale);
    const std::vector<float> dl_own = d_dl.download();
    Dev<float> d_ce2(rows), d_lse2(rows);
    cuda::cross_entropy_forward_backward(d_ce2.get(), d_lse2.get(), d_logits.get(), d_logits.get(),
                                         d_t, rows, V, ce_scale, z_scale);
    EXPECT_BITWISE(d_ce2.download(), ce1, what + " forward_backward ce");
    EXPECT_BITWISE(d_lse2.download(), lse1, what + " forward_backward lse");
    EXPECT_BITWISE(d_logits.download(), dl_own, what + " forward_backward dlogits in place");

    std::vector<float> tl(rows);
    cpu::target_logits(tl.data(), logits.data(), targets.data(), rows, V);
    d_logits.upload(logits);
    Dev<float> d_tl(rows);
    cuda::target_logits(d_tl, d_logits.get(), d_t, rows, V);
    EXPECT_BITWISE(d_tl.download(), tl, what + " target_logits");
  }
  for (int64_t n : {1LL, 3LL, 8LL}) {
    const int64_t rows = 77;
    const std::vector<float> parts = randn(n * rows, ++stream, 5.0);
    std::vector<float> lse(rows);
    cpu::logsumexp_merge(lse.data(), parts.data(), n, rows);
    Dev<float> d_parts(parts), d_lse(rows);
    cuda::logsumexp_merge(d_lse, d_parts, n, rows);
    expect_close(d_lse.download(), lse, "logsumexp_merge n=" + std::to_string(n), 1e-6);
  }
}

// ---- attention ----------------------------------------------------------------------------------

struct AttnCase {
  int64_t B, T, H, Hkv, hd, W = 0;  // W: the sliding window, 0: none (T)
};

// Windows: one key, shorter than a tile (64 rows forward; 32 in backward at hd 128), longer
// than two tiles.
TEST(CudaAttention, ForwardBackwardMatchCpuAndAreDeterministic) {
  const AttnCase cases[] = {{1, 1, 1, 1, 8},   {2, 37, 4, 2, 64},  {1, 130, 2, 1, 128},
                            {1, 65, 4, 4, 32}, {2, 50, 4, 2, 256}, {1, 100, 6, 3, 80},
                            {1, 64, 2, 2, 16}, {1, 200, 4, 2, 128}, {2, 33, 2, 1, 160},
                            {1, 150, 2, 1, 64, 1}, {1, 130, 2, 1, 128, 37}, {1, 200, 4, 2, 32, 150}};
  uint64_t stream = 500;
  for (const AttnCase& c : cases) {
    const std::string what =
        "attention B,T,H,Hkv,hd,window = " + str({c.B, c.T, c.H, c.Hkv, c.hd, c.W});
    const int64_t W = c.W > 0 ? c.W : c.T;
    const int64_t nq = c.B * c.T * c.H * c.hd, nk = c.B * c.T * c.Hkv * c.hd,
                  nl = c.B * c.H * c.T;
    const std::vector<float> q = randn(nq, ++stream), k = randn(nk, ++stream),
                             v = randn(nk, ++stream), dout = randn(nq, ++stream);
    std::vector<float> out(nq), lse(nl), dq(nq, NAN), dk(nk, NAN), dv(nk, NAN);
    const auto p = AttentionPitches::contiguous(c.H, c.Hkv, c.hd);
    cpu::attention_forward(out.data(), lse.data(), q.data(), k.data(), v.data(), p, c.B, c.T, c.H,
                           c.Hkv, c.hd, W);
    cpu::attention_backward(dq.data(), dk.data(), dv.data(), dout.data(), q.data(), k.data(),
                            v.data(), out.data(), lse.data(), p, c.B, c.T, c.H, c.Hkv, c.hd, W);

    Dev<float> d_q(q), d_k(k), d_v(v), d_dout(dout), d_out(nq), d_lse(nl);
    Dev<float> d_dq(dq), d_dk(dk), d_dv(dv);  // NaN-filled: backward must overwrite
    cuda::attention_forward(d_out, d_lse, d_q, d_k, d_v, p, c.B, c.T, c.H, c.Hkv, c.hd, W);
    const std::vector<float> out1 = d_out.download(), lse1 = d_lse.download();
    expect_close(out1, out, what + " out");
    expect_close(lse1, lse, what + " lse");
    // Backward from the CPU's out and lse: only the backward kernels are compared.
    d_out.upload(out);
    d_lse.upload(lse);
    cuda::attention_backward(d_dq, d_dk, d_dv, d_dout, d_q, d_k, d_v, d_out, d_lse, p, c.B,
                             c.T, c.H, c.Hkv, c.hd, W);
    const std::vector<float> dq1 = d_dq.download(), dk1 = d_dk.download(), dv1 = d_dv.download();
    // dq, dk ∝ dS = P·(dP − D): at T = 1 zero, D and dP being the same dot product, so what
    // either side has there is rounding residue; they are measured against dv's norm.
    const double scale = std::sqrt(std::inner_product(dv.begin(), dv.end(), dv.begin(), 0.0));
    expect_close(dq1, dq, what + " dq", kTol, scale);
    expect_close(dk1, dk, what + " dk", kTol, scale);
    expect_close(dv1, dv, what + " dv");

    cuda::attention_forward(d_out, d_lse, d_q, d_k, d_v, p, c.B, c.T, c.H, c.Hkv, c.hd, W);
    EXPECT_BITWISE(d_out.download(), out1, what + " out rerun");
    EXPECT_BITWISE(d_lse.download(), lse1, what + " lse rerun");
    d_out.upload(out);
    d_lse.upload(lse);
    cuda::attention_backward(d_dq, d_dk, d_dv, d_dout, d_q, d_k, d_v, d_out, d_lse, p, c.B,
                             c.T, c.H, c.Hkv, c.hd, W);
    EXPECT_BITWISE(d_dq.download(), dq1, what + " dq rerun");
    EXPECT_BITWISE(d_dk.download(), dk1, what + " dk rerun");
    EXPECT_BITWISE(d_dv.download(), dv1, what + " dv rerun");
  }
}

TEST(CudaAttention, HeadDimAbove256IsRejected) {
  Dev<float> buf(1);
  try {
    cuda::attention_forward(buf, buf, buf, buf, buf, AttentionPitches::contiguous(1, 1, 300), 1,
                            1, 1, 1, 300, 1);
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("head_dim <= 256"), std::string::npos) << e.what();
  }
}

// cuDNN's fused attention reads and writes bf16, so its reference is the CPU kernel on the
// bf16-rounded inputs; what remains is cuDNN's own rounding (P and dS pass through bf16 inside,
// the outputs are rounded): relative error ≤ 1e-2, the bf16 tolerance. A wrong scale,
// mask or head mapping gives errors of order 1. Backward starts from cuDNN's own forward (the
// pipeline training runs), and reruns must be bitwise equal (the deterministic dQ variant).
TEST(CudaAttention, CudnnMatchesCpuOnBf16InputsAndIsDeterministic) {
  const AttnCase cases[] = {{2, 37, 4, 2, 64},     {1, 130, 2, 1, 128}, {1, 65, 4, 4, 32},
                            {1, 64, 2, 2, 16},     {2, 20, 6, 2, 8},    {1, 130, 2, 1, 128, 37},
                            {2, 37, 4, 2, 64, 3}};  // sliding windows: a second mask
  uint64_t stream = 900;
  auto bits = [](const std::vector<float>& x) {  // rounded as the CPU's conversion kernels do
    std::vector<uint16_t> h(x.size());
    cpu::f32_to_bf16(h.data(), x.data(), int64_t(x.size()));
    return h;
  };
  auto widen = [](const std::vector<uint16_t>& h) {
    std::vector<float> x(h.size());
    cpu::bf16_to_f32(x.data(), h.data(), int64_t(h.size()));
    return x;
  };
  for (const AttnCase& c : cases) {
    const std::string what =
        "cudnn attention B,T,H,Hkv,hd,window = " + str({c.B, c.T, c.H, c.Hkv, c.hd, c.W});
    const int64_t W = c.W > 0 ? c.W : c.T;
    const int64_t nq = c.B * c.T * c.H * c.hd, nk = c.B * c.T * c.Hkv * c.hd,
                  nl = c.B * c.H * c.T;
    const auto contiguous = AttentionPitches::contiguous(c.H, c.Hkv, c.hd);
    const std::vector<uint16_t> q = bits(randn(nq, ++stream)), k = bits(randn(nk, ++stream)),
                                v = bits(randn(nk, ++stream)), dout = bits(randn(nq, ++stream));
    const std::vector<float> qr = widen(q), kr = widen(k), vr = widen(v), doutr = widen(dout);
    std::vector<float> out(nq), lse(nl), dq(nq), dk(nk), dv(nk);
    cpu::attention_forward(out.data(), lse.data(), qr.data(), kr.data(), vr.data(), contiguous,
                           c.B, c.T, c.H, c.Hkv, c.hd, W);
    cpu::attention_backward(dq.data(), dk.data(), dv.data(), doutr.data(), qr.data(), kr.data(),
                            vr.data(), out.data(), lse.data(), contiguous, c.B, c.T, c.H, c.Hkv,
                            c.hd, W);

    const std::vector<uint16_t> nan_q(nq, 0x7fc0), nan_k(nk, 0x7fc0);  // bf16 NaN
    Dev<uint16_t> d_q(q), d_k(k), d_v(v), d_dout(dout), d_out(nan_q);
    Dev<uint16_t> d_dq(nan_q), d_dk(nan_k), d_dv(nan_k);
    Dev<float> d_lse(std::vector<float>(nl, NAN));
    std::string why;
    ASSERT_TRUE(cuda::attention_forward_cudnn(d_out, d_lse, d_q, d_k, d_v, contiguous, c.B, c.T,
                                              c.H, c.Hkv, c.hd, W, &why)) << what << ": " << why;
    const std::vector<uint16_t> out1 = d_out.download();
    const std::vector<float> lse1 = d_lse.download();
    expect_close(widen(out1), out, what + " out", 1e-2);
    expect_close(lse1, lse, what + " lse", 1e-4);  // fp32 statistics
    ASSERT_TRUE(cuda::attention_backward_cudnn(d_dq, d_dk, d_dv, d_dout, d_q, d_k, d_v, d_out,
                                               d_lse, contiguous, c.B, c.T, c.H, c.Hkv, c.hd, W,
                                               &why))
        << what << ": " << why;
    const std::vector<uint16_t> dq1 = d_dq.download(), dk1 = d_dk.download(), dv1 = d_dv.download();
    expect_close(widen(dq1), dq, what + " dq", 1e-2);
    expect_close(widen(dk1), dk, what + " dk", 1e-2);
    expect_close(widen(dv1), dv, what + " dv", 1e-2);

    ASSERT_TRUE(cuda::attention_forward_cudnn(d_out, d_lse, d_q, d_k, d_v, contiguous, c.B, c.T,
                                              c.H, c.Hkv, c.hd, W, &why));
    EXPECT_TRUE(d_out.download() == out1) << what << " out rerun differs";
    EXPECT_BITWISE(d_lse.download(), lse1, what + " lse rerun");
    ASSERT_TRUE(cuda::attention_backward_cudnn(d_dq, d_dk, d_dv, d_dout, d_q, d_k, d_v, d_out,
                                               d_lse, contiguous, c.B, c.T, c.H, c.Hkv, c.hd, W,
                                               &why));
    EXPECT_TRUE(d_dq.download() == dq1) << what << " dq rerun differs";
    EXPECT_TRUE(d_dk.download() == dk1) << what << " dk rerun differs";
    EXPECT_TRUE(d_dv.download() == dv1) << what << " dv rerun differs";
  }
}

// A shape cuDNN's flash attention does not take (head_dim not a multiple of 8) is refused with
// a reason, and nothing is written.
TEST(CudaAttention, CudnnRefusesHeadDimNotMultipleOf8) {
  const int64_t B = 1, T = 9, H = 2, hd = 12, n = B * T * H * hd;
  const std::vector<uint16_t> nan(n, 0x7fc0);  // bf16 NaN
  Dev<uint16_t> x(std::vector<uint16_t>(n, 0x3f80)), out(nan);  // x = 1.0
  Dev<float> lse(std::vector<float>(B * H * T, NAN));
  std::string why;
  const AttentionPitches p{H * hd, H * hd, H * hd, H * hd, H * hd, H * hd};
  EXPECT_FALSE(cuda::attention_forward_cudnn(out, lse, x, x, x, p, B, T, H, H, hd, T, &why));
  EXPECT_NE(why.find("head_dim 12"), std::string::npos) << why;
  EXPECT_TRUE(out.download() == nan) << "out was written";
  why.clear();
  EXPECT_FALSE(cuda::attention_backward_cudnn(out, out, out, x, x, x, x, x, lse, p, B, T, H, H, hd, T, &why));
  EXPECT_NE(why.find("head_dim 12"), std::string::npos) << why;
}

// Caches of float and of bf16; head dims a multiple of 4 (rows read four elements at a time)
// and not (one at a time); a bf16 out (a bf16 product's input) within bf16 rounding.
TEST(CudaAttentionDecode, MatchesCpuAndIsDeterministic) {
  struct Case {
    int64_t B, T_max, n, H, Hkv, hd;
  };
  const Case cases[] = {{2, 50, 37, 4, 2, 64},    {1, 600, 513, 2, 1, 128},
                        {3, 10, 1, 2, 2, 8},      {1, 300, 300, 8, 2, 256},
                        {1, 20, 20, 2, 1, 520},   {2, 1000, 999, 2, 1, 80},
                        {2, 70, 61, 3, 1, 10},    {1, 260, 257, 2, 2, 6}};
  uint64_t stream = 600;
  for (const Case& c : cases) {
    const int64_t nq = c.B * c.H * c.hd, nk = c.B * c.T_max * c.Hkv * c.hd;
    const std::vector<float> q = randn(nq, ++stream), k = randn(nk, ++stream),
                             v = randn(nk, ++stream);
    Dev<float> d_q(q), d_out(nq);
    const auto check = [&](const auto& k_in, const auto& v_in, const std::string& what) {
      std::vector<float> out(nq);
      cpu::attention_decode(out.data(), q.data(), k_in.data(), v_in.data(), c.B, c.T_max, c.n,
                            c.H, c.Hkv, c.hd);
      using KV = typename std::decay_t<decltype(k_in)>::value_type;
      Dev<KV> d_k(k_in), d_v(v_in);
      cuda::attention_decode(d_out.get(), d_q.get(), d_k.get(), d_v.get(), c.B, c.T_max, c.n,
                             c.H, c.Hkv, c.hd);
      const std::vector<float> out1 = d_out.download();
      expect_close(out1, out, what);
      cuda::attention_decode(d_out.get(), d_q.get(), d_k.get(), d_v.get(), c.B, c.T_max, c.n,
                             c.H, c.Hkv, c.hd);
      EXPECT_BITWISE(d_out.download(), out1, what + " rerun");
      Dev<uint16_t> d_out16(nq);
      cuda::attention_decode(d_out16.get(), d_q.get(), d_k.get(), d_v.get(), c.B, c.T_max, c.n,
                             c.H, c.Hkv, c.hd);
      std::vector<float> out16(nq);
      cpu::bf16_to_f32(out16.data(), d_out16.download().data(), nq);
      expect_close(out16, out, what + " bf16 out", 1e-2);
    };
    const std::string what = "attention_decode " + str({c.B, c.T_max, c.n, c.H, c.Hkv, c.hd});
    check(k, v, what);
    std::vector<uint16_t> k16(nk), v16(nk);
    cpu::f32_to_bf16(k16.data(), k.data(), nk);
    cpu::f32_to_bf16(v16.data(), v.data(), nk);
    check(k16, v16, what + " bf16 cache");
  }
}

// ---- embedding ----------------------------------------------------------------------------------

TEST(CudaEmbedding, ForwardAndBackwardBitwiseEqualCpu) {
  const int64_t shapes[][3] = {{1, 50, 1}, {1000, 50, 64}, {4099, 300, 100}, {20000, 7, 33}};
  uint64_t stream = 700;
  for (const auto& s : shapes) {
    const int64_t rows = s[0], V = s[1], d = s[2];
    const std::string what = "embedding rows,V,d = " + str({rows, V, d});
    const std::vector<float> table = randn(V * d, ++stream), dout = randn(rows * d, ++stream);
    const std::vector<float> dtable0 = randn(V * d, ++stream);
    const std::vector<int32_t> ids = randint(rows, ++stream, int32_t(V), 0.1);
    std::vector<float> out(rows * d), dtable = dtable0;
    cpu::embedding_forward(out.data(), ids.data(), table.data(), rows, d);
    cpu::embedding_backward(dtable.data(), dout.data(), ids.data(), rows, d);
    Dev<float> d_table(table), d_out(rows * d), d_dout(dout), d_dtable(dtable0);
    Dev<int32_t> d_ids(ids);
    cuda::embedding_forward(d_out.get(), d_ids.get(), d_table.get(), rows, d);
    EXPECT_BITWISE(d_out.download(), out, what + " forward");
    // a bf16 table (fsdp's bf16 gather): rows widened, bitwise the CPU's
    std::vector<uint16_t> table16(V * d);
    cpu::f32_to_bf16(table16.data(), table.data(), V * d);
    std::vector<float> out16(rows * d);
    cpu::embedding_forward(out16.data(), ids.data(), table16.data(), rows, d);
    Dev<uint16_t> d_table16(table16);
    cuda::embedding_forward(d_out.get(), d_ids.get(), d_table16.get(), rows, d);
    EXPECT_BITWISE(d_out.download(), out16, what + " forward from bf16");
    cuda::embedding_backward(d_dtable, d_dout, d_ids, rows, d);
    const std::vector<float> g1 = d_dtable.download();
    expect_close(g1, dtable, what + " backward");
    EXPECT_BITWISE(g1, dtable, what + " backward (same order as the CPU)");
    d_dtable.upload(dtable0);
    cuda::embedding_backward(d_dtable, d_dout, d_ids, rows, d);
    EXPECT_BITWISE(d_dtable.download(), g1, what + " backward rerun");
  }
}

// ---- AdamW ------------------------------------------------------------------------------------

TEST(CudaAdamW, ThreeStepsMatchCpu) {
  uint64_t stream = 800;
  for (int64_t n : {1LL, 1000LL, 100001LL}) {
    std::vector<float> p = randn(n, ++stream), m(n, 0.0f), v(n, 0.0f);
    Dev<float> d_p(p), d_m(m), d_v(v), d_g(n);
    for (int64_t step = 1; step <= 3; ++step) {
      const std::vector<float> g = randn(n, ++stream, 0.1);
      d_g.upload(g);
      cpu::adamw_step(p.data(), g.data(), m.data(), v.data(), n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f,
                      step);
      cuda::adamw_step(d_p, d_g, d_m, d_v, n, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step);
    }
    const std::string what = "adamw n=" + std::to_string(n);
    expect_close(d_p.download(), p, what + " param");
    expect_close(d_m.download(), m, what + " m");
    expect_close(d_v.download(), v, what + " v");
  }
}

// ---- multi-tensor ops ---------------------------------------------------------------------------
// Many tensors of odd sizes (0 and 1 element, around the kernels' chunks of 4096 and 8192, more
// tensors than one launch holds: 128 for the sums, 64 for AdamW) at odd offsets of one buffer,
// with gaps between them that must stay untouched.

namespace {

struct MultiLayout {
  std::vector<int64_t> n, off;
  int64_t total = 0;
};

// `count` tensors: every third size from a list of edge cases, the others random in [0, 3000).
MultiLayout multi_layout(int64_t count, uint64_t stream, std::vector<int64_t> edges = {}) {
  if (edges.empty()) edges = {0, 1, 7, 8, 9, 4095, 4096, 4097, 8191, 8192, 8193, 12289, 16385};
  MultiLayout l;
  for (int64_t t = 0; t < count; ++t) {
    const int64_t n = t % 3 == 0 ? edges[(t / 3) % edges.size()]
                                 : int64_t(rng::uniform(kSeed, stream, t) * 3000);
    l.off.push_back(l.total);
    l.n.push_back(n);
    l.total += n + 3;  // a gap of 3 elements; offsets are odd multiples of 4 bytes too
  }
  return l;
}

// Elements of the gaps of `l` (everything outside the tensors).
std::vector<float> gaps(const std::vector<float>& buf, const MultiLayout& l) {
  std::vector<float> out;
  for (size_t t = 0; t < l.n.size(); ++t)
    for (int64_t i = l.off[t] + l.n[t]; i < l.off[t] + l.n[t] + 3; ++i) out.push_back(buf[i]);
  return out;
}

}  // namespace

TEST(CudaMultiTensor, SumSquaresBitwiseEqualsCpuAndIsDeterministic) {
  EXPECT_EQ(cuda::sum_squares_multi(nullptr, nullptr, 0), 0.0);
  uint64_t stream = 900;
  struct Case {
    int64_t count;
    std::vector<int64_t> edges;
  };
  // 300 tensors: three launches; 4 tensors with one of 1.2M elements: 293 chunks, more than
  // pass 2 stages at once; all-empty tensors: no chunk at all.
  for (const Case& c : {Case{1, {4097}}, Case{300, {}}, Case{4, {1200001, 5, 0, 3}},
                        Case{5, {0}}}) {
    const MultiLayout l = multi_layout(c.count, ++stream, c.edges);
    const std::vector<float> x = randn(l.total, ++stream, 2.0, 0.5);
    Dev<float> dx(x);
    std::vector<const float*> hp, dp;
    for (int64_t t = 0; t < c.count; ++t) {
      hp.push_back(x.data() + l.off[t]);
      dp.push_back(dx.get() + l.off[t]);
    }
    double loop = 0;  // what clip_grad_norm added up before the multi-tensor op
    for (int64_t t = 0; t < c.count; ++t) loop += cpu::sum_squares(hp[t], l.n[t]);
    const double ref = cpu::sum_squares_multi(hp.data(), l.n.data(), c.count);
    const double a = cuda::sum_squares_multi(dp.data(), l.n.data(), c.count);
    const double b = cuda::sum_squares_multi(dp.data(), l.n.data(), c.count);
    const std::string what = "sum_squares_multi count=" + std::to_string(c.count);
    EXPECT_EQ(std::memcmp(&ref, &loop, sizeof ref), 0) << what << ": cpu " << ref << " vs loop " << loop;
    EXPECT_EQ(std::memcmp(&a, &ref, sizeof a), 0) << what << ": gpu " << a << " vs cpu " << ref;
    EXPECT_EQ(std::memcmp(&a, &b, sizeof a), 0) << what << ": not deterministic";
  }
}

TEST(CudaMultiTensor, AdamWBitwiseEqualsPerTensorKernelAndMatchesCpu) {
  uint64_t stream = 950;
  const float lr = 1e-3f, b1 = 0.9f, b2 = 0.95f, eps = 1e-8f, wd = 0.1f;
  for (int64_t count : {1LL, 150LL}) {  // 150: three launches
    const MultiLayout l = multi_layout(count, ++stream, count == 1 ? std::vector<int64_t>{8193}
                                                                   : std::vector<int64_t>{});
    const std::vector<float> p0 = randn(l.total, ++stream), m0 = randn(l.total, ++stream, 0.01);
    std::vector<float> v0 = randn(l.total, ++stream, 0.01);
    for (float& x : v0) x *= x;
    std::vector<float> p = p0, m = m0, v = v0;                // CPU
    Dev<float> p1(p0), m1(m0), v1(v0);                         // GPU, one adamw_step per tensor
    Dev<float> p2(p0), m2(m0), v2(v0), p3(p0), m3(m0), v3(v0);  // GPU, multi-tensor (twice)
    Dev<float> dg(l.total);
    std::vector<AdamWTensor> hs, s2, s3;
    for (int64_t t = 0; t < count; ++t) {
      const int64_t o = l.off[t];
      const bool decay = t % 3 != 1;
      const float lr_scale = t % 4 == 2 ? 0.375f : 1.0f;  // µP's learning rates
      hs.push_back({p.data() + o, nullptr, m.data() + o, v.data() + o, l.n[t], decay, lr_scale});
      s2.push_back({p2.get() + o, dg.get() + o, m2.get() + o, v2.get() + o, l.n[t], decay, lr_scale});
      s3.push_back({p3.get() + o, dg.get() + o, m3.get() + o, v3.get() + o, l.n[t], decay, lr_scale});
    }
    for (int64_t step = 1; step <= 3; ++step) {
      const std::vector<float> g = randn(l.total, ++stream, 0.1);
      for (int64_t t = 0; t < count; ++t) hs[t].g = g.data() + l.off[t];
      dg.upload(g);
      cpu::adamw_step_multi(hs.data(), count, lr, b1, b2, eps, wd, step);
      for (int64_t t = 0; t < count; ++t) {
        const int64_t o = l.off[t];
        cuda::adamw_step(p1.get() + o, dg.get() + o, m1.get() + o, v1.get() + o, l.n[t],
                         lr * hs[t].lr_scale, b1, b2, eps, hs[t].decay ? wd : 0.0f, step);
      }
      cuda::adamw_step_multi(s2.data(), count, lr, b1, b2, eps, wd, step);
      cuda::adamw_step_multi(s3.data(), count, lr, b1, b2, eps, wd, step);
    }
    const std::string what = "adamw_step_multi count=" + std::to_string(count);
    const std::vector<float> gp = p2.download(), gm = m2.download(), gv = v2.download();
    EXPECT_BITWISE(gp, p1.download(), what + " param vs per-tensor kernel");
    EXPECT_BITWISE(gm, m1.download(), what + " m vs per-tensor kernel");
    EXPECT_BITWISE(gv, v1.download(), what + " v vs per-tensor kernel");
    EXPECT_BITWISE(p3.download(), gp, what + " param rerun");
    EXPECT_BITWISE(m3.download(), gm, what + " m rerun");
    EXPECT_BITWISE(v3.download(), gv, what + " v rerun");
    EXPECT_BITWISE(gaps(gp, l), gaps(p0, l), what + " param gaps");
    EXPECT_BITWISE(gaps(gm, l), gaps(m0, l), what + " m gaps");
    EXPECT_BITWISE(gaps(gv, l), gaps(v0, l), what + " v gaps");
    expect_close(gp, p, what + " param vs cpu");
    expect_close(gm, m, what + " m vs cpu");
    expect_close(gv, v, what + " v vs cpu");
  }
}

// grad_scale (gradient clipping's): bitwise the step on the gradients scaled beforehand, which
// stay as they were; close to the CPU's.
TEST(CudaMultiTensor, AdamWGradScaleIsTheScaledGradient) {
  const int64_t n = 100001;
  const float scale = 0.37f;
  const std::vector<float> p0 = randn(n, 990), g = randn(n, 991, 0.1);
  std::vector<float> p = p0, m(n, 0.0f), v(n, 0.0f);
  Dev<float> p1(p0), m1(m), v1(v), p2(p0), m2(m), v2(v), dg(g), scaled(g);
  cuda::scale_inplace(scaled, n, scale);
  AdamWTensor h{p.data(), g.data(), m.data(), v.data(), n, true};
  AdamWTensor a{p1.get(), scaled.get(), m1.get(), v1.get(), n, true};
  AdamWTensor b{p2.get(), dg.get(), m2.get(), v2.get(), n, true};
  for (int64_t step = 1; step <= 2; ++step) {
    cpu::adamw_step_multi(&h, 1, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step, scale);
    cuda::adamw_step_multi(&a, 1, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step);
    cuda::adamw_step_multi(&b, 1, 1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, step, scale);
  }
  EXPECT_BITWISE(p2.download(), p1.download(), "grad_scale param");
  EXPECT_BITWISE(m2.download(), m1.download(), "grad_scale m");
  EXPECT_BITWISE(v2.download(), v1.download(), "grad_scale v");
  EXPECT_BITWISE(dg.download(), g, "grad_scale leaves the gradient");
  expect_close(p2.download(), p, "grad_scale param vs cpu");
}

// ---- knowledge distillation ---------------------------------------------------------------------

namespace {

// Teacher top-k of logits t [rows, V] at temperature tau: ids by descending logit and
// log-probs over the whole vocabulary; a fraction of the ids set to −1 ("on another shard").
void make_topk(const std::vector<float>& t, int64_t rows, int64_t V, int64_t k, float tau,
               double minus_one, uint64_t stream, std::vector<int32_t>& ids,
               std::vector<float>& logp) {
  ids.assign(rows * k, 0);
  logp.assign(rows * k, 0.0f);
  std::vector<int32_t> order(V);
  for (int64_t r = 0; r < rows; ++r) {
    const float* x = t.data() + r * V;
    double m = -1e300, s = 0;
    for (int64_t v = 0; v < V; ++v) m = std::max(m, double(x[v]) / tau);
    for (int64_t v = 0; v < V; ++v) s += std::exp(double(x[v]) / tau - m);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return x[a] > x[b]; });
    for (int64_t i = 0; i < k; ++i) {
      ids[r * k + i] = order[i];
      logp[r * k + i] = float(double(x[order[i]]) / tau - m - std::log(s));
      if (rng::uniform(kSeed, stream, r * k + i) < minus_one) ids[r * k + i] = -1;
    }
  }
}

}  // namespace

TEST(CudaKd, ShardIdsBitwiseEqualCpu) {
  const int64_t n = 10007;
  const int32_t V = 50000;
  const std::vector<int32_t> ids = randint(size_t(n), 990, V);
  Dev<int32_t> d_ids(ids), d_out{size_t(n)};
  for (int32_t begin : {0, 12500, 37500}) {
    std::vector<int32_t> out(static_cast<size_t>(n));
    cpu::vocab_shard_ids(out.data(), ids.data(), n, begin, V / 4);
    cuda::vocab_shard_ids(d_out, d_ids, n, begin, V / 4);
    EXPECT_BITWISE(d_out.download(), out, "vocab_shard_ids begin " + std::to_string(begin));
  }
}

TEST(CudaKd, TopkAndDenseKernelsMatchCpu) {
  struct Case {
    int64_t rows, V, k;
    float tau;
    double minus_one;
  };
  const Case cases[] = {{1, 37, 1, 1.0f, 0.0},    {9, 1000, 5, 2.0f, 0.0},
                        {65, 5003, 20, 1.0f, 0.3}, {4, 70000, 64, 1.5f, 0.5},
                        {300, 257, 8, 0.7f, 0.0}};
  uint64_t stream = 900;
  for (const Case& c : cases) {
    const int64_t rows = c.rows, V = c.V, k = c.k;
    const float inv_tau = 1.0f / c.tau;
    const std::string what = "kd rows,V,k = " + str({rows, V, k});
    const std::vector<float> z = randn(rows * V, ++stream, 2.0), t = randn(rows * V, ++stream, 3.0);
    const std::vector<float> d0 = randn(rows * V, ++stream, 0.1);
    std::vector<int32_t> ids;
    std::vector<float> logp;
    make_topk(t, rows, V, k, c.tau, c.minus_one, ++stream, ids, logp);
    Dev<float> d_z(z), d_t(t), d_logp(logp), d_lse(rows), d_lset(rows), d_kl(rows), d_q(rows);
    Dev<float> d_d(d0);
    Dev<int32_t> d_ids(ids);

    std::vector<float> lse(rows), lset(rows);
    cpu::kd_logsumexp(lse.data(), z.data(), rows, V, inv_tau);
    cpu::kd_logsumexp(lset.data(), t.data(), rows, V, inv_tau);
    cuda::kd_logsumexp(d_lse, d_z, rows, V, inv_tau);
    const std::vector<float> lse1 = d_lse.download();
    expect_close(lse1, lse, what + " kd_logsumexp");
    cuda::kd_logsumexp(d_lse, d_z, rows, V, inv_tau);
    EXPECT_BITWISE(d_lse.download(), lse1, what + " kd_logsumexp rerun");
    d_lse.upload(lse);
    d_lset.upload(lset);

    for (int tail : {0, 1}) {
      const std::string w = what + (tail ? " bucket" : " renormalize");
      std::vector<float> kl(rows), q(rows);
      cpu::kd_topk_shard_forward(kl.data(), q.data(), z.data(), lse.data(), ids.data(),
                                 logp.data(), rows, V, k, inv_tau, tail);
      cuda::kd_topk_shard_forward(d_kl, d_q, d_z, d_lse, d_ids, d_logp, rows, V, k, inv_tau, tail);
      const std::vector<float> kl1 = d_kl.download(), q1 = d_q.download();
      expect_close(kl1, kl, w + " shard kl");
      if (tail == 1) {
        // A float sum over the vocabulary: the CPU's own error reaches ~1e-5 at V = 70000, so
        // the GPU is held to 1e-5 against a double sum and to 3e-5 against the CPU.
        std::vector<float> qref(rows);
        for (int64_t r = 0; r < rows; ++r) {
          std::vector<char> in_topk(V, 0);
          for (int64_t i = 0; i < k; ++i)
            if (ids[r * k + i] >= 0) in_topk[ids[r * k + i]] = 1;
          double sq = 0;
          for (int64_t v = 0; v < V; ++v)
            if (!in_topk[v]) sq += std::exp(double(z[r * V + v] * inv_tau) - double(lse[r]));
          qref[r] = float(sq);
        }
        expect_close(q1, qref, w + " shard tail_q (double reference)");
        expect_close(q1, q, w + " shard tail_q", 3e-5);
      }
      else EXPECT_BITWISE(q1, q, w + " tail_q (zeros)");
      cuda::kd_topk_shard_forward(d_kl, d_q, d_z, d_lse, d_ids, d_logp, rows, V, k, inv_tau, tail);
      EXPECT_BITWISE(d_kl.download(), kl1, w + " shard kl rerun");
      EXPECT_BITWISE(d_q.download(), q1, w + " shard tail_q rerun");
      if (tail == 1) {
        d_kl.upload(kl);
        d_q.upload(q);
        cpu::kd_bucket_finish(kl.data(), q.data(), logp.data(), rows, k);
        cuda::kd_bucket_finish(d_kl, d_q, d_logp, rows, k);
        expect_close(d_kl.download(), kl, w + " bucket_finish kl");
        expect_close(d_q.download(), q, w + " bucket_finish tail_q");
        d_q.upload(q);
      }
      // The gradient alone (dlogits from zero), then added onto random dlogits.
      for (bool accumulate : {false, true}) {
        const std::vector<float> start = accumulate ? d0 : std::vector<float>(rows * V, 0.0f);
        const std::string wb =
            w + (accumulate ? " topk backward (+= onto random)" : " topk backward");
        std::vector<float> d = start;
        cpu::kd_topk_backward(d.data(), z.data(), lse.data(), q.data(), ids.data(), logp.data(),
                              rows, V, k, inv_tau, tail, 0.37f);
        d_d.upload(start);
        cuda::kd_topk_backward(d_d, d_z, d_lse, d_q, d_ids, d_logp, rows, V, k, inv_tau, tail,
                               0.37f);
        const std::vector<float> g1 = d_d.download();
        expect_close(g1, d, wb);
        d_d.upload(start);
        cuda::kd_topk_backward(d_d, d_z, d_lse, d_q, d_ids, d_logp, rows, V, k, inv_tau, tail,
                               0.37f);
        EXPECT_BITWISE(d_d.download(), g1, wb + " rerun");
      }
    }

    std::vector<float> kl(rows);
    cpu::kd_dense_shard_forward(kl.data(), z.data(), t.data(), lse.data(), lset.data(), rows, V,
                                inv_tau);
    cuda::kd_dense_shard_forward(d_kl, d_z, d_t, d_lse, d_lset, rows, V, inv_tau);
    const std::vector<float> kl1 = d_kl.download();
    std::vector<float> klref(rows);  // as tail_q above: a double reference, 3e-5 to the CPU
    for (int64_t r = 0; r < rows; ++r) {
      double sum = 0;
      const double lt = lset[r], dl = double(lset[r] - lse[r]);
      for (int64_t v = 0; v < V; ++v) {
        const float tv = t[r * V + v], zv = z[r * V + v];
        sum += std::exp(double(tv * inv_tau) - lt) * (double((tv - zv) * inv_tau) - dl);
      }
      klref[r] = float(sum);
    }
    expect_close(kl1, klref, what + " dense kl (double reference)");
    expect_close(kl1, kl, what + " dense kl", 3e-5);
    cuda::kd_dense_shard_forward(d_kl, d_z, d_t, d_lse, d_lset, rows, V, inv_tau);
    EXPECT_BITWISE(d_kl.download(), kl1, what + " dense kl rerun");
    for (bool accumulate : {false, true}) {
      const std::vector<float> start = accumulate ? d0 : std::vector<float>(rows * V, 0.0f);
      const std::string wb =
          what + (accumulate ? " dense backward (+= onto random)" : " dense backward");
      std::vector<float> d = start;
      cpu::kd_dense_backward(d.data(), z.data(), lse.data(), t.data(), lset.data(), rows, V,
                             inv_tau, 0.37f);
      d_d.upload(start);
      cuda::kd_dense_backward(d_d, d_z, d_lse, d_t, d_lset, rows, V, inv_tau, 0.37f);
      const std::vector<float> g1 = d_d.download();
      expect_close(g1, d, wb);
      d_d.upload(start);
      cuda::kd_dense_backward(d_d, d_z, d_lse, d_t, d_lset, rows, V, inv_tau, 0.37f);
      EXPECT_BITWISE(d_d.download(), g1, wb + " rerun");
    }
  }
}

// ---- a corpus's top-k (generation) -------------------------------------------------------------

// The same ids as the CPU, bitwise, and log-probs within rounding of its (the double Σ exp is
// summed in a tree instead of in order): rows of distinct values, of quarter steps (many ties:
// the ids decide, -0 ties with +0), of one value throughout (every key's id bytes decide), -inf
// entries; k from 1 to the shared-memory sort's limit, above it (the sort in global memory) and
// k = V. Reruns are bitwise.
TEST(CudaTopkLogSoftmax, SameIdsAsCpuAndLogProbsToRounding) {
  struct Case {
    int64_t rows, V, k;
    double tau;
  };
  const Case cases[] = {{1, 37, 1, 1.0},    {9, 1000, 5, 2.0},  {65, 5003, 32, 1.0},
                        {6, 300, 300, 0.7}, {3, 40000, cuda::kSharedSortTopK, 1.5},
                        {3, 5000, cuda::kSharedSortTopK + 476, 1.0}, {3, 2100, 2100, 0.9}};
  uint64_t stream = 1200;
  for (const Case& c : cases) {
    const int64_t rows = c.rows, V = c.V, k = c.k;
    const std::string what = "topk_log_softmax rows,V,k = " + str({rows, V, k});
    std::vector<float> x = randn(rows * V, ++stream, 3.0);
    for (int64_t v = 0; v < V; ++v) {
      if (rows > 1) x[V + v] = std::round(x[V + v] * 4) / 4;
      if (rows > 2) x[2 * V + v] = 0.5f;
    }
    x[0] = -INFINITY, x[V / 2] = -INFINITY, x[V - 1] = -0.0f;
    std::vector<int32_t> ids(rows * k);
    std::vector<float> logprobs(rows * k);
    cpu::topk_log_softmax(ids.data(), logprobs.data(), x.data(), rows, V, k, c.tau);
    Dev<float> d_x(x), d_logprobs{size_t(rows * k)};
    Dev<int32_t> d_ids{size_t(rows * k)};
    cuda::topk_log_softmax(d_ids, d_logprobs, d_x, rows, V, k, c.tau);
    const std::vector<int32_t> got_ids = d_ids.download();
    const std::vector<float> got = d_logprobs.download();
    EXPECT_BITWISE(got_ids, ids, what + " ids");
    for (int64_t i = 0; i < rows * k; ++i) {
      const float w = logprobs[i];  // -inf where k reaches the -inf entries
      ASSERT_TRUE(got[i] == w || std::abs(got[i] - w) <= 2.5e-7f * std::max(1.0f, std::abs(w)))
          << what << " logprob " << i << ": " << got[i] << " vs " << w;
    }
    cuda::topk_log_softmax(d_ids, d_logprobs, d_x, rows, V, k, c.tau);
    EXPECT_BITWISE(d_ids.download(), got_ids, what + " ids rerun");
    EXPECT_BITWISE(d_logprobs.download(), got, what + " logprobs rerun");
  }
}

// Sampled tokens: the device's draw against the CPU's sample_token, row by row, on rows of
// distinct values, of ties, and flat ones (a top_p nucleus of thousands of tokens), each with
// its own u (computed on the device from the row's stream): greedy, plain sampling, top_k (1,
// 40, 1024, 1500, V), top_p alone and with top_k, V both below and above 1024. Equal token for
// token (the device's fixed-point sums differ from the CPU's double ones by rounding: a token
// could differ only if u·total fell within it of a boundary, which these draws do not), and
// rows with infinities and NaNs.
TEST(CudaSampleTokens, SameTokensAsTheCpu) {
  for (const int64_t V : {int64_t(700), int64_t(5000)}) {
    const int64_t rows = 48;
    std::vector<float> x = randn(rows * V, 1300 + V, 2.0);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t v = 0; v < V; ++v) {
        float& e = x[r * V + v];
        if (r % 3 == 1) e = std::round(e * 2) / 2;  // ties
        if (r % 3 == 2) e *= 0.01f;                 // nearly flat
      }
    // Rows without a finite weight (a diverged teacher's): one +inf, two (ties: the smaller
    // id), a NaN of either sign, all -inf. Both sides take the first in descending-key order.
    const float inf = INFINITY, nan = std::numeric_limits<float>::quiet_NaN();
    x[3 * V + 17] = inf;
    x[4 * V + V / 2] = inf, x[4 * V + 5] = inf;
    x[5 * V + V / 3] = nan;
    x[6 * V + 9] = -nan;
    std::fill(x.begin() + 7 * V, x.begin() + 8 * V, -inf);
    const RowDraws draws{kSeed, uint64_t(1400 + V), 0, 3};
    Dev<float> d_x(x);
    Dev<int32_t> d_tokens(static_cast<size_t>(rows));
    const SamplingParams params[] = {
        {0.0, 0, 1.0},    {1.0, 0, 1.0},   {0.7, 0, 1.0},   {1.0, 1, 1.0},
        {0.9, 40, 1.0},   {1.0, 1024, 1.0}, {1.0, 1500, 1.0}, {1.0, 5000, 1.0},
        {1.0, 0, 0.9},    {0.8, 0, 0.5},   {1.0, 60, 0.7},  {1.2, 2000, 0.95}};
    for (const SamplingParams& p : params) {
      const std::string what = "V " + std::to_string(V) + " temperature " +
                               std::to_string(p.temperature) + " top_k " +
                               std::to_string(p.top_k) + " top_p " + std::to_string(p.top_p);
      std::vector<int32_t> want(rows);
      cpu::sample_tokens(want.data(), x.data(), rows, V, draws, p);
      cuda::sample_tokens(d_tokens, d_x, rows, V, draws, p);
      const std::vector<int32_t> got = d_tokens.download();
      EXPECT_BITWISE(got, want, what);
      cuda::sample_tokens(d_tokens, d_x, rows, V, draws, p);
      EXPECT_BITWISE(d_tokens.download(), got, what + " rerun");
    }
  }
}

