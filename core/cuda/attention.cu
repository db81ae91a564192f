// Causal self-attention with grouped-query heads: the plain tiled (flash-style) CUDA path,
// fp32 SIMT, the reference/fallback for a faster library path. Math as core/cpu/attention.cpp:
//   q, out: [B, T, H, hd]; k, v: [B, T, Hkv, hd]; head h reads kv head j = h / (H/Hkv)
//   q, k, v and their gradients at their token pitches (AttentionPitches: windows of the
//   packed q|k|v product read and written in place); out, dout whole
//   S = q kᵀ · scale (scale = 1/sqrt(hd)), S_ij = −inf unless i − W < j ≤ i (W: the sliding
//   window, 1..T; T: none);  P = softmax_rows(S);  out = P v
//   lse_i = logsumexp_j S_ij   ([B, H, T], saved for backward)
// Backward (FlashAttention-2, P recomputed from lse):
//   P = exp(S − lse);  dP = dO vᵀ;  D_i = Σ_d dO_id O_id;  dS = P ∘ (dP − D)
//   dq = scale · dS k;  dk = scale · dSᵀ q;  dv = Pᵀ dO
//
// Thread mapping (every kernel): 256 threads as a 16 × 16 grid (tx = tid % 16, ty = tid / 16).
// A tile of BR rows × BR columns of S is computed as (BR/16) × (BR/16) register micro-tiles:
// thread (tx, ty) owns rows ty + 16a and columns tx + 16b. An output tile [BR, hd] is owned the
// same way by rows, with head-dim columns tx + 16c, c < DC (hd ≤ 16·DC). Tiles live in shared
// memory with a row stride of hd + 1 (odd for even hd: the 16 rows a warp reads in one step
// fall in 16 different banks). Row reductions (max, sum) are xor shuffles over the 16 lanes
// that share a row: fixed order.
//
// Kernels (BR = 64 rows per tile forward; backward 64 for hd ≤ 64, else 32 to fit shared memory):
//   forward:  grid (B·H, query tiles), largest tiles first; online softmax over the key tiles
//             from the window's first to the diagonal; K and V tiles take turns in one shared
//             buffer.
//   D:        one warp per (b, t, h) row: D = Σ dO·O.
//   dq:       grid (B·H, query tiles); loops the key tiles it sees, recomputes P and dS.
//   dk, dv:   grid (B·Hkv, key tiles): the block owns dk, dv of its key tile and loops over the
//             group's query heads h and the query tiles that see it in a fixed order — the sum
//             over GQA heads is deterministic with no atomics and no extra buffers.
// P and dP are computed twice in backward (in dq and in dk/dv), the price of owning every
// output in one block. Expected speed: smem-bound SIMT, a few TFLOP/s fp32 — a fallback.
#include <cmath>

#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"

