// RMSNorm over the last dim.
//   forward:  r = 1/sqrt(mean_c x² + eps),  y = x · r · g
//   backward: dx_c = r·g_c·dy_c − x_c · r³/C · Σ_j dy_j g_j x_j
//             dg_c += Σ_rows dy_c · x_c · r
// dg is reduced deterministically and independently of the thread count: fixed blocks of
// kRowBlock rows produce partial sums (double), which are then added in block order.
#include <cmath>
#include <vector>

#include "core/cpu/bf16.h"
#include "core/cpu/kernels.h"

namespace retort::cpu {

namespace {
constexpr int64_t kRowBlock = 128;

// Out: float, or uint16_t for a bf16 y (rounded once, at the store).
template <class Out>
void forward(Out* y, float* rstd, const float* x, const float* g, int64_t rows, int64_t C,
             float eps) {
#pragma omp parallel for schedule(static) if (rows * C >= 16384)
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * C;
    Out* yr = y + r * C;
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int64_t c = 0; c < C; ++c) ss += xr[c] * xr[c];
    const float rs = 1.0f / std::sqrt(ss / static_cast<float>(C) + eps);
    rstd[r] = rs;
    for (int64_t c = 0; c < C; ++c) store(&yr[c], xr[c] * rs * g[c]);
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

template <class Out>
void backward(Out* dx, float* dg, const float* dy, const float* x, const float* g,
              const float* rstd, int64_t rows, int64_t C, bool accumulate_dx,
              uint16_t* dx_rounded) {
  const int64_t nblk = (rows + kRowBlock - 1) / kRowBlock;
  std::vector<double> part(static_cast<size_t>(nblk * C));
#pragma omp parallel for schedule(static) if (rows * C >= 16384)
  for (int64_t blk = 0; blk < nblk; ++blk) {
    double* pg = part.data() + blk * C;
    for (int64_t c = 0; c < C; ++c) pg[c] = 0.0;
    const int64_t r1 = (blk + 1) * kRowBlock < rows ? (blk + 1) * kRowBlock : rows;
    for (int64_t r = blk * kRowBlock; r < r1; ++r) {
      const float* xr = x + r * C;
      const float* dyr = dy + r * C;
      Out* dxr = dx + r * C;
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

}  // namespace retort::cpu
