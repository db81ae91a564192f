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
// Parallel over (b, kv head) when there are enough of them: a task owns dk, dv of its kv head
// and dq of the H/Hkv query heads that share it, and visits (head, tile) in a fixed order, so
// the sums over query heads and tiles are deterministic without atomics or extra buffers.
// Otherwise two passes (dq by query tile, then dk/dv by key tile); see backward_two_pass.
#include <omp.h>

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

namespace {

// Everything the backward tasks share.
struct BwdArgs {
  float *dq, *dk, *dv;
  const float *dout, *q, *k, *v, *out, *lse;
  int64_t B, T, H, Hkv, hd, group, ntiles, ldq, ldk;
  float scale;
};

// The query rows [t0, t1) of head h against the key columns [s0, s0 + ns):
//   P  = exp(scale · Q Kᵀ − lse)   (0 where key > query)
//   dS = P ∘ (dO Vᵀ − D),  D_i = Σ_d dO_id O_id
// Kt, Vt: kᵀ, vᵀ of those keys, [hd, ldt] with column 0 = key s0. P, dS: [nq, ns].
void probs_and_dscores(const BwdArgs& a, int64_t b, int64_t h, int64_t t0, int64_t t1,
                       int64_t s0, int64_t ns, const float* Kt, const float* Vt, int64_t ldt,
                       float* P, float* dS, float* D) {
  const int64_t nq = t1 - t0, row0 = (b * a.T + t0) * a.H + h;
  const float* Q = a.q + row0 * a.hd;
  const float* O = a.out + row0 * a.hd;
  const float* dO = a.dout + row0 * a.hd;
  const float* L = a.lse + (b * a.H + h) * a.T + t0;
  tile_gemm(nq, ns, a.hd, a.scale, Q, a.ldq, 1, Kt, ldt, false, P, ns);  // scores
  tile_gemm(nq, ns, a.hd, 1.0f, dO, a.ldq, 1, Vt, ldt, false, dS, ns);   // dP
  for (int64_t i = 0; i < nq; ++i) {
    const float* o = O + i * a.ldq;
    const float* g = dO + i * a.ldq;
    float d = 0.0f;
#pragma omp simd reduction(+ : d)
    for (int64_t c = 0; c < a.hd; ++c) d += o[c] * g[c];
    D[i] = d;
  }
  for (int64_t i = 0; i < nq; ++i) {
    float* p = P + i * ns;
    float* ds = dS + i * ns;
    int64_t nvalid = t0 + i + 1 - s0;  // keys s0 .. t0+i
    nvalid = nvalid < 0 ? 0 : (nvalid > ns ? ns : nvalid);
    const float li = L[i], di = D[i];
    for (int64_t c = 0; c < nvalid; ++c) {
      const float pc = exp_fast(p[c] - li);
      p[c] = pc;
      ds[c] = pc * (ds[c] - di);
    }
    for (int64_t c = nvalid; c < ns; ++c) p[c] = ds[c] = 0.0f;
  }
}

// One task per (b, kv head): owns dk, dv of the kv head and dq of its query heads; visits
// (head, query tile) in order. 5 tile products per tile. Needs B·Hkv ≥ threads to be busy.
void backward_by_kv_head(const BwdArgs& a) {
  const int64_t T = a.T, hd = a.hd, ldk = a.ldk;
#pragma omp parallel
  {
    std::vector<float> P(static_cast<size_t>(kTile * T)), dS(static_cast<size_t>(kTile * T));
    std::vector<float> D(static_cast<size_t>(kTile));
    std::vector<float> Kt(static_cast<size_t>(hd * T)), Vt(static_cast<size_t>(hd * T));
#pragma omp for schedule(static)
    for (int64_t task = 0; task < a.B * a.Hkv; ++task) {
      const int64_t b = task / a.Hkv, j = task % a.Hkv;
      const float* K = a.k + (b * T * a.Hkv + j) * hd;
      const float* V = a.v + (b * T * a.Hkv + j) * hd;
      float* dK = a.dk + (b * T * a.Hkv + j) * hd;
      float* dV = a.dv + (b * T * a.Hkv + j) * hd;
      for (int64_t t = 0; t < T; ++t) {
        std::memset(dK + t * ldk, 0, sizeof(float) * hd);
        std::memset(dV + t * ldk, 0, sizeof(float) * hd);
      }
      transpose_head(Kt.data(), T, K, ldk, T, hd);  // [hd, T]
      transpose_head(Vt.data(), T, V, ldk, T, hd);
      for (int64_t h = j * a.group; h < (j + 1) * a.group; ++h)
        for (int64_t tile = 0; tile < a.ntiles; ++tile) {
          const int64_t t0 = tile * kTile, t1 = t0 + kTile < T ? t0 + kTile : T;
          const int64_t nq = t1 - t0, nk = t1;
          const int64_t row0 = (b * T + t0) * a.H + h;
          probs_and_dscores(a, b, h, t0, t1, 0, nk, Kt.data(), Vt.data(), T, P.data(), dS.data(),
                            D.data());
          // dQ[nq, hd] = scale · dS K
          tile_gemm(nq, hd, nk, a.scale, dS.data(), nk, 1, K, ldk, false, a.dq + row0 * hd,
                    a.ldq);
          // dK[nk, hd] += scale · dSᵀ Q;  dV[nk, hd] += Pᵀ dO
          tile_gemm(nk, hd, nq, a.scale, dS.data(), 1, nk, a.q + row0 * hd, a.ldq, true, dK, ldk);
          tile_gemm(nk, hd, nq, 1.0f, P.data(), 1, nk, a.dout + row0 * hd, a.ldq, true, dV, ldk);
        }
    }
  }
}

// For few (b, kv head) pairs: pass 1, one task per (b, h, query tile), writes dq; pass 2, one
// task per (b, kv head, key tile), sums dk, dv over (head, query tile) in order.
// P and dP are computed twice (7 tile products per tile instead of 5) for the parallelism.
void backward_two_pass(const BwdArgs& a) {
  const int64_t T = a.T, hd = a.hd, ldk = a.ldk, nt = a.ntiles;
#pragma omp parallel
  {
    std::vector<float> P(static_cast<size_t>(kTile * T)), dS(static_cast<size_t>(kTile * T));
    std::vector<float> D(static_cast<size_t>(kTile));
    std::vector<float> Kt(static_cast<size_t>(hd * T)), Vt(static_cast<size_t>(hd * T));
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < a.B * a.H * nt; ++task) {
      const int64_t tile = nt - 1 - task / (a.B * a.H);  // largest first
      const int64_t bh = task % (a.B * a.H), b = bh / a.H, h = bh % a.H, j = h / a.group;
      const int64_t t0 = tile * kTile, t1 = t0 + kTile < T ? t0 + kTile : T, nk = t1;
      const float* K = a.k + (b * T * a.Hkv + j) * hd;
      const float* V = a.v + (b * T * a.Hkv + j) * hd;
      transpose_head(Kt.data(), nk, K, ldk, nk, hd);
      transpose_head(Vt.data(), nk, V, ldk, nk, hd);
      probs_and_dscores(a, b, h, t0, t1, 0, nk, Kt.data(), Vt.data(), nk, P.data(), dS.data(),
                        D.data());
      const int64_t row0 = (b * T + t0) * a.H + h;
      tile_gemm(t1 - t0, hd, nk, a.scale, dS.data(), nk, 1, K, ldk, false, a.dq + row0 * hd,
                a.ldq);
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < a.B * a.Hkv * nt; ++task) {
      const int64_t ktile = task / (a.B * a.Hkv);  // first key tiles see the most queries
      const int64_t bj = task % (a.B * a.Hkv), b = bj / a.Hkv, j = bj % a.Hkv;
      const int64_t s0 = ktile * kTile, s1 = s0 + kTile < T ? s0 + kTile : T, ns = s1 - s0;
      const float* K = a.k + ((b * T + s0) * a.Hkv + j) * hd;
      const float* V = a.v + ((b * T + s0) * a.Hkv + j) * hd;
      float* dK = a.dk + ((b * T + s0) * a.Hkv + j) * hd;
      float* dV = a.dv + ((b * T + s0) * a.Hkv + j) * hd;
      for (int64_t t = 0; t < ns; ++t) {
        std::memset(dK + t * ldk, 0, sizeof(float) * hd);
        std::memset(dV + t * ldk, 0, sizeof(float) * hd);
      }
      transpose_head(Kt.data(), ns, K, ldk, ns, hd);  // [hd, ns]
      transpose_head(Vt.data(), ns, V, ldk, ns, hd);
      for (int64_t h = j * a.group; h < (j + 1) * a.group; ++h)
        for (int64_t tile = ktile; tile < nt; ++tile) {  // query tiles that see these keys
          const int64_t t0 = tile * kTile, t1 = t0 + kTile < T ? t0 + kTile : T, nq = t1 - t0;
          const int64_t row0 = (b * T + t0) * a.H + h;
          probs_and_dscores(a, b, h, t0, t1, s0, ns, Kt.data(), Vt.data(), ns, P.data(),
                            dS.data(), D.data());
          tile_gemm(ns, hd, nq, a.scale, dS.data(), 1, ns, a.q + row0 * hd, a.ldq, true, dK, ldk);
          tile_gemm(ns, hd, nq, 1.0f, P.data(), 1, ns, a.dout + row0 * hd, a.ldq, true, dV, ldk);
        }
    }
  }
}

}  // namespace

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                        const float* k, const float* v, const float* out, const float* lse,
                        int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t hd) {
  BwdArgs a{dq, dk, dv, dout, q, k, v, out, lse, B, T, H, Hkv, hd, H / Hkv,
            (T + kTile - 1) / kTile, H * hd, Hkv * hd,
            static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)))};
  // Deterministic either way; which one runs depends only on the shapes and thread count.
  if (B * Hkv >= 2 * omp_get_max_threads()) backward_by_kv_head(a);
  else backward_two_pass(a);
}

}  // namespace retort::cpu
