// Rotary position embedding, rotate-half convention (math as core/cpu/rope.cpp):
//   table[t, i] = cos(t·f_i), table[t, hd/2 + i] = sin(t·f_i), f_i = theta^(−2i/hd), i < hd/2
//   apply (sign ±1): (x_i, x_j) -> (x_i c − x_j s', x_j c + x_i s'), j = i + hd/2, s' = sign·s
// Both kernels: one thread per (row, pair i), grid-stride; consecutive threads take
// consecutive i, so the loads of x and of the table row are coalesced.
#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"

namespace retort::cuda {

namespace {

// The table in double like the CPU (pow, cos, sin of a double angle), stored as float.
__global__ void rope_table_kernel(float* table, int64_t T, int64_t hd, double theta) {
  const int64_t half = hd / 2, n = T * half;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t t = idx / half, i = idx % half;
    const double inv_freq = pow(theta, -2.0 * static_cast<double>(i) / static_cast<double>(hd));
    const double ang = static_cast<double>(t) * inv_freq;
    table[t * hd + i] = static_cast<float>(cos(ang));
    table[t * hd + half + i] = static_cast<float>(sin(ang));
  }
}

// x, y: [B, T, nh, hd] (y may be x), a token's heads x_pitch (y_pitch) elements after the
// previous token's; idx = ((b·T + t)·nh + h)·half + i. Out, In: float or uint16_t (bf16,
// rounded at the store).
template <class Out, class In>
__global__ void rope_apply_kernel(Out* y, int64_t y_pitch, const In* x, int64_t x_pitch,
                                  const float* table, int64_t T, int64_t nh, int64_t hd,
                                  int64_t n, float sign) {
  const int64_t half = hd / 2;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < n;
       idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t i = idx % half, row = idx / half;  // row = (b·T + t)·nh + h
    const int64_t token = row / nh, t = token % T;
    const float c = table[t * hd + i], s = sign * table[t * hd + half + i];
    const In* xi = x + token * x_pitch + (row % nh) * hd + i;
    Out* yi = y + token * y_pitch + (row % nh) * hd + i;
    const float a = load(&xi[0]), bb = load(&xi[half]);
    store(&yi[0], a * c - bb * s);
    store(&yi[half], bb * c + a * s);
  }
}

}  // namespace

void rope_table(float* table, int64_t T, int64_t hd, double theta) {
  const int64_t n = T * (hd / 2);
  if (n <= 0) return;
  rope_table_kernel<<<grid_for(n, kBlock), kBlock, 0, compute_stream()>>>(table, T, hd, theta);
  RETORT_CUDA_CHECK_LAUNCH();
}

template <class Out, class In>
void rope_apply(Out* y, int64_t y_pitch, const In* x, int64_t x_pitch, const float* table,
                int64_t B, int64_t T, int64_t nh, int64_t hd, float sign) {
  const int64_t n = B * T * nh * (hd / 2);
  if (n <= 0) return;
  const auto kernel = rope_apply_kernel<Out, In>;
  kernel<<<grid_for(n, kBlock), kBlock, 0, compute_stream()>>>(y, y_pitch, x, x_pitch, table, T,
                                                               nh, hd, n, sign);
  RETORT_CUDA_CHECK_LAUNCH();
}

#define RETORT_ROPE_APPLY(Out, In)                                                            \
  template void rope_apply(Out*, int64_t, const In*, int64_t, const float*, int64_t, int64_t, \
                           int64_t, int64_t, float);
RETORT_ROPE_APPLY(float, float)
RETORT_ROPE_APPLY(uint16_t, float)
RETORT_ROPE_APPLY(float, uint16_t)
RETORT_ROPE_APPLY(uint16_t, uint16_t)
#undef RETORT_ROPE_APPLY

}  // namespace retort::cuda
