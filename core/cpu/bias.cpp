// A bias along the rows of a product's output (Qwen2's q, k, v projections):
//   forward   y[r, j] += b[j]                       y: [rows, n], b: [n]
//   backward  db[j] += Σ_r dy[r, j]
// The sum's order is core/bias_order.h's, the GPU kernel's: the two backends give the same bits.
#include <algorithm>

#include "core/bias_order.h"
#include "core/cpu/bf16.h"
#include "core/cpu/kernels.h"

namespace retort::cpu {

// T: float, or uint16_t for bf16 (rounded once, at the store).
template <class T>
void bias_add(T* y, const float* b, int64_t rows, int64_t n) {
#pragma omp parallel for schedule(static) if (rows * n >= 16384)
  for (int64_t r = 0; r < rows; ++r) {
    T* yr = y + r * n;
    for (int64_t j = 0; j < n; ++j) store(&yr[j], load(&yr[j]) + b[j]);
  }
}

template <class In>
void bias_backward(float* db, const In* dy, int64_t rows, int64_t n) {
  constexpr int64_t kCols = 64;  // columns per task: partials[kBiasGroups][kCols] on the stack
#pragma omp parallel for schedule(static) if (rows * n >= 16384)
  for (int64_t j0 = 0; j0 < n; j0 += kCols) {
    const int64_t cols = std::min(kCols, n - j0);
    float partial[kBiasGroups][kCols] = {};
    for (int64_t r = 0; r < rows; ++r) {
      float* p = partial[r % kBiasGroups];
      const In* dyr = dy + r * n + j0;
      for (int64_t j = 0; j < cols; ++j) p[j] += load(&dyr[j]);
    }
    for (int64_t j = 0; j < cols; ++j) {
      float total = partial[0][j];
      for (int g = 1; g < kBiasGroups; ++g) total += partial[g][j];
      db[j0 + j] += total;
    }
  }
}

template void bias_add(float*, const float*, int64_t, int64_t);
template void bias_add(uint16_t*, const float*, int64_t, int64_t);
template void bias_backward(float*, const float*, int64_t, int64_t);
template void bias_backward(float*, const uint16_t*, int64_t, int64_t);

}  // namespace retort::cpu