namespace retort::cuda {

namespace {

constexpr int kThreads = 256;  // 16 × 16
constexpr int kMaxHeadDim = 256;

// dst[r, c] (row stride ld) = src[(r0 + r)·lds + c] for r < nrows, c < hd; zero for rows ≥ T.
__device__ __forceinline__ void load_rows(float* dst, int ld, const float* src, int64_t lds,
                                          int r0, int nrows, int T, int hd) {
  for (int idx = threadIdx.x; idx < nrows * hd; idx += kThreads) {
    const int r = idx / hd, c = idx - r * hd, t = r0 + r;
    dst[r * ld + c] = t < T ? src[static_cast<int64_t>(t) * lds + c] : 0.0f;
  }
}

// dst[r] = src[r0 + r] for r < n (0 beyond T): lse or D of a query tile.
__device__ __forceinline__ void load_vec(float* dst, const float* src, int r0, int n, int T) {
  for (int r = threadIdx.x; r < n; r += kThreads) dst[r] = r0 + r < T ? src[r0 + r] : 0.0f;
}

// Whether query qi sees key `key` (causal, within the window W).
__device__ __forceinline__ bool visible(int key, int qi, int W) { return key <= qi && qi - key < W; }

// The first key tile (of BR keys) a query tile starting at t0 sees.
template <int BR>
__device__ __forceinline__ int first_key_tile(int t0, int W) {
  return t0 - W + 1 > 0 ? (t0 - W + 1) / BR * BR : 0;
}

// Max / sum over the 16 lanes (tx = 0..15) that hold one row of a micro-tile.
__device__ __forceinline__ float row16_max(float v) {
#pragma unroll
  for (int off = 8; off > 0; off /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
  return v;
}
__device__ __forceinline__ float row16_sum(float v) {
#pragma unroll
  for (int off = 8; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// ---- forward -------------------------------------------------------------------------------
// Shared memory: Qs [BR][ld] | KVs [BR][ld] (K, then V of the same key tile) | Ps [BR][BR+1].
template <int BR, int DC>
__global__ void __launch_bounds__(kThreads)
    attention_forward_kernel(float* out, float* lse, const float* q, const float* k,
                             const float* v, AttentionPitches p, int T, int H, int Hkv, int hd,
                             int W, float scale) {
  constexpr int RA = BR / 16;  // rows (queries) per thread; also keys per thread
  extern __shared__ float smem[];
  const int ld = hd + 1, ldp = BR + 1;
  float* Qs = smem;
  float* KVs = Qs + BR * ld;
  float* Ps = KVs + BR * ld;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int bh = blockIdx.x, b = bh / H, h = bh % H, j = h / (H / Hkv);
  const int t0 = (gridDim.y - 1 - blockIdx.y) * BR;  // largest tiles first
  const int64_t bT = static_cast<int64_t>(b) * T;
  const float* Qg = q + bT * p.q + h * hd;
  const float* Kg = k + bT * p.k + j * hd;
  const float* Vg = v + bT * p.v + j * hd;

  load_rows(Qs, ld, Qg, p.q, t0, BR, T, hd);
  float o[RA][DC], m[RA], l[RA];
#pragma unroll
  for (int a = 0; a < RA; ++a) {
    m[a] = -INFINITY;
    l[a] = 0.0f;
#pragma unroll
    for (int c = 0; c < DC; ++c) o[a][c] = 0.0f;
  }
  const int kend = T < t0 + BR ? T : t0 + BR;  // keys this tile can see: [t0 − W + 1, kend)
  for (int s0 = first_key_tile<BR>(t0, W); s0 < kend; s0 += BR) {
    __syncthreads();  // the previous tile's readers of KVs and Ps are done
    load_rows(KVs, ld, Kg, p.k, s0, BR, T, hd);
    __syncthreads();
    float s[RA][RA];
#pragma unroll
    for (int a = 0; a < RA; ++a)
#pragma unroll
      for (int bb = 0; bb < RA; ++bb) s[a][bb] = 0.0f;
#pragma unroll 4
    for (int d = 0; d < hd; ++d) {
      float qa[RA], kb[RA];
#pragma unroll
      for (int a = 0; a < RA; ++a) qa[a] = Qs[(ty + 16 * a) * ld + d];
#pragma unroll
      for (int bb = 0; bb < RA; ++bb) kb[bb] = KVs[(tx + 16 * bb) * ld + d];
#pragma unroll
      for (int a = 0; a < RA; ++a)
#pragma unroll
        for (int bb = 0; bb < RA; ++bb) s[a][bb] += qa[a] * kb[bb];
    }
    // Online softmax. A row may see no key of a tile (the window starts later): m stays −inf,
    // and exponents are taken from 0 instead, giving p = 0, corr = 0 (o and l are still 0).
#pragma unroll
    for (int a = 0; a < RA; ++a) {
      const int qi = t0 + ty + 16 * a;
      float mx = -INFINITY;
#pragma unroll
      for (int bb = 0; bb < RA; ++bb) {
        const int key = s0 + tx + 16 * bb;
        s[a][bb] = visible(key, qi, W) && key < T ? s[a][bb] * scale : -INFINITY;
        mx = fmaxf(mx, s[a][bb]);
      }
      const float mnew = fmaxf(m[a], row16_max(mx));
      const float mref = mnew == -INFINITY ? 0.0f : mnew;
      const float corr = expf(m[a] - mref);  // 0 while m = −inf
      float rs = 0.0f;
#pragma unroll
      for (int bb = 0; bb < RA; ++bb) {
        const float p = expf(s[a][bb] - mref);
        Ps[(ty + 16 * a) * ldp + tx + 16 * bb] = p;
        rs += p;
      }
      l[a] = l[a] * corr + row16_sum(rs);
      m[a] = mnew;
#pragma unroll
      for (int c = 0; c < DC; ++c) o[a][c] *= corr;
    }
    __syncthreads();  // Ps complete; K no longer needed
    load_rows(KVs, ld, Vg, p.v, s0, BR, T, hd);
    __syncthreads();
    const int nk = kend - s0 < BR ? kend - s0 : BR;
    for (int jj = 0; jj < nk; ++jj) {
      float pa[RA], vc[DC];
#pragma unroll
      for (int a = 0; a < RA; ++a) pa[a] = Ps[(ty + 16 * a) * ldp + jj];
#pragma unroll
      for (int c = 0; c < DC; ++c) {
        const int col = tx + 16 * c;
        vc[c] = col < hd ? KVs[jj * ld + col] : 0.0f;
      }
#pragma unroll
      for (int a = 0; a < RA; ++a)
#pragma unroll
        for (int c = 0; c < DC; ++c) o[a][c] += pa[a] * vc[c];
    }
  }
#pragma unroll
  for (int a = 0; a < RA; ++a) {
    const int qi = t0 + ty + 16 * a;
    if (qi >= T) continue;
    float* O = out + ((static_cast<int64_t>(b) * T + qi) * H + h) * hd;
#pragma unroll
    for (int c = 0; c < DC; ++c) {
      const int col = tx + 16 * c;
      if (col < hd) O[col] = o[a][c] / l[a];
    }
    if (tx == 0) lse[(static_cast<int64_t>(b) * H + h) * T + qi] = m[a] + logf(l[a]);
  }
}

// ---- backward ------------------------------------------------------------------------------

// D[b, h, t] = Σ_d dout[b, t, h, d] · out[b, t, h, d]; one warp per (b, t, h).
__global__ void attention_dsum_kernel(float* D, const float* dout, const float* out, int64_t nrows,
                                      int T, int H, int hd) {
  const int lane = threadIdx.x % kWarp;
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / kWarp);
  for (int64_t row = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / kWarp; row < nrows;
       row += warps) {
    const float* g = dout + row * hd;
    const float* o = out + row * hd;
    float s = 0.0f;
    for (int d = lane; d < hd; d += kWarp) s += g[d] * o[d];
    s = warp_reduce(s, SumOp{});
    if (lane == 0) {
      const int64_t h = row % H, bt = row / H, t = bt % T, b = bt / T;
      D[(b * H + h) * T + t] = s;
    }
  }
}

// dq of one (b, h, query tile). Shared: Qs, dOs, Ks, Vs [BR][ld] | dSs [BR][BR+1] | Ls, Ds [BR].
template <int BR, int DC>
__global__ void __launch_bounds__(kThreads)
    attention_dq_kernel(float* dq, const float* dout, const float* q, const float* k,
                        const float* v, const float* lse, const float* D, AttentionPitches p,
                        int T, int H, int Hkv, int hd, int W, float scale) {
  constexpr int RA = BR / 16;
  extern __shared__ float smem[];
  const int ld = hd + 1, ldp = BR + 1;
  float* Qs = smem;
  float* dOs = Qs + BR * ld;
  float* Ks = dOs + BR * ld;
  float* Vs = Ks + BR * ld;
  float* dSs = Vs + BR * ld;
  float* Ls = dSs + BR * ldp;
  float* Ds = Ls + BR;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int bh = blockIdx.x, b = bh / H, h = bh % H, j = h / (H / Hkv);
  const int t0 = (gridDim.y - 1 - blockIdx.y) * BR;
  const int64_t bT = static_cast<int64_t>(b) * T, ldo = static_cast<int64_t>(H) * hd;
  const float* Kg = k + bT * p.k + j * hd;
  const float* Vg = v + bT * p.v + j * hd;
  const int64_t loff = static_cast<int64_t>(bh) * T;

  load_rows(Qs, ld, q + bT * p.q + h * hd, p.q, t0, BR, T, hd);
  load_rows(dOs, ld, dout + bT * ldo + h * hd, ldo, t0, BR, T, hd);
  load_vec(Ls, lse + loff, t0, BR, T);
  load_vec(Ds, D + loff, t0, BR, T);
  float acc[RA][DC];
#pragma unroll
  for (int a = 0; a < RA; ++a)
#pragma unroll
    for (int c = 0; c < DC; ++c) acc[a][c] = 0.0f;
  const int kend = T < t0 + BR ? T : t0 + BR;
  for (int s0 = first_key_tile<BR>(t0, W); s0 < kend; s0 += BR) {
    __syncthreads();
    load_rows(Ks, ld, Kg, p.k, s0, BR, T, hd);
    load_rows(Vs, ld, Vg, p.v, s0, BR, T, hd);
    __syncthreads();
    float s[RA][RA], dp[RA][RA];
#pragma unroll
    for (int a = 0; a < RA; ++a)
#pragma unroll
      for (int bb = 0; bb < RA; ++bb) s[a][bb] = dp[a][bb] = 0.0f;
#pragma unroll 2
    for (int d = 0; d < hd; ++d) {
      float qa[RA], ga[RA], kb[RA], vb[RA];
#pragma unroll
      for (int a = 0; a < RA; ++a) {
        qa[a] = Qs[(ty + 16 * a) * ld + d];
        ga[a] = dOs[(ty + 16 * a) * ld + d];
      }
#pragma unroll
      for (int bb = 0; bb < RA; ++bb) {
        kb[bb] = Ks[(tx + 16 * bb) * ld + d];
        vb[bb] = Vs[(tx + 16 * bb) * ld + d];
      }
#pragma unroll
      for (int a = 0; a < RA; ++a)
#pragma unroll
        for (int bb = 0; bb < RA; ++bb) {
          s[a][bb] += qa[a] * kb[bb];
          dp[a][bb] += ga[a] * vb[bb];
        }
    }
#pragma unroll
    for (int a = 0; a < RA; ++a) {
      const int r = ty + 16 * a, qi = t0 + r;
#pragma unroll
      for (int bb = 0; bb < RA; ++bb) {
        const int key = s0 + tx + 16 * bb;
        const float p = visible(key, qi, W) && qi < T ? expf(s[a][bb] * scale - Ls[r]) : 0.0f;
        dSs[r * ldp + tx + 16 * bb] = p * (dp[a][bb] - Ds[r]);
      }
    }
    __syncthreads();
    const int nk = kend - s0 < BR ? kend - s0 : BR;
    for (int jj = 0; jj < nk; ++jj) {
      float dsa[RA], kc[DC];
#pragma unroll
      for (int a = 0; a < RA; ++a) dsa[a] = dSs[(ty + 16 * a) * ldp + jj];
#pragma unroll
      for (int c = 0; c < DC; ++c) {
        const int col = tx + 16 * c;
        kc[c] = col < hd ? Ks[jj * ld + col] : 0.0f;
      }
#pragma unroll
      for (int a = 0; a < RA; ++a)
#pragma unroll
        for (int c = 0; c < DC; ++c) acc[a][c] += dsa[a] * kc[c];
    }
  }
#pragma unroll
  for (int a = 0; a < RA; ++a) {
    const int qi = t0 + ty + 16 * a;
    if (qi >= T) continue;
    float* dQ = dq + (bT + qi) * p.dq + h * hd;
#pragma unroll
    for (int c = 0; c < DC; ++c) {
      const int col = tx + 16 * c;
      if (col < hd) dQ[col] = acc[a][c] * scale;
    }
  }
}

// dk, dv of one (b, kv head j, key tile). Micro-tiles are transposed: rows = keys (ty + 16a),
// columns = queries (tx + 16b). Shared: Ks, Vs, Qs, dOs [BR][ld] | Ps, dSs [BR][BR+1] | Ls, Ds.
template <int BR, int DC>
__global__ void __launch_bounds__(kThreads)
    attention_dkv_kernel(float* dk, float* dv, const float* dout, const float* q, const float* k,
                         const float* v, const float* lse, const float* D, AttentionPitches p,
                         int T, int H, int Hkv, int hd, int W, float scale) {
  constexpr int RA = BR / 16;
  extern __shared__ float smem[];
  const int ld = hd + 1, ldp = BR + 1;
  float* Ks = smem;
  float* Vs = Ks + BR * ld;
  float* Qs = Vs + BR * ld;
  float* dOs = Qs + BR * ld;
  float* Ps = dOs + BR * ld;
  float* dSs = Ps + BR * ldp;
  float* Ls = dSs + BR * ldp;
  float* Ds = Ls + BR;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int bj = blockIdx.x, b = bj / Hkv, j = bj % Hkv, group = H / Hkv;
  const int s0 = blockIdx.y * BR;  // first key tiles (the most work) first
  const int64_t bT = static_cast<int64_t>(b) * T, ldo = static_cast<int64_t>(H) * hd;
  // queries that see these keys: [s0, min(T, s0 + BR + W − 1)), compared without overflow
  const int qend = W - 1 < T - s0 - BR ? s0 + BR + W - 1 : T;

  load_rows(Ks, ld, k + bT * p.k + j * hd, p.k, s0, BR, T, hd);
  load_rows(Vs, ld, v + bT * p.v + j * hd, p.v, s0, BR, T, hd);
  float gk[RA][DC], gv[RA][DC];
#pragma unroll
  for (int a = 0; a < RA; ++a)
#pragma unroll
    for (int c = 0; c < DC; ++c) gk[a][c] = gv[a][c] = 0.0f;
  for (int h = j * group; h < (j + 1) * group; ++h) {
    const int64_t loff = (static_cast<int64_t>(b) * H + h) * T;
    for (int t0 = s0; t0 < qend; t0 += BR) {  // query tiles that see these keys, in order
      __syncthreads();
      load_rows(Qs, ld, q + bT * p.q + h * hd, p.q, t0, BR, T, hd);
      load_rows(dOs, ld, dout + bT * ldo + h * hd, ldo, t0, BR, T, hd);
      load_vec(Ls, lse + loff, t0, BR, T);
      load_vec(Ds, D + loff, t0, BR, T);
      __syncthreads();
      float s[RA][RA], dp[RA][RA];  // [key a][query b]
#pragma unroll
      for (int a = 0; a < RA; ++a)
#pragma unroll
        for (int bb = 0; bb < RA; ++bb) s[a][bb] = dp[a][bb] = 0.0f;
#pragma unroll 2
      for (int d = 0; d < hd; ++d) {
        float ka[RA], va[RA], qb[RA], gb[RA];
#pragma unroll
        for (int a = 0; a < RA; ++a) {
          ka[a] = Ks[(ty + 16 * a) * ld + d];
          va[a] = Vs[(ty + 16 * a) * ld + d];
        }
#pragma unroll
        for (int bb = 0; bb < RA; ++bb) {
          qb[bb] = Qs[(tx + 16 * bb) * ld + d];
          gb[bb] = dOs[(tx + 16 * bb) * ld + d];
        }
#pragma unroll
        for (int a = 0; a < RA; ++a)
#pragma unroll
          for (int bb = 0; bb < RA; ++bb) {
            s[a][bb] += ka[a] * qb[bb];
            dp[a][bb] += va[a] * gb[bb];
          }
      }
#pragma unroll
      for (int a = 0; a < RA; ++a) {
        const int key = s0 + ty + 16 * a;
#pragma unroll
        for (int bb = 0; bb < RA; ++bb) {
          const int c = tx + 16 * bb, qi = t0 + c;
          const float p = visible(key, qi, W) && qi < T ? expf(s[a][bb] * scale - Ls[c]) : 0.0f;
          Ps[(ty + 16 * a) * ldp + c] = p;
          dSs[(ty + 16 * a) * ldp + c] = p * (dp[a][bb] - Ds[c]);
        }
      }
      __syncthreads();
      const int nq = T - t0 < BR ? T - t0 : BR;
      for (int qq = 0; qq < nq; ++qq) {
        float pa[RA], dsa[RA], gc[DC], xc[DC];
#pragma unroll
        for (int a = 0; a < RA; ++a) {
          pa[a] = Ps[(ty + 16 * a) * ldp + qq];
          dsa[a] = dSs[(ty + 16 * a) * ldp + qq];
        }
#pragma unroll
        for (int c = 0; c < DC; ++c) {
          const int col = tx + 16 * c;
          gc[c] = col < hd ? dOs[qq * ld + col] : 0.0f;
          xc[c] = col < hd ? Qs[qq * ld + col] : 0.0f;
        }
#pragma unroll
        for (int a = 0; a < RA; ++a)
#pragma unroll
          for (int c = 0; c < DC; ++c) {
            gv[a][c] += pa[a] * gc[c];
            gk[a][c] += dsa[a] * xc[c];
          }
      }
    }
  }
#pragma unroll
  for (int a = 0; a < RA; ++a) {
    const int key = s0 + ty + 16 * a;
    if (key >= T) continue;
    float* dK = dk + (bT + key) * p.dk + j * hd;
    float* dV = dv + (bT + key) * p.dv + j * hd;
#pragma unroll
    for (int c = 0; c < DC; ++c) {
      const int col = tx + 16 * c;
      if (col < hd) {
        dK[col] = gk[a][c] * scale;
        dV[col] = gv[a][c];
      }
    }
  }
}

// ---- launchers -------------------------------------------------------------------------------

struct Dims {
  int T, H, Hkv, hd, W;
  int64_t BH, BHkv;
  float scale;
};

Dims check_dims(const char* op, int64_t B, int64_t T, int64_t H, int64_t Hkv, int64_t hd,
                int64_t W) {
  RETORT_CHECK(W >= 1 && W <= T, op, ": window ", W, " outside [1, T = ", T, "]");
  RETORT_CHECK(hd > 0 && hd <= kMaxHeadDim, op, ": the CUDA kernel supports head_dim <= ",
               kMaxHeadDim, ", got ", hd);
  RETORT_CHECK(T <= (1 << 30) && H * hd <= (1 << 30) && Hkv > 0 && H % Hkv == 0, op,
               ": unsupported shape T = ", T, ", H = ", H, ", Hkv = ", Hkv);
  RETORT_CHECK((T + 31) / 32 <= 65535, op, ": T = ", T, " has too many tiles for the grid");
  return {static_cast<int>(T), static_cast<int>(H), static_cast<int>(Hkv), static_cast<int>(hd),
          static_cast<int>(W), B * H, B * Hkv, static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)))};
}

template <int BR, int DC>
void launch_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                    const AttentionPitches& p, const Dims& d) {
  const size_t smem = sizeof(float) * (2 * BR * (d.hd + 1) + BR * (BR + 1));
  auto kernel = attention_forward_kernel<BR, DC>;
  require_smem(reinterpret_cast<const void*>(kernel), smem, "attention_forward");
  const dim3 grid(grid_x(d.BH), static_cast<unsigned>((d.T + BR - 1) / BR));
  kernel<<<grid, kThreads, smem, compute_stream()>>>(out, lse, q, k, v, p, d.T, d.H, d.Hkv, d.hd,
                                                     d.W, d.scale);
  RETORT_CUDA_CHECK_LAUNCH();
}

