// Causal self-attention with grouped-query heads, flash-style on the CPU.
//   q, out: [B, T, H, hd]; k, v: [B, T, Hkv, hd]; head h reads kv head h / (H/Hkv)
//   q, k, v and their gradients at their token pitches (AttentionPitches: windows of the
//   packed q|k|v product are read and written in place); out, dout whole
//   S = q kᵀ · (1/sqrt(hd)) with S_ij = −inf unless i − W < j ≤ i (W: the sliding window,
//   T when there is none);  P = softmax_rows(S);  out = P v
//   lse_i = logsumexp_j S_ij   (saved: [B, H, T])
// Work is cut into query tiles of kTile rows. A tile [t0, t1) only sees keys [t0 − W + 1, t1),
// so one thread holds at most kTile × T scores; the full T × T matrix never exists. Tile products
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

#include <algorithm>
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

// The keys query t sees: [first_key(t, W), t]. W: the window, 1..T.
inline int64_t first_key(int64_t t, int64_t W) { return t - W + 1 > 0 ? t - W + 1 : 0; }

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
                       const AttentionPitches& p, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                       int64_t hd, int64_t W) {
  const int64_t group = H / Hkv;
  const int64_t ntiles = (T + kTile - 1) / kTile;
  const int64_t ldo = H * hd;
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
      const int64_t k0 = first_key(t0, W), nq = t1 - t0, nk = t1 - k0;  // keys [k0, t1)
      const float* Q = q + (b * T + t0) * p.q + h * hd;
      const float* K = k + (b * T + k0) * p.k + j * hd;
      const float* V = v + (b * T + k0) * p.v + j * hd;
      float* O = out + (b * T + t0) * ldo + h * hd;
      float* L = lse + (b * H + h) * T + t0;
      // S[nq, nk] = scale · Q Kᵀ
      transpose_head(Kt.data(), nk, K, p.k, nk, hd);
      tile_gemm(nq, nk, hd, scale, Q, p.q, 1, Kt.data(), nk, false, S.data(), nk);
      for (int64_t i = 0; i < nq; ++i) {
        float* s = S.data() + i * nk;
        const int64_t lo = first_key(t0 + i, W) - k0, hi = t0 + i + 1 - k0;  // keys seen
        float m = -std::numeric_limits<float>::infinity();
#pragma omp simd reduction(max : m)
        for (int64_t c = lo; c < hi; ++c) m = s[c] > m ? s[c] : m;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int64_t c = lo; c < hi; ++c) {
          const float p = exp_fast(s[c] - m);
          s[c] = p;
          sum += p;
        }
        const float inv = 1.0f / sum;
        for (int64_t c = 0; c < lo; ++c) s[c] = 0.0f;
        for (int64_t c = lo; c < hi; ++c) s[c] *= inv;
        for (int64_t c = hi; c < nk; ++c) s[c] = 0.0f;
        L[i] = m + std::log(sum);
      }
      // O[nq, hd] = P V
      tile_gemm(nq, hd, nk, 1.0f, S.data(), nk, 1, V, p.v, false, O, ldo);
    }
  }
}

