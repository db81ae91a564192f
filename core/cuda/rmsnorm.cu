// RMSNorm over the last dim (math as core/cpu/rmsnorm.cpp):
//   forward:  r = 1/sqrt(mean_c x² + eps),  y = x · r · g
//   backward: dx_c = r·g_c·dy_c − x_c · r³/C · Σ_j dy_j g_j x_j
//             dg_c += Σ_rows dy_c · x_c · r
// forward / dx: one warp per row (kRowsPerBlock rows per block), lanes stride over the C
//   columns, the row sum by the warp's fixed butterfly (bitwise reproducible).
// dg: deterministic without atomics, in two steps:
//   partials: for C <= 1024 the dx pass itself sums, in double and in row order, dy·x·r over
//           its block's 8 rows -> part[b, c] (dy and x read once); wider rows: a second pass,
//           grid (ceil(rows/32), ceil(C/threads)), thread c of row block b sums the 32 rows;
//   final: one block per column adds part[0.., c] by a fixed tree (strided per thread, then
//           the block's), then dg_c += that sum. (qk-norm has C = head_dim and rows = B·T·H:
//           thousands of partials per column, which one thread per column adds too slowly.)
// RoPE fused (qk-norm, rows [B, T, nh], C = hd <= kFusedMaxC): the forward rotates the
//   normalised pair (c, c + hd/2) before the store; the dx pass rotates dy back as it reads it
//   (dn = RoPE⁻¹(dy) in place of dy above, for dx and the dg partials alike).
#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"

