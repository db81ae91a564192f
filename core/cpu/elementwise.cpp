// Elementwise ops and the deterministic sum of squares.
#include <omp.h>

#include <cstring>
#include <vector>

#include "core/cpu/bf16.h"
#include "core/cpu/kernels.h"

namespace retort::cpu {

namespace {
constexpr int64_t kParallelMin = 1 << 15;  // below this, threads cost more than they save
}

void fill(float* x, int64_t n, float value) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) x[i] = value;
}

void copy_bytes(void* dst, const void* src, int64_t nbytes) {
  if (nbytes > 0 && dst != src) std::memmove(dst, src, static_cast<size_t>(nbytes));
}

void add_inplace(float* y, const float* x, int64_t n, float alpha) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

void scale_inplace(float* y, int64_t n, float alpha) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) y[i] *= alpha;
}

// Σ x² in double. Fixed chunks of kChunk elements, each summed in order, then the chunk sums
// added in chunk order: the result does not depend on the number of threads.
double sum_squares(const float* x, int64_t n) {
  constexpr int64_t kChunk = 4096;
  const int64_t nchunks = (n + kChunk - 1) / kChunk;
  std::vector<double> part(static_cast<size_t>(nchunks));
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t b = c * kChunk, e = b + kChunk < n ? b + kChunk : n;
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // 8 fixed lanes: vectorises, fixed order
    int64_t i = b;
    for (; i + 8 <= e; i += 8)
      for (int l = 0; l < 8; ++l) acc[l] += static_cast<double>(x[i + l]) * x[i + l];
    double s = 0;
    for (; i < e; ++i) s += static_cast<double>(x[i]) * x[i];
    for (int l = 0; l < 8; ++l) s += acc[l];
    part[c] = s;
  }
  double total = 0;
  for (double p : part) total += p;
  return total;
}

double sum_squares_multi(const float* const* xs, const int64_t* ns, int64_t count) {
  double total = 0;
  for (int64_t t = 0; t < count; ++t) total += sum_squares(xs[t], ns[t]);
  return total;
}

void f32_to_bf16(uint16_t* dst, const float* src, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) dst[i] = round_to_bf16(src[i]);
}

void bf16_to_f32(float* dst, const uint16_t* src, int64_t n) {
#pragma omp parallel for schedule(static) if (n >= kParallelMin)
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t u = static_cast<uint32_t>(src[i]) << 16;
    std::memcpy(&dst[i], &u, 4);
  }
}

template <class Out, class In>
void copy_rows(Out* y, int64_t y_pitch, const In* x, int64_t x_pitch, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols >= kParallelMin)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) store(&y[r * y_pitch + c], load(&x[r * x_pitch + c]));
}
template void copy_rows(float*, int64_t, const float*, int64_t, int64_t, int64_t);
template void copy_rows(uint16_t*, int64_t, const float*, int64_t, int64_t, int64_t);
template void copy_rows(float*, int64_t, const uint16_t*, int64_t, int64_t, int64_t);
template void copy_rows(uint16_t*, int64_t, const uint16_t*, int64_t, int64_t, int64_t);

}  // namespace retort::cpu
