// RMSNorm over the last dim.
//   forward:  r = 1/sqrt(mean_c x² + eps),  y = x · r · g
//   backward: dx_c = r·g_c·dy_c − x_c · r³/C · Σ_j dy_j g_j x_j
//             dg_c += Σ_rows dy_c · x_c · r
// dg is reduced deterministically and independently of the thread count: fixed blocks of
// kRowBlock rows produce partial sums (double), which are then added in block order.
// With RoPE fused (qk-norm: rows [B, T, nh] of C = hd): the forward rotates the normalised row
// before its store, y = RoPE(x · r · g), and the backward rotates dy back first (dn = RoPE⁻¹(dy)
// in place of dy above) — bitwise rmsnorm into fp32 then rope_apply, and the reverse.
#include <cmath>
#include <type_traits>
#include <vector>

#include "core/cpu/bf16.h"
#include "core/cpu/kernels.h"

namespace retort::cpu {

namespace {
constexpr int64_t kRowBlock = 128;

// RoPE fused into the norm (table null: none): row r is at position (r / nh) % T.
struct RowRope {
  const float* table = nullptr;  // [T, C]: cos then sin (rope.cpp)
  int64_t T = 1, nh = 1;
  const float* angles(int64_t r, int64_t C) const { return table + (r / nh) % T * C; }
};

// Where row r of a [rows, C] operand starts: contiguous (pitch 0), or rows grouped nh per
// token with a token's rows `pitch` elements after the previous token's (a window of heads).
struct Rows {
  int64_t nh = 1, pitch = 0;
  int64_t at(int64_t r, int64_t C) const { return pitch ? r / nh * pitch + r % nh * C : r * C; }
};

// Out: float, or uint16_t for a bf16 y (rounded once, at the store); In (x) likewise.
template <class Out, class In>
void forward(Out* y, float* rstd, const In* x, const float* g, int64_t rows, int64_t C,
             float eps, RowRope rope = {}, Rows x_rows = {}) {
  const int64_t half = C / 2;
#pragma omp parallel for schedule(static) if (rows * C >= 16384)
  for (int64_t r = 0; r < rows; ++r) {
    const In* xr = x + x_rows.at(r, C);
    Out* yr = y + r * C;
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int64_t c = 0; c < C; ++c) ss += load(&xr[c]) * load(&xr[c]);
    const float rs = 1.0f / std::sqrt(ss / static_cast<float>(C) + eps);
    rstd[r] = rs;
    if (!rope.table) {
      for (int64_t c = 0; c < C; ++c) store(&yr[c], load(&xr[c]) * rs * g[c]);
      continue;
    }
    const float* cs = rope.angles(r, C);
    // omp simd: for fp32 rows GCC leaves this loop scalar, unable to rule out y overlapping x
    // (each pair is read before it is written, so even y == x is safe); vectorised, the
    // qk-norm forward takes ~40% of the time
#pragma omp simd
    for (int64_t i = 0; i < half; ++i) {  // (a, b) = the normalised pair, rotated
      const float a = load(&xr[i]) * rs * g[i], b = load(&xr[half + i]) * rs * g[half + i];
      const float c = cs[i], sn = cs[half + i];
      store(&yr[i], a * c - b * sn);
      store(&yr[half + i], b * c + a * sn);
    }
  }
}
}  // namespace

void rmsnorm_forward(float* y, float* rstd, const float* x, const float* g, int64_t rows,
                     int64_t C, float eps) {
  forward(y, rstd, x, g, rows, C, eps);
}
void rmsnorm_forward(uint16_t* y, float* rstd, const float* x, const float* g, int64_t rows,
                     int64_t C, float eps) {
  forward(y, rstd, x, g, rows, C, eps);
}