namespace retort::cuda {

namespace {

// Rows per dg partial of the separate pass (C > kFusedMaxC): rows/32 × C threads, enough loads
// in flight (with 128 rows and the separate pass for every C, the H200 profile showed the
// backward at ~100 µs where its bytes need ~40).
constexpr int64_t kRowBlock = 32;
constexpr int kRowsPerBlock = 8;    // forward / dx: one warp per row
// Up to this C the dx pass also produces the dg partials (8 rows × C floats of shared memory,
// 32 KiB at 1024); wider rows take the two-pass path.
constexpr int64_t kFusedMaxC = 1024;
constexpr int kFinalThreads = 256;  // dg final sum

// RoPE fused into the norm (table null: none): row r is at position (r / nh) % T.
struct RowRope {
  const float* table = nullptr;  // [T, C]: cos then sin
  int64_t T = 1, nh = 1;
  __device__ const float* angles(int64_t r, int64_t C) const { return table + (r / nh) % T * C; }
};

// Where row r of a [rows, C] operand starts: contiguous (pitch 0), or rows grouped nh per
// token with a token's rows `pitch` elements after the previous token's (a window of heads).
struct Rows {
  int64_t nh = 1, pitch = 0;
  __device__ int64_t at(int64_t r, int64_t C) const {
    return pitch ? r / nh * pitch + r % nh * C : r * C;
  }
};

// Out: float, or uint16_t for a bf16 y (rounded at the store); In (x) likewise.
template <class Out, class In>
__global__ void rmsnorm_forward_kernel(Out* y, float* rstd, const In* x, const float* g,
                                       int64_t rows, int64_t C, float eps, RowRope rope,
                                       Rows x_rows) {
  const int64_t r = blockIdx.x * int64_t(kRowsPerBlock) + threadIdx.x / kWarp;
  if (r >= rows) return;  // the whole warp: no block barrier below
  const int lane = threadIdx.x % kWarp;
  const In* xr = x + x_rows.at(r, C);
  Out* yr = y + r * C;
  float ss = 0.0f;
#pragma unroll 4
  for (int64_t c = lane; c < C; c += kWarp) ss += load(&xr[c]) * load(&xr[c]);
  ss = warp_reduce(ss, SumOp{});
  const float rs = 1.0f / sqrtf(ss / static_cast<float>(C) + eps);
  if (lane == 0) rstd[r] = rs;
  if (!rope.table) {
#pragma unroll 4
    for (int64_t c = lane; c < C; c += kWarp) store(&yr[c], load(&xr[c]) * rs * g[c]);
    return;
  }
  const int64_t half = C / 2;
  const float* cs = rope.angles(r, C);
  for (int64_t i = lane; i < half; i += kWarp) {  // (a, b) = the normalised pair, rotated
    const float a = load(&xr[i]) * rs * g[i], b = load(&xr[half + i]) * rs * g[half + i];
    const float c = cs[i], sn = cs[half + i];
    store(&yr[i], a * c - b * sn);
    store(&yr[half + i], b * c + a * sn);
  }
}

// dx: float (overwritten, or += with accumulate; its final value also rounded into `rounded`
// when that is not null) or bf16 (overwritten, rounded at the store).
__device__ __forceinline__ void put(float* p, float v, bool accumulate, uint16_t* rounded) {
  const float out = accumulate ? *p + v : v;
  *p = out;
  if (rounded) store(rounded, out);
}
__device__ __forceinline__ void put(uint16_t* p, float v, bool, uint16_t*) { store(p, v); }

// dx: one warp per row. With `part` (C <= kFusedMaxC), the block's dg partial in the same pass:
// each warp leaves its row's dy·x·r in shared memory, then
//   part[block, c] = Σ_{w = 0..7, in order} double(dy·x·r of row 8·block + w)
// (rows past the end add 0) — dy and x are read once for both.
// In: dy and x, float or bf16. With rope (C <= kFusedMaxC), dy is read rotated back.
template <class Out, class In>
__global__ void rmsnorm_dx_kernel(Out* dx, const In* dy, const In* x, const float* g,
                                  const float* rstd, int64_t rows, int64_t C, bool accumulate,
                                  uint16_t* rounded, double* part, RowRope rope, Rows x_rows,
                                  Rows dx_rows) {
  extern __shared__ float products[];  // [kRowsPerBlock, C] when part
  const int w = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t r = blockIdx.x * int64_t(kRowsPerBlock) + w;
  if (r < rows) {
    const In* xr = x + x_rows.at(r, C);
    const In* dyr = dy + r * C;
    Out* dxr = dx + dx_rows.at(r, C);
    const float rs = rstd[r];
    const int64_t half = C / 2;
    const float* cs = rope.table ? rope.angles(r, C) : nullptr;
    // dy at column c as the norm's backward sees it: rotated back by the row's angle with RoPE
    const auto dn = [&](int64_t c) {
      if (!cs) return load(&dyr[c]);
      const int64_t i = c < half ? c : c - half;
      const float co = cs[i], sn = -cs[half + i];
      return c < half ? load(&dyr[c]) * co - load(&dyr[c + half]) * sn
                      : load(&dyr[c]) * co + load(&dyr[c - half]) * sn;
    };
    float dot = 0.0f;  // Σ dy g x
#pragma unroll 4
    for (int64_t c = lane; c < C; c += kWarp) dot += dn(c) * g[c] * load(&xr[c]);
    dot = warp_reduce(dot, SumOp{});
    const float k = rs * rs * rs * dot / static_cast<float>(C);
#pragma unroll 4
    for (int64_t c = lane; c < C; c += kWarp) {
      const float d = dn(c), xc = load(&xr[c]);
      put(&dxr[c], rs * g[c] * d - xc * k, accumulate, rounded ? rounded + r * C + c : nullptr);
      if (part) products[w * C + c] = d * xc * rs;
    }
  } else if (part) {
    for (int64_t c = lane; c < C; c += kWarp) products[w * C + c] = 0.0f;
  }
  if (!part) return;  // uniform over the block
  __syncthreads();
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    double acc = 0.0;
    for (int i = 0; i < kRowsPerBlock; ++i) acc += static_cast<double>(products[i * C + c]);
    part[blockIdx.x * C + c] = acc;
  }
}

// part[b, c] = Σ_{r in row block b, in order} double(dy[r, c] · x[r, c] · rstd[r])
template <class In>
__global__ void rmsnorm_dg_partial_kernel(double* part, const In* dy, const In* x,
                                          const float* rstd, int64_t rows, int64_t C) {
  const int64_t c = blockIdx.y * int64_t(blockDim.x) + threadIdx.x;
  const int64_t b = blockIdx.x;
  if (c >= C) return;
  const int64_t r0 = b * kRowBlock, r1 = r0 + kRowBlock < rows ? r0 + kRowBlock : rows;
  double acc = 0.0;
#pragma unroll 8
  for (int64_t r = r0; r < r1; ++r) {
    const float p = load(&dy[r * C + c]) * load(&x[r * C + c]) * rstd[r];
    acc += static_cast<double>(p);
  }
  part[b * C + c] = acc;
}

// Block c: dg[c] += Σ_b part[b, c] (thread t takes b = t, t + 256, ...; then the block tree).
__global__ void rmsnorm_dg_final_kernel(float* dg, const double* part, int64_t nblk, int64_t C) {
  __shared__ double scratch[kWarp];
  const int64_t c = blockIdx.x;
  double s = 0.0;
  for (int64_t b = threadIdx.x; b < nblk; b += blockDim.x) s += part[b * C + c];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) dg[c] += static_cast<float>(s);
}

