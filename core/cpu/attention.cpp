// Causal self-attention with grouped-query heads, flash-style on the CPU.
//   q, out: [B, T, H, hd]; k, v: [B, T, Hkv, hd]; head h reads kv head h / (H/Hkv)
//   S = q kᵀ · (1/sqrt(hd)) with S_ij = −inf for j > i;  P = softmax_rows(S);  out = P v
//   lse_i = logsumexp_j S_ij   (saved: [B, H, T])
// Work is cut into query tiles of kTile rows. A tile [t0, t1) only sees keys [0, t1), so one
// thread holds at most kTile × T scores; the full T × T matrix never exists. Tile products
// use tile_gemm (register-blocked, single-threaded) with leading dimensions that step over
// the interleaved heads; only kᵀ (and vᵀ in backward) are copied, so that q kᵀ becomes a
// row-times-panel product.
//
// Backward (FlashAttention-2 style, P recomputed from lse):
//   P = exp(S − lse);  dP = dO vᵀ;  D_i = Σ_d dO_id O_id;  dS = P ∘ (dP − D)
//   dq = dS k / sqrt(hd);  dk = dSᵀ q / sqrt(hd);  dv = Pᵀ dO
// Parallel over (b, kv head): a task owns dk, dv of its kv head and dq of the H/Hkv query
// heads that share it, and visits (head, tile) in a fixed order, so the sums over query
// heads and tiles are deterministic without atomics or extra buffers.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "core/cpu/fast_math.h"
#include "core/cpu/kernels.h"
#include "core/cpu/tile_gemm.h"

