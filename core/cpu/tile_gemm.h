// Single-threaded small GEMM for tiles inside our own OpenMP regions (attention).
// OpenBLAS 0.3.21 (Debian 12) serialises concurrent sgemm calls from several OpenMP threads
// on an internal buffer lock, so tiles use this register-blocked kernel instead.
//
//   C[M, N] = alpha · Σ_k a(m, k) · B[k, n]   (+ C[M, N] when accumulate)
//   a(m, k) = A[m·sam + k·sak]:  A row-major [M, K] → (sam, sak) = (lda, 1);
//                                 Aᵀ of a row-major [K, M] → (sam, sak) = (1, lda)
//   B rows are contiguous in n with row stride ldb; C rows have stride ldc.
// Written with GCC/Clang vector extensions (16 floats = one AVX-512 register, two AVX2 ones);
// the summation order over k is fixed, so results are deterministic.
#pragma once
#include <cstdint>

namespace retort::cpu {

namespace tile {

typedef float vf __attribute__((vector_size(64)));
typedef float vf_unaligned __attribute__((vector_size(64), aligned(4), may_alias));
constexpr int kW = 16;  // floats per vector

inline vf load(const float* p) { return *reinterpret_cast<const vf_unaligned*>(p); }
inline void store(float* p, vf v) { *reinterpret_cast<vf_unaligned*>(p) = v; }

// MR rows × NV·16 columns of C, all of K.
template <int MR, int NV>
inline void kernel(int64_t K, float alpha, const float* A, int64_t sam, int64_t sak,
                   const float* B, int64_t ldb, bool accumulate, float* C, int64_t ldc) {
  vf acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = vf{};
  for (int64_t k = 0; k < K; ++k) {
    const float* b = B + k * ldb;
    vf bv[NV];
    for (int j = 0; j < NV; ++j) bv[j] = load(b + j * kW);
    const float* a = A + k * sak;
    for (int i = 0; i < MR; ++i) {
      const float ai = a[i * sam];
      for (int j = 0; j < NV; ++j) acc[i][j] += ai * bv[j];
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) {
      float* c = C + i * ldc + j * kW;
      vf r = alpha * acc[i][j];
      if (accumulate) r += load(c);
      store(c, r);
    }
}

// All rows of one column panel of NV·16 columns.
template <int NV>
inline void panel(int64_t M, int64_t K, float alpha, const float* A, int64_t sam, int64_t sak,
                  const float* B, int64_t ldb, bool accumulate, float* C, int64_t ldc) {
  int64_t m = 0;
  for (; m + 8 <= M; m += 8)
    kernel<8, NV>(K, alpha, A + m * sam, sam, sak, B, ldb, accumulate, C + m * ldc, ldc);
  for (; m + 4 <= M; m += 4)
    kernel<4, NV>(K, alpha, A + m * sam, sam, sak, B, ldb, accumulate, C + m * ldc, ldc);
  for (; m < M; ++m)
    kernel<1, NV>(K, alpha, A + m * sam, sam, sak, B, ldb, accumulate, C + m * ldc, ldc);
}

}  // namespace tile

inline void tile_gemm(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t sam,
                      int64_t sak, const float* B, int64_t ldb, bool accumulate, float* C,
                      int64_t ldc) {
  int64_t n = 0;
  for (; n + 2 * tile::kW <= N; n += 2 * tile::kW)
    tile::panel<2>(M, K, alpha, A, sam, sak, B + n, ldb, accumulate, C + n, ldc);
  for (; n + tile::kW <= N; n += tile::kW)
    tile::panel<1>(M, K, alpha, A, sam, sak, B + n, ldb, accumulate, C + n, ldc);
  if (n < N)  // fewer than 16 columns left: plain loops, same k order
    for (int64_t m = 0; m < M; ++m)
      for (int64_t c = n; c < N; ++c) {
        float s = 0.0f;
        for (int64_t k = 0; k < K; ++k) s += A[m * sam + k * sak] * B[k * ldb + c];
        C[m * ldc + c] = alpha * s + (accumulate ? C[m * ldc + c] : 0.0f);
      }
}

}  // namespace retort::cpu