namespace {

// Everything the backward tasks share. ldo: out's and dout's pitch, H·hd.
struct BwdArgs {
  float *dq, *dk, *dv;
  const float *dout, *q, *k, *v, *out, *lse;
  AttentionPitches p;
  int64_t B, T, H, Hkv, hd, group, ntiles, ldo, W;  // W: the window, 1..T
  float scale;
  // Head `head` of token t of sequence b in a [B, T, heads, hd] operand of pitch `pitch`.
  template <class F>
  F* at(F* x, int64_t pitch, int64_t b, int64_t t, int64_t head) const {
    return x + (b * T + t) * pitch + head * hd;
  }
};

// The query rows [t0, t1) of head h against the key columns [s0, s0 + ns):
//   P  = exp(scale · Q Kᵀ − lse)   (0 where the query does not see the key)
//   dS = P ∘ (dO Vᵀ − D),  D_i = Σ_d dO_id O_id
// Kt, Vt: kᵀ, vᵀ of those keys, [hd, ldt] with column 0 = key s0. P, dS: [nq, ns].
void probs_and_dscores(const BwdArgs& a, int64_t b, int64_t h, int64_t t0, int64_t t1,
                       int64_t s0, int64_t ns, const float* Kt, const float* Vt, int64_t ldt,
                       float* P, float* dS, float* D) {
  const int64_t nq = t1 - t0;
  const float* Q = a.at(a.q, a.p.q, b, t0, h);
  const float* O = a.at(a.out, a.ldo, b, t0, h);
  const float* dO = a.at(a.dout, a.ldo, b, t0, h);
  const float* L = a.lse + (b * a.H + h) * a.T + t0;
  tile_gemm(nq, ns, a.hd, a.scale, Q, a.p.q, 1, Kt, ldt, false, P, ns);  // scores
  tile_gemm(nq, ns, a.hd, 1.0f, dO, a.ldo, 1, Vt, ldt, false, dS, ns);   // dP
  for (int64_t i = 0; i < nq; ++i) {
    const float* o = O + i * a.ldo;
    const float* g = dO + i * a.ldo;
    float d = 0.0f;
#pragma omp simd reduction(+ : d)
    for (int64_t c = 0; c < a.hd; ++c) d += o[c] * g[c];
    D[i] = d;
  }
  for (int64_t i = 0; i < nq; ++i) {
    float* p = P + i * ns;
    float* ds = dS + i * ns;
    const auto clamp = [ns](int64_t c) { return c < 0 ? 0 : (c > ns ? ns : c); };
    const int64_t lo = clamp(first_key(t0 + i, a.W) - s0), hi = clamp(t0 + i + 1 - s0);
    const float li = L[i], di = D[i];
    for (int64_t c = 0; c < lo; ++c) p[c] = ds[c] = 0.0f;
    for (int64_t c = lo; c < hi; ++c) {
      const float pc = exp_fast(p[c] - li);
      p[c] = pc;
      ds[c] = pc * (ds[c] - di);
    }
    for (int64_t c = hi; c < ns; ++c) p[c] = ds[c] = 0.0f;
  }
}

// One task per (b, kv head): owns dk, dv of the kv head and dq of its query heads; visits
// (head, query tile) in order. 5 tile products per tile. Needs B·Hkv ≥ threads to be busy.
void backward_by_kv_head(const BwdArgs& a) {
  const int64_t T = a.T, hd = a.hd;
  const AttentionPitches& p = a.p;
#pragma omp parallel
  {
    std::vector<float> P(static_cast<size_t>(kTile * T)), dS(static_cast<size_t>(kTile * T));
    std::vector<float> D(static_cast<size_t>(kTile));
    std::vector<float> Kt(static_cast<size_t>(hd * T)), Vt(static_cast<size_t>(hd * T));
#pragma omp for schedule(static)
    for (int64_t task = 0; task < a.B * a.Hkv; ++task) {
      const int64_t b = task / a.Hkv, j = task % a.Hkv;
      const float* K = a.at(a.k, p.k, b, 0, j);
      const float* V = a.at(a.v, p.v, b, 0, j);
      float* dK = a.at(a.dk, p.dk, b, 0, j);
      float* dV = a.at(a.dv, p.dv, b, 0, j);
      for (int64_t t = 0; t < T; ++t) {
        std::memset(dK + t * p.dk, 0, sizeof(float) * hd);
        std::memset(dV + t * p.dv, 0, sizeof(float) * hd);
      }
      transpose_head(Kt.data(), T, K, p.k, T, hd);  // [hd, T]
      transpose_head(Vt.data(), T, V, p.v, T, hd);
      for (int64_t h = j * a.group; h < (j + 1) * a.group; ++h)
        for (int64_t tile = 0; tile < a.ntiles; ++tile) {
          const int64_t t0 = tile * kTile, t1 = t0 + kTile < T ? t0 + kTile : T;
          const int64_t k0 = first_key(t0, a.W), nq = t1 - t0, nk = t1 - k0;  // keys [k0, t1)
          probs_and_dscores(a, b, h, t0, t1, k0, nk, Kt.data() + k0, Vt.data() + k0, T, P.data(),
                            dS.data(), D.data());
          // dQ[nq, hd] = scale · dS K
          tile_gemm(nq, hd, nk, a.scale, dS.data(), nk, 1, K + k0 * p.k, p.k, false,
                    a.at(a.dq, p.dq, b, t0, h), p.dq);
          // dK[nk, hd] += scale · dSᵀ Q;  dV[nk, hd] += Pᵀ dO
          tile_gemm(nk, hd, nq, a.scale, dS.data(), 1, nk, a.at(a.q, p.q, b, t0, h), p.q, true,
                    dK + k0 * p.dk, p.dk);
          tile_gemm(nk, hd, nq, 1.0f, P.data(), 1, nk, a.at(a.dout, a.ldo, b, t0, h), a.ldo,
                    true, dV + k0 * p.dv, p.dv);
        }
    }
  }
}

// For few (b, kv head) pairs: pass 1, one task per (b, h, query tile), writes dq; pass 2, one
// task per (b, kv head, key tile), sums dk, dv over (head, query tile) in order.
// P and dP are computed twice (7 tile products per tile instead of 5) for the parallelism.
void backward_two_pass(const BwdArgs& a) {
  const int64_t T = a.T, hd = a.hd, nt = a.ntiles;
  const AttentionPitches& p = a.p;
#pragma omp parallel
  {
    std::vector<float> P(static_cast<size_t>(kTile * T)), dS(static_cast<size_t>(kTile * T));
    std::vector<float> D(static_cast<size_t>(kTile));
    std::vector<float> Kt(static_cast<size_t>(hd * T)), Vt(static_cast<size_t>(hd * T));
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < a.B * a.H * nt; ++task) {
      const int64_t tile = nt - 1 - task / (a.B * a.H);  // largest first
      const int64_t bh = task % (a.B * a.H), b = bh / a.H, h = bh % a.H, j = h / a.group;
      const int64_t t0 = tile * kTile, t1 = t0 + kTile < T ? t0 + kTile : T;
      const int64_t k0 = first_key(t0, a.W), nk = t1 - k0;  // keys [k0, t1)
      const float* K = a.at(a.k, p.k, b, k0, j);
      const float* V = a.at(a.v, p.v, b, k0, j);
      transpose_head(Kt.data(), nk, K, p.k, nk, hd);
      transpose_head(Vt.data(), nk, V, p.v, nk, hd);
      probs_and_dscores(a, b, h, t0, t1, k0, nk, Kt.data(), Vt.data(), nk, P.data(), dS.data(),
                        D.data());
      tile_gemm(t1 - t0, hd, nk, a.scale, dS.data(), nk, 1, K, p.k, false,
                a.at(a.dq, p.dq, b, t0, h), p.dq);
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t task = 0; task < a.B * a.Hkv * nt; ++task) {
      const int64_t ktile = task / (a.B * a.Hkv);  // first key tiles see the most queries
      const int64_t bj = task % (a.B * a.Hkv), b = bj / a.Hkv, j = bj % a.Hkv;
      const int64_t s0 = ktile * kTile, s1 = s0 + kTile < T ? s0 + kTile : T, ns = s1 - s0;
      const float* K = a.at(a.k, p.k, b, s0, j);
      const float* V = a.at(a.v, p.v, b, s0, j);
      float* dK = a.at(a.dk, p.dk, b, s0, j);
      float* dV = a.at(a.dv, p.dv, b, s0, j);
      for (int64_t t = 0; t < ns; ++t) {
        std::memset(dK + t * p.dk, 0, sizeof(float) * hd);
        std::memset(dV + t * p.dv, 0, sizeof(float) * hd);
      }
      transpose_head(Kt.data(), ns, K, p.k, ns, hd);  // [hd, ns]
      transpose_head(Vt.data(), ns, V, p.v, ns, hd);
      // query tiles that see these keys: queries [s0, s1 + W − 1)
      const int64_t tile_end = std::min(nt, (s1 + a.W - 2) / kTile + 1);
      for (int64_t h = j * a.group; h < (j + 1) * a.group; ++h)
        for (int64_t tile = ktile; tile < tile_end; ++tile) {
          const int64_t t0 = tile * kTile, t1 = t0 + kTile < T ? t0 + kTile : T, nq = t1 - t0;
          probs_and_dscores(a, b, h, t0, t1, s0, ns, Kt.data(), Vt.data(), ns, P.data(),
                            dS.data(), D.data());
          tile_gemm(ns, hd, nq, a.scale, dS.data(), 1, ns, a.at(a.q, p.q, b, t0, h), p.q, true,
                    dK, p.dk);
          tile_gemm(ns, hd, nq, 1.0f, P.data(), 1, ns, a.at(a.dout, a.ldo, b, t0, h), a.ldo,
                    true, dV, p.dv);
        }
    }
  }
}

}  // namespace

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                        const float* k, const float* v, const float* out, const float* lse,
                        const AttentionPitches& p, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                        int64_t hd, int64_t W) {
  const BwdArgs a{dq, dk, dv, dout, q, k, v, out, lse, p, B, T, H, Hkv, hd, H / Hkv,
                  (T + kTile - 1) / kTile, H * hd, W,
                  static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)))};
  // Deterministic either way; which one runs depends only on the shapes and thread count.
  if (B * Hkv >= 2 * omp_get_max_threads()) backward_by_kv_head(a);
  else backward_two_pass(a);
}

}  // namespace retort::cpu
