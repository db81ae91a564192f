// RMSNorm over the last dim (math as core/cpu/rmsnorm.cpp):
//   forward:  r = 1/sqrt(mean_c x² + eps),  y = x · r · g
//   backward: dx_c = r·g_c·dy_c − x_c · r³/C · Σ_j dy_j g_j x_j
//             dg_c += Σ_rows dy_c · x_c · r
// forward / dx: one block per row (grid = rows), threads stride over the C columns, one fixed
//   block tree for the row sum.
// dg: deterministic without atomics, in two passes that mirror the CPU kernel exactly:
//   pass 1: grid (ceil(rows/128), ceil(C/128)); thread c of row block b sums, in double and in
//           row order, dy·x·r over the 128 rows of the block -> part[b, c];
//   pass 2: one thread per column adds part[0.., c] in block order, then dg_c += that sum.
#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"

namespace retort::cuda {

namespace {

constexpr int64_t kRowBlock = 128;  // rows per dg partial (as the CPU kernel)
constexpr int kColThreads = 128;    // columns per block in the dg passes

int row_threads(int64_t C) { return C <= 1024 ? 128 : 256; }

__global__ void rmsnorm_forward_kernel(float* y, float* rstd, const float* x, const float* g,
                                       int64_t C, float eps) {
  __shared__ float scratch[kWarp];
  const int64_t r = blockIdx.x;
  const float* xr = x + r * C;
  float* yr = y + r * C;
  float ss = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) ss += xr[c] * xr[c];
  ss = block_sum(ss, scratch);
  const float rs = 1.0f / sqrtf(ss / static_cast<float>(C) + eps);
  if (threadIdx.x == 0) rstd[r] = rs;
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) yr[c] = xr[c] * rs * g[c];
}

__global__ void rmsnorm_dx_kernel(float* dx, const float* dy, const float* x, const float* g,
                                  const float* rstd, int64_t C) {
  __shared__ float scratch[kWarp];
  const int64_t r = blockIdx.x;
  const float* xr = x + r * C;
  const float* dyr = dy + r * C;
  float* dxr = dx + r * C;
  const float rs = rstd[r];
  float dot = 0.0f;  // Σ dy g x
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dot += dyr[c] * g[c] * xr[c];
  dot = block_sum(dot, scratch);
  const float k = rs * rs * rs * dot / static_cast<float>(C);
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) dxr[c] = rs * g[c] * dyr[c] - xr[c] * k;
}

// part[b, c] = Σ_{r in row block b, in order} double(dy[r, c] · x[r, c] · rstd[r])
__global__ void rmsnorm_dg_partial_kernel(double* part, const float* dy, const float* x,
                                          const float* rstd, int64_t rows, int64_t C) {
  const int64_t c = blockIdx.y * int64_t(blockDim.x) + threadIdx.x;
  const int64_t b = blockIdx.x;
  if (c >= C) return;
  const int64_t r0 = b * kRowBlock, r1 = r0 + kRowBlock < rows ? r0 + kRowBlock : rows;
  double acc = 0.0;
  for (int64_t r = r0; r < r1; ++r) {
    const float p = dy[r * C + c] * x[r * C + c] * rstd[r];
    acc += static_cast<double>(p);
  }
  part[b * C + c] = acc;
}

__global__ void rmsnorm_dg_final_kernel(float* dg, const double* part, int64_t nblk, int64_t C) {
  const int64_t c = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (c >= C) return;
  double s = 0.0;
  for (int64_t b = 0; b < nblk; ++b) s += part[b * C + c];
  dg[c] += static_cast<float>(s);
}

}  // namespace

void rmsnorm_forward(float* y, float* rstd, const float* x, const float* g, int64_t rows,
                     int64_t C, float eps) {
  if (rows <= 0 || C <= 0) return;
  rmsnorm_forward_kernel<<<grid_x(rows), row_threads(C), 0, compute_stream()>>>(
      y, rstd, x, g, C, eps);
  RETORT_CUDA_CHECK_LAUNCH();
}

void rmsnorm_backward(float* dx, float* dg, const float* dy, const float* x, const float* g,
                      const float* rstd, int64_t rows, int64_t C) {
  if (rows <= 0 || C <= 0) return;
  cudaStream_t st = compute_stream();
  rmsnorm_dx_kernel<<<grid_x(rows), row_threads(C), 0, st>>>(dx, dy, x, g, rstd, C);
  RETORT_CUDA_CHECK_LAUNCH();
  const int64_t nblk = (rows + kRowBlock - 1) / kRowBlock;
  const unsigned col_blocks = static_cast<unsigned>((C + kColThreads - 1) / kColThreads);
  ScratchBuffer part(sizeof(double) * static_cast<size_t>(nblk * C));
  rmsnorm_dg_partial_kernel<<<dim3(grid_x(nblk), col_blocks), kColThreads, 0, st>>>(
      part.as<double>(), dy, x, rstd, rows, C);
  RETORT_CUDA_CHECK_LAUNCH();
  rmsnorm_dg_final_kernel<<<col_blocks, kColThreads, 0, st>>>(dg, part.as<double>(), nblk, C);
  RETORT_CUDA_CHECK_LAUNCH();
}

}  // namespace retort::cuda