template <int BR, int DC>
void launch_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                     const float* k, const float* v, const float* lse, const float* D,
                     const AttentionPitches& p, const Dims& d) {
  const unsigned tiles = static_cast<unsigned>((d.T + BR - 1) / BR);
  const size_t smem = sizeof(float) * (4 * BR * (d.hd + 1) + 2 * BR * (BR + 1) + 2 * BR);
  auto dq_kernel = attention_dq_kernel<BR, DC>;
  auto dkv_kernel = attention_dkv_kernel<BR, DC>;
  require_smem(reinterpret_cast<const void*>(dq_kernel), smem, "attention_backward (dq)");
  require_smem(reinterpret_cast<const void*>(dkv_kernel), smem, "attention_backward (dk, dv)");
  dq_kernel<<<dim3(grid_x(d.BH), tiles), kThreads, smem, compute_stream()>>>(
      dq, dout, q, k, v, lse, D, p, d.T, d.H, d.Hkv, d.hd, d.W, d.scale);
  RETORT_CUDA_CHECK_LAUNCH();
  dkv_kernel<<<dim3(grid_x(d.BHkv), tiles), kThreads, smem, compute_stream()>>>(
      dk, dv, dout, q, k, v, lse, D, p, d.T, d.H, d.Hkv, d.hd, d.W, d.scale);
  RETORT_CUDA_CHECK_LAUNCH();
}

}  // namespace