namespace {
// dx: float (overwritten, or += with accumulate; its final value also rounded into `rounded`
// when that is not null) or bf16 (overwritten, rounded at the store).
inline void put(float* p, float v, bool accumulate, uint16_t* rounded) {
  const float out = accumulate ? *p + v : v;
  *p = out;
  if (rounded) store(rounded, out);
}
inline void put(uint16_t* p, float v, bool, uint16_t*) { store(p, v); }

// In: dy and x, float or bf16.
template <class Out, class In>
void backward(Out* dx, float* dg, const In* dy, const In* x, const float* g, const float* rstd,
              int64_t rows, int64_t C, bool accumulate_dx, uint16_t* dx_rounded,
              RowRope rope = {}, Rows x_rows = {}, Rows dx_rows = {}) {
  const int64_t nblk = (rows + kRowBlock - 1) / kRowBlock;
  const int64_t half = C / 2;
  std::vector<double> part(static_cast<size_t>(nblk * C));
#pragma omp parallel for schedule(static) if (rows * C >= 16384)
  for (int64_t blk = 0; blk < nblk; ++blk) {
    double* pg = part.data() + blk * C;
    for (int64_t c = 0; c < C; ++c) pg[c] = 0.0;
    // bf16 rows widened, and dy rotated back with RoPE fused, into per-thread rows; fp32 ones
    // are read in place
    constexpr bool f32 = std::is_same_v<In, float>;
    std::vector<float> xw(f32 ? 0 : size_t(C)), dyw(f32 && !rope.table ? 0 : size_t(C));
    const int64_t r1 = (blk + 1) * kRowBlock < rows ? (blk + 1) * kRowBlock : rows;
    for (int64_t r = blk * kRowBlock; r < r1; ++r) {
      const In* xi = x + x_rows.at(r, C);
      const In* dyi = dy + r * C;
      const float* xr;
      const float* dyr;
      if constexpr (f32) {
        xr = xi;
      } else {
        for (int64_t c = 0; c < C; ++c) xw[c] = load(&xi[c]);
        xr = xw.data();
      }
      if (rope.table) {
        const float* cs = rope.angles(r, C);
        for (int64_t i = 0; i < half; ++i) {
          const float a = load(&dyi[i]), b = load(&dyi[half + i]), c = cs[i], sn = -cs[half + i];
          dyw[i] = a * c - b * sn;
          dyw[half + i] = b * c + a * sn;
        }
        dyr = dyw.data();
      } else if constexpr (f32) {
        dyr = dyi;
      } else {
        for (int64_t c = 0; c < C; ++c) dyw[c] = load(&dyi[c]);
        dyr = dyw.data();
      }
      Out* dxr = dx + dx_rows.at(r, C);
      const float rs = rstd[r];
      float dot = 0.0f;  // Σ dy g x
#pragma omp simd reduction(+ : dot)
      for (int64_t c = 0; c < C; ++c) dot += dyr[c] * g[c] * xr[c];
      const float k = rs * rs * rs * dot / static_cast<float>(C);
      for (int64_t c = 0; c < C; ++c) {
        put(&dxr[c], rs * g[c] * dyr[c] - xr[c] * k, accumulate_dx,
            dx_rounded ? dx_rounded + r * C + c : nullptr);
        pg[c] += static_cast<double>(dyr[c] * xr[c] * rs);
      }
    }
  }
  // dg_c += Σ_blk part[blk, c], blocks in order; columns are independent.
#pragma omp parallel for schedule(static) if (nblk * C >= 16384)
  for (int64_t c = 0; c < C; ++c) {
    double s = 0.0;
    for (int64_t blk = 0; blk < nblk; ++blk) s += part[blk * C + c];
    dg[c] += static_cast<float>(s);
  }
}
}  // namespace

void rmsnorm_backward(float* dx, float* dg, const float* dy, const float* x, const float* g,
                      const float* rstd, int64_t rows, int64_t C, bool accumulate_dx,
                      uint16_t* dx_rounded) {
  backward(dx, dg, dy, x, g, rstd, rows, C, accumulate_dx, dx_rounded);
}
void rmsnorm_backward(uint16_t* dx, float* dg, const float* dy, const float* x, const float* g,
                      const float* rstd, int64_t rows, int64_t C) {
  backward(dx, dg, dy, x, g, rstd, rows, C, false, nullptr);
}

template <class Out, class In>
void rmsnorm_rope_forward(Out* y, float* rstd, const In* x, int64_t x_pitch, const float* g,
                          const float* table, int64_t B, int64_t T, int64_t nh, int64_t hd,
                          float eps) {
  forward(y, rstd, x, g, B * T * nh, hd, eps, RowRope{table, T, nh}, Rows{nh, x_pitch});
}
template <class Out, class In>
void rmsnorm_rope_backward(Out* dx, int64_t dx_pitch, float* dg, const In* dy, const In* x,
                           int64_t x_pitch, const float* g, const float* rstd,
                           const float* table, int64_t B, int64_t T, int64_t nh, int64_t hd) {
  backward(dx, dg, dy, x, g, rstd, B * T * nh, hd, false, nullptr, RowRope{table, T, nh},
           Rows{nh, x_pitch}, Rows{nh, dx_pitch});
}

#define RETORT_RMSNORM_ROPE(Out, In)                                                          \
  template void rmsnorm_rope_forward(Out*, float*, const In*, int64_t, const float*,          \
                                     const float*, int64_t, int64_t, int64_t, int64_t, float); \
  template void rmsnorm_rope_backward(Out*, int64_t, float*, const In*, const In*, int64_t,   \
                                      const float*, const float*, const float*, int64_t,      \
                                      int64_t, int64_t, int64_t);
RETORT_RMSNORM_ROPE(float, float)
RETORT_RMSNORM_ROPE(uint16_t, float)
RETORT_RMSNORM_ROPE(float, uint16_t)
RETORT_RMSNORM_ROPE(uint16_t, uint16_t)
#undef RETORT_RMSNORM_ROPE

}  // namespace retort::cpu
