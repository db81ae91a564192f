// y[M, N] = alpha · op(a)[M, K] @ op(b)[K, N] + beta · y, row-major, via OpenBLAS sgemm.
// The OpenMP-threaded OpenBLAS uses all OpenMP threads when called from serial code and runs
// single-threaded when called inside one of our parallel regions.
#include <cblas.h>

#include <algorithm>
#include <vector>

#include "core/cpu/kernels.h"

namespace retort::cpu {

void matmul(float* y, const float* a, bool ta, const float* b, bool tb, int64_t M, int64_t N,
            int64_t K, float alpha, float beta) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // empty sum: y = beta · y (beta = 0 overwrites, even NaN)
    if (beta == 0.0f) fill(y, M * N, 0.0f);
    else scale_inplace(y, M * N, beta);
    return;
  }
  const int64_t lda = ta ? M : K;  // stored a: [K, M] when transposed, else [M, K]
  const int64_t ldb = tb ? K : N;  // stored b: [N, K] when transposed, else [K, N]
  cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
              static_cast<blasint>(M), static_cast<blasint>(N), static_cast<blasint>(K), alpha, a,
              static_cast<blasint>(lda), b, static_cast<blasint>(ldb), beta, y,
              static_cast<blasint>(N));
}

}  // namespace retort::cpu

namespace retort::cpu {

// Mixed precision reference: both operands rounded to bfloat16 (nearest even), products
// accumulated in fp32 by sgemm, fp32 output — what a bf16 tensor-core matmul computes, up to
// the order of the fp32 accumulation.
void matmul_bf16(float* y, const float* a, bool ta, const float* b, bool tb, int64_t M, int64_t N,
                 int64_t K, float alpha, float beta) {
  std::vector<float> ra(size_t(M * K)), rb(size_t(K * N));
  std::vector<uint16_t> bits(std::max(ra.size(), rb.size()));
  f32_to_bf16(bits.data(), a, int64_t(ra.size()));
  bf16_to_f32(ra.data(), bits.data(), int64_t(ra.size()));
  f32_to_bf16(bits.data(), b, int64_t(rb.size()));
  bf16_to_f32(rb.data(), bits.data(), int64_t(rb.size()));
  matmul(y, ra.data(), ta, rb.data(), tb, M, N, K, alpha, beta);
}

// The operands widened exactly, then sgemm.
void matmul_bf16_rounded(float* y, const uint16_t* a, bool ta, const uint16_t* b, bool tb,
                         int64_t M, int64_t N, int64_t K, float alpha, float beta) {
  std::vector<float> ra(size_t(M * K)), rb(size_t(K * N));
  bf16_to_f32(ra.data(), a, int64_t(ra.size()));
  bf16_to_f32(rb.data(), b, int64_t(rb.size()));
  matmul(y, ra.data(), ta, rb.data(), tb, M, N, K, alpha, beta);
}

void matmul_bf16_rounded(uint16_t* y, const uint16_t* a, bool ta, const uint16_t* b, bool tb,
                         int64_t M, int64_t N, int64_t K, float alpha) {
  std::vector<float> out(size_t(M * N));
  matmul_bf16_rounded(out.data(), a, ta, b, tb, M, N, K, alpha, 0.0f);
  f32_to_bf16(y, out.data(), M * N);
}

void matmul_add(float* y, const float* c, const float* a, bool ta, const float* b, bool tb,
                int64_t M, int64_t N, int64_t K) {
  if (y != c) copy_bytes(y, c, M * N * int64_t(sizeof(float)));
  matmul(y, a, ta, b, tb, M, N, K, 1.0f, 1.0f);
}

void matmul_add(float* y, const float* c, const uint16_t* a, bool ta, const uint16_t* b, bool tb,
                int64_t M, int64_t N, int64_t K) {
  if (y != c) copy_bytes(y, c, M * N * int64_t(sizeof(float)));
  matmul_bf16_rounded(y, a, ta, b, tb, M, N, K, 1.0f, 1.0f);
}

}  // namespace retort::cpu