void attention_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                       const AttentionPitches& p, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                       int64_t hd, int64_t W) {
  if (B <= 0 || T <= 0 || H <= 0) return;
  const Dims d = check_dims("attention_forward", B, T, H, Hkv, hd, W);
  if (hd <= 64) launch_forward<64, 4>(out, lse, q, k, v, p, d);
  else if (hd <= 128) launch_forward<64, 8>(out, lse, q, k, v, p, d);
  else launch_forward<64, 16>(out, lse, q, k, v, p, d);
}

void attention_backward(float* dq, float* dk, float* dv, const float* dout, const float* q,
                        const float* k, const float* v, const float* out, const float* lse,
                        const AttentionPitches& p, int64_t B, int64_t T, int64_t H, int64_t Hkv,
                        int64_t hd, int64_t W) {
  if (B <= 0 || T <= 0 || H <= 0) return;
  const Dims d = check_dims("attention_backward", B, T, H, Hkv, hd, W);
  const int64_t nrows = B * T * H;
  ScratchBuffer dsum(sizeof(float) * static_cast<size_t>(nrows));  // D: [B, H, T]
  attention_dsum_kernel<<<grid_for(nrows * kWarp, kThreads), kThreads, 0, compute_stream()>>>(
      dsum.as<float>(), dout, out, nrows, d.T, d.H, d.hd);
  RETORT_CUDA_CHECK_LAUNCH();
  const float* D = dsum.as<float>();
  if (hd <= 64) launch_backward<64, 4>(dq, dk, dv, dout, q, k, v, lse, D, p, d);
  else if (hd <= 128) launch_backward<32, 8>(dq, dk, dv, dout, q, k, v, lse, D, p, d);
  else launch_backward<32, 16>(dq, dk, dv, dout, q, k, v, lse, D, p, d);
}

}  // namespace retort::cuda