template <class Out, class In>
void forward(Out* y, float* rstd, const In* x, const float* g, int64_t rows, int64_t C,
             float eps, RowRope rope = {}, Rows x_rows = {}) {
  if (rows <= 0 || C <= 0) return;
  const auto kernel = rmsnorm_forward_kernel<Out, In>;
  kernel<<<grid_x((rows + kRowsPerBlock - 1) / kRowsPerBlock), kRowsPerBlock * kWarp, 0,
           compute_stream()>>>(y, rstd, x, g, rows, C, eps, rope, x_rows);
  RETORT_CUDA_CHECK_LAUNCH();
}

template <class Out, class In>
void backward(Out* dx, float* dg, const In* dy, const In* x, const float* g, const float* rstd,
              int64_t rows, int64_t C, bool accumulate_dx, uint16_t* dx_rounded,
              RowRope rope = {}, Rows x_rows = {}, Rows dx_rows = {}) {
  if (rows <= 0 || C <= 0) return;
  cudaStream_t st = compute_stream();
  const auto dx_kernel = rmsnorm_dx_kernel<Out, In>;
  const unsigned dx_blocks = grid_x((rows + kRowsPerBlock - 1) / kRowsPerBlock);
  const bool fused = C <= kFusedMaxC;
  RETORT_CHECK(fused || (!rope.table && !x_rows.pitch && !dx_rows.pitch),  // two-pass: contiguous
               "rmsnorm with RoPE: head_dim ", C, " > ", kFusedMaxC);
  const int64_t nblk = fused ? dx_blocks : (rows + kRowBlock - 1) / kRowBlock;
  ScratchBuffer part(sizeof(double) * static_cast<size_t>(nblk * C));
  dx_kernel<<<dx_blocks, kRowsPerBlock * kWarp, fused ? kRowsPerBlock * C * sizeof(float) : 0,
              st>>>(dx, dy, x, g, rstd, rows, C, accumulate_dx, dx_rounded,
                    fused ? part.as<double>() : nullptr, rope, x_rows, dx_rows);
  RETORT_CUDA_CHECK_LAUNCH();
  if (!fused) {
    const int col_threads = C < 128 ? static_cast<int>((C + kWarp - 1) / kWarp * kWarp) : 128;
    const unsigned col_blocks = static_cast<unsigned>((C + col_threads - 1) / col_threads);
    const auto partial_kernel = rmsnorm_dg_partial_kernel<In>;
    partial_kernel<<<dim3(grid_x(nblk), col_blocks), col_threads, 0, st>>>(
        part.as<double>(), dy, x, rstd, rows, C);
    RETORT_CUDA_CHECK_LAUNCH();
  }
  rmsnorm_dg_final_kernel<<<grid_x(C), kFinalThreads, 0, st>>>(dg, part.as<double>(), nblk, C);
  RETORT_CUDA_CHECK_LAUNCH();
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

}  // namespace retort::cuda