namespace retort::cpu {

namespace {

constexpr int64_t kTile = 64;  // query rows per tile

// xt[c, t] = x[t·ld + c] for t < n, c < hd: a [n, hd] strided head slice, transposed.
// Blocks of 16 rows: the 16 source rows stay in L1 while the writes run contiguously.
inline void transpose_head(float* xt, int64_t ldt, const float* x, int64_t ld, int64_t n,
                           int64_t hd) {
  for (int64_t t0 = 0; t0 < n; t0 += 16) {
    const int64_t t1 = t0 + 16 < n ? t0 + 16 : n;
    for (int64_t c = 0; c < hd; ++c)
      for (int64_t t = t0; t < t1; ++t) xt[c * ldt + t] = x[t * ld + c];
  }
}

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t hd) {
  const int64_t group = H / Hkv;
  const int64_t ntiles = (T + kTile - 1) / kTile;
  const int64_t ldq = H * hd, ldk = Hkv * hd;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  const int64_t ntasks = B * H * ntiles;
#pragma omp parallel
  {
    std::vector<float> S(static_cast<size_t>(kTile * T));   // this thread's score tile
    std::vector<float> Kt(static_cast<size_t>(hd * T));     // kᵀ of the keys it sees
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < ntasks; ++task) {
      // Largest tiles first (they cost the most), then heads and batches.
      const int64_t tile = ntiles - 1 - task / (B * H);
      const int64_t bh = task % (B * H), b = bh / H, h = bh % H, j = h / group;
      const int64_t t0 = tile * kTile, t1 = t0 + kTile < T ? t0 + kTile : T;
      const int64_t nq = t1 - t0, nk = t1;
      const float* Q = q + ((b * T + t0) * H + h) * hd;
      const float* K = k + (b * T * Hkv + j) * hd;
      const float* V = v + (b * T * Hkv + j) * hd;
      float* O = out + ((b * T + t0) * H + h) * hd;
      float* L = lse + (b * H + h) * T + t0;
      // S[nq, nk] = scale · Q Kᵀ
      transpose_head(Kt.data(), nk, K, ldk, nk, hd);
      tile_gemm(nq, nk, hd, scale, Q, ldq, 1, Kt.data(), nk, false, S.data(), nk);
      for (int64_t i = 0; i < nq; ++i) {
        float* s = S.data() + i * nk;
        const int64_t nvalid = t0 + i + 1;  // keys 0..t0+i
        float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
        for (int64_t c = 0; c < nvalid; ++c) m = s[c] > m ? s[c] : m;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t c = 0; c < nvalid; ++c) {
          const float p = exp_fast(s[c] - m);
          s[c] = p;
          sum += p;
        }
        const float inv = 1.0f / sum;
        for (int64_t c = 0; c < nvalid; ++c) s[c] *= inv;
        for (int64_t c = nvalid; c < nk; ++c) s[c] = 0.0f;
        L[i] = m + std::log(sum);
      }
      // O[nq, hd] = P V
      tile_gemm(nq, hd, nk, 1.0f, S.data(), nk, 1, V, ldk, false, O, ldq);
    }
  }
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                        const float* k, const float* v, const float* out, const float* lse,
                        int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t hd) {
  const int64_t group = H / Hkv;
  const int64_t ntiles = (T + kTile - 1) / kTile;
  const int64_t ldq = H * hd, ldk = Hkv * hd;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  const int64_t ntasks = B * Hkv;
#pragma omp parallel
  {
    std::vector<float> P(static_cast<size_t>(kTile * T)), dS(static_cast<size_t>(kTile * T));
    std::vector<float> D(static_cast<size_t>(kTile));
    std::vector<float> Kt(static_cast<size_t>(hd * T)), Vt(static_cast<size_t>(hd * T));
#pragma omp for schedule(static)
    for (int64_t task = 0; task < ntasks; ++task) {
      const int64_t b = task / Hkv, j = task % Hkv;
      const float* K = k + (b * T * Hkv + j) * hd;
      const float* V = v + (b * T * Hkv + j) * hd;
      float* dK = dk + (b * T * Hkv + j) * hd;
      float* dV = dv + (b * T * Hkv + j) * hd;
      for (int64_t t = 0; t < T; ++t) {
        std::memset(dK + t * ldk, 0, sizeof(float) * hd);
        std::memset(dV + t * ldk, 0, sizeof(float) * hd);
      }
      transpose_head(Kt.data(), T, K, ldk, T, hd);  // [hd, T]
      transpose_head(Vt.data(), T, V, ldk, T, hd);
      for (int64_t h = j * group; h < (j + 1) * group; ++h)
        for (int64_t tile = 0; tile < ntiles; ++tile) {
          const int64_t t0 = tile * kTile, t1 = t0 + kTile < T ? t0 + kTile : T;
          const int64_t nq = t1 - t0, nk = t1;
          const int64_t row0 = (b * T + t0) * H + h;  // first (token, head) row of the tile
          const float* Q = q + row0 * hd;
          const float* O = out + row0 * hd;
          const float* dO = dout + row0 * hd;
          float* dQ = dq + row0 * hd;
          const float* L = lse + (b * H + h) * T + t0;
          // P[nq, nk] = exp(scale · Q Kᵀ − lse), causal entries only
          tile_gemm(nq, nk, hd, scale, Q, ldq, 1, Kt.data(), T, false, P.data(), nk);
          // dS[nq, nk] = dO Vᵀ (dP for now)
          tile_gemm(nq, nk, hd, 1.0f, dO, ldq, 1, Vt.data(), T, false, dS.data(), nk);
          for (int64_t i = 0; i < nq; ++i) {
            const float* o = O + i * ldq;
            const float* g = dO + i * ldq;
            float d = 0.0f;
#pragma omp simd reduction(+ : d)
            for (int64_t c = 0; c < hd; ++c) d += o[c] * g[c];
            D[i] = d;
          }
          for (int64_t i = 0; i < nq; ++i) {
            float* p = P.data() + i * nk;
            float* ds = dS.data() + i * nk;
            const int64_t nvalid = t0 + i + 1;
            const float li = L[i], di = D[i];
            for (int64_t c = 0; c < nvalid; ++c) {
              const float pc = exp_fast(p[c] - li);
              p[c] = pc;
              ds[c] = pc * (ds[c] - di);
            }
            for (int64_t c = nvalid; c < nk; ++c) p[c] = ds[c] = 0.0f;
          }
          // dQ[nq, hd] = scale · dS K
          tile_gemm(nq, hd, nk, scale, dS.data(), nk, 1, K, ldk, false, dQ, ldq);
          // dK[nk, hd] += scale · dSᵀ Q;  dV[nk, hd] += Pᵀ dO
          tile_gemm(nk, hd, nq, scale, dS.data(), 1, nk, Q, ldq, true, dK, ldk);
          tile_gemm(nk, hd, nq, 1.0f, P.data(), 1, nk, dO, ldq, true, dV, ldk);
        }
    }
  }
}

}  // namespace retort::cpu
