// RMSNorm over the last dim (math as core/cpu/rmsnorm.cpp):
//   forward:  r = 1/sqrt(mean_c x² + eps),  y = x · r · g
//   backward: dx_c = r·g_c·dy_c − x_c · r³/C · Σ_j dy_j g_j x_j
//             dg_c += Σ_rows dy_c · x_c · r
// forward / dx, two kernels each:
//   vector (C % 4 == 0 (% 8 with RoPE), C <= 1024, operands aligned to 4 elements): L lanes per
//     row (L = C/4 rounded up to a power of two, at most 32; 32/L rows per warp); lane j holds
//     the row's 4-column chunks j, j + L, ... (N = 1, 2 or 8 of them) in registers, all its
//     loads issued before the row sum, so x (and dy) are read once and a small row (qk-norm's
//     head_dim 64: 16 lanes of 4 bf16) still keeps every lane busy;
//   scalar (any C, any alignment): one warp per row, lanes stride over the columns.
//   The row sum by a fixed butterfly over the row's lanes (bitwise reproducible).
// dg: deterministic without atomics, in two steps:
//   partials: for C <= 1024 the dx pass itself sums, in double and in row order, dy·x·r over
//           its block's rows -> part[c, b] (dy and x read once); wider rows: a second pass,
//           grid (ceil(rows/32), ceil(C/threads)), thread c of row block b sums the 32 rows
//           -> part[b, c];
//   final: one block per column adds its partials by a fixed tree (strided per thread, then
//           the block's), then dg_c += that sum. (qk-norm has C = head_dim and rows = B·T·H:
//           thousands of partials per column, which one thread per column adds too slowly;
//           the fused passes store them column-major so that the final reads are coalesced.)
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
constexpr int kThreads = 256;       // forward / dx blocks
constexpr int kRowsPerBlock = kThreads / kWarp;  // scalar kernels: one warp per row
// Up to this C the dx pass also produces the dg partials (8 rows × C floats of shared memory,
// 32 KiB at 1024); wider rows take the two-pass path. Also the vector kernels' widest row
// (32 lanes × kMaxChunks chunks of 4).
constexpr int64_t kFusedMaxC = 1024;
constexpr int kMaxChunks = 8;       // vector kernels: chunks per lane at most
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

// The dx passes' dg partial, from the block's rows' dy·x·r left in shared memory (products
// [block_rows, C]; rows past the end 0): part[c, block] = Σ_{i in order} double(products[i, c]).
__device__ __forceinline__ void store_block_partial(double* part, int64_t nblk,
                                                    const float* products, int block_rows,
                                                    int64_t C) {
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) {
    double acc = 0.0;
    for (int i = 0; i < block_rows; ++i) acc += static_cast<double>(products[i * C + c]);
    part[c * nblk + blockIdx.x] = acc;
  }
}

// ---- vector kernels --------------------------------------------------------------------------

__device__ __forceinline__ float4 operator*(float4 a, float4 b) {
  return make_float4(a.x * b.x, a.y * b.y, a.z * b.z, a.w * b.w);
}
__device__ __forceinline__ float4 operator*(float4 a, float s) {
  return make_float4(a.x * s, a.y * s, a.z * s, a.w * s);
}
__device__ __forceinline__ float4 operator+(float4 a, float4 b) {
  return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}
__device__ __forceinline__ float4 operator-(float4 a, float4 b) {
  return make_float4(a.x - b.x, a.y - b.y, a.z - b.z, a.w - b.w);
}
__device__ __forceinline__ float sum4(float4 a) { return a.x + a.y + a.z + a.w; }

// Sum over the L = 2^log2 lanes of this lane's row (an aligned group of the warp); every lane
// of the group ends with the same bits. All 32 lanes must call it.
__device__ __forceinline__ float row_sum(float v, int log2) {
  for (int off = (1 << log2) / 2; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

// This thread's row and its lane j within the row: L = 2^log2 lanes per row, 32/L per warp.
struct RowLane {
  int64_t r;
  int j;
  __device__ RowLane(int log2)
      : r((blockIdx.x * int64_t(blockDim.x) + threadIdx.x) >> log2),
        j(static_cast<int>(threadIdx.x & ((1u << log2) - 1))) {}
};

// The normalised chunk k (x · r · g, four columns), rotated with RoPE: chunk k and its
// partner p = k ± C/8 chunks form the pairs (c, c + C/2) of the rotate-half convention.
template <class In>
__device__ __forceinline__ float4 normalised_chunk(float4 xk, const In* xr, const float* g,
                                                   float rs, int64_t k, int64_t C,
                                                   const float* cs) {
  const float4 n = xk * rs * load4(g + 4 * k);
  if (!cs) return n;
  const int64_t half4 = C / 8;
  const bool first = k < half4;
  const int64_t p = first ? k + half4 : k - half4, i = first ? k : p;
  const float4 pn = load4(xr + 4 * p) * rs * load4(g + 4 * p);
  const float4 co = load4(cs + 4 * i), sn = load4(cs + C / 2 + 4 * i);
  return first ? n * co - pn * sn : n * co + pn * sn;
}

// N: chunks per lane (1, 2 or kMaxChunks: the registers a lane holds, which bound the blocks an
// SM runs: a small row must not pay for the widest).
template <class Out, class In, int N>
__global__ void rmsnorm_forward_vec_kernel(Out* y, float* rstd, const In* x, const float* g,
                                           int64_t rows, int64_t C, int lanes_log2, float eps,
                                           RowRope rope, Rows x_rows) {
  const RowLane at(lanes_log2);
  const bool live = at.r < rows;
  const int L = 1 << lanes_log2;
  const int64_t chunks = C / 4;
  const In* xr = x + (live ? x_rows.at(at.r, C) : 0);
  float4 v[N];
  float ss = 0.0f;
#pragma unroll
  for (int n = 0; n < N; ++n) {
    const int64_t k = at.j + int64_t(n) * L;
    v[n] = live && k < chunks ? load4(xr + 4 * k) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    ss += sum4(v[n] * v[n]);
  }
  ss = row_sum(ss, lanes_log2);
  if (!live) return;  // after the shuffles
  const float rs = 1.0f / sqrtf(ss / static_cast<float>(C) + eps);
  if (at.j == 0) rstd[at.r] = rs;
  const float* cs = rope.table ? rope.angles(at.r, C) : nullptr;
  // Every chunk's loads (g, the RoPE partner and angles) before the first store: the compiler
  // may not move a load above a store to memory it cannot tell apart.
#pragma unroll
  for (int n = 0; n < N; ++n) {
    const int64_t k = at.j + int64_t(n) * L;
    if (k < chunks) v[n] = normalised_chunk(v[n], xr, g, rs, k, C, cs);
  }
#pragma unroll
  for (int n = 0; n < N; ++n) {
    const int64_t k = at.j + int64_t(n) * L;
    if (k < chunks) store4(y + at.r * C + 4 * k, v[n]);
  }
}

// dy's chunk k as the norm's backward sees it: rotated back by the row's angle with RoPE.
template <class In>
__device__ __forceinline__ float4 dy_chunk(const In* dyr, int64_t k, int64_t C, const float* cs) {
  const float4 d = load4(dyr + 4 * k);
  if (!cs) return d;
  const int64_t half4 = C / 8;
  const bool first = k < half4;
  const int64_t p = first ? k + half4 : k - half4, i = first ? k : p;
  const float4 co = load4(cs + 4 * i), sn = load4(cs + C / 2 + 4 * i) * -1.0f;
  const float4 pd = load4(dyr + 4 * p);
  return first ? d * co - pd * sn : d * co + pd * sn;
}

// dx for the vector layout; with `part`, the block's dg partial in the same pass: each row
// leaves its dy·x·r in shared memory, then
//   part[c, block] = Σ_{rows of the block, in order} double(dy·x·r)   (column-major, nblk)
// (rows past the end add 0).
template <class Out, class In, int N>
__global__ void rmsnorm_dx_vec_kernel(Out* dx, const In* dy, const In* x, const float* g,
                                      const float* rstd, int64_t rows, int64_t C,
                                      int lanes_log2, bool accumulate, uint16_t* rounded,
                                      double* part, int64_t nblk, RowRope rope, Rows x_rows,
                                      Rows dx_rows) {
  extern __shared__ float4 products4[];  // [rows per block, C] floats when part
  float* products = reinterpret_cast<float*>(products4);
  const RowLane at(lanes_log2);
  const bool live = at.r < rows;
  const int L = 1 << lanes_log2;
  const int64_t chunks = C / 4;
  const In* xr = x + (live ? x_rows.at(at.r, C) : 0);
  const In* dyr = dy + (live ? at.r * C : 0);
  const float* cs = live && rope.table ? rope.angles(at.r, C) : nullptr;
  float4 xv[N], dv[N];
  float dot = 0.0f;  // Σ dy g x
#pragma unroll
  for (int n = 0; n < N; ++n) {
    const int64_t k = at.j + int64_t(n) * L;
    const bool in = live && k < chunks;
    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    xv[n] = in ? load4(xr + 4 * k) : zero;
    dv[n] = in ? dy_chunk(dyr, k, C, cs) : zero;
    dot += in ? sum4(dv[n] * load4(g + 4 * k) * xv[n]) : 0.0f;
  }
  dot = row_sum(dot, lanes_log2);
  float* row_products = products + (threadIdx.x >> lanes_log2) * C;
  const float rs = live ? rstd[at.r] : 0.0f;
  const float kx = rs * rs * rs * dot / static_cast<float>(C);
  Out* dxr = dx + (live ? dx_rows.at(at.r, C) : 0);
#pragma unroll
  for (int n = 0; n < N; ++n) {  // 0 for rows past the end
    const int64_t k = at.j + int64_t(n) * L;
    if (part && k < chunks) *reinterpret_cast<float4*>(row_products + 4 * k) = dv[n] * xv[n] * rs;
  }
  // dx's chunks into xv: all their loads (g, and dx itself when accumulating, from DRAM) issued
  // before the first store, which the compiler could not move them above.
#pragma unroll
  for (int n = 0; n < N; ++n) {
    const int64_t k = at.j + int64_t(n) * L;
    if (k >= chunks) continue;
    xv[n] = load4(g + 4 * k) * dv[n] * rs - xv[n] * kx;
    if (live && accumulate) xv[n] = load4(dxr + 4 * k) + xv[n];
  }
#pragma unroll
  for (int n = 0; n < N; ++n) {
    const int64_t k = at.j + int64_t(n) * L;
    if (k >= chunks || !live) continue;
    store4(dxr + 4 * k, xv[n]);
    if (rounded) store4(rounded + at.r * C + 4 * k, xv[n]);
  }
  if (!part) return;  // uniform over the block
  __syncthreads();
  store_block_partial(part, nblk, products, blockDim.x >> lanes_log2, C);
}

// ---- scalar kernels --------------------------------------------------------------------------

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

// One element of dx: float (overwritten, or += with accumulate; its final value also rounded
// into `rounded` when that is not null) or bf16 (overwritten, rounded at the store).
__device__ __forceinline__ void put(float* p, float v, bool accumulate, uint16_t* rounded) {
  const float out = accumulate ? *p + v : v;
  *p = out;
  if (rounded) store(rounded, out);
}
__device__ __forceinline__ void put(uint16_t* p, float v, bool, uint16_t*) { store(p, v); }

// dx: one warp per row; with `part` (C <= kFusedMaxC), the block's dg partial in the same pass
// as the vector kernel's (part[c, block], column-major).
template <class Out, class In>
__global__ void rmsnorm_dx_kernel(Out* dx, const In* dy, const In* x, const float* g,
                                  const float* rstd, int64_t rows, int64_t C, bool accumulate,
                                  uint16_t* rounded, double* part, int64_t nblk, RowRope rope,
                                  Rows x_rows, Rows dx_rows) {
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
  store_block_partial(part, nblk, products, kRowsPerBlock, C);
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

// Block c: dg[c] += Σ_b part(b, c), part(b, c) at b·b_stride + c·c_stride (thread t takes
// b = t, t + 256, ...; then the block tree).
__global__ void rmsnorm_dg_final_kernel(float* dg, const double* part, int64_t nblk,
                                        int64_t b_stride, int64_t c_stride) {
  __shared__ double scratch[kWarp];
  const double* pc = part + blockIdx.x * c_stride;
  double s = 0.0;
#pragma unroll 4
  for (int64_t b = threadIdx.x; b < nblk; b += blockDim.x) s += pc[b * b_stride];
  s = block_sum(s, scratch);
  if (threadIdx.x == 0) dg[blockIdx.x] += static_cast<float>(s);
}

// The vector kernels' layout for rows of C, or -1 when they do not apply: log2 of the lanes
// per row (C/4 rounded up to a power of two, at most 32).
int vector_lanes_log2(int64_t C, bool rope,
                      std::initializer_list<std::pair<const void*, size_t>> pointers,
                      std::initializer_list<int64_t> pitches) {
  if (C > kFusedMaxC || C % (rope ? 8 : 4) != 0 || !vectorizable(C, pointers)) return -1;
  for (const int64_t pitch : pitches)
    if (pitch % 4 != 0) return -1;
  int log2 = 0;
  while ((int64_t{1} << log2) < C / 4 && log2 < 5) ++log2;
  return log2;
}

template <class Out, class In>
void forward(Out* y, float* rstd, const In* x, const float* g, int64_t rows, int64_t C,
             float eps, RowRope rope = {}, Rows x_rows = {}) {
  if (rows <= 0 || C <= 0) return;
  const int log2 = vector_lanes_log2(C, rope.table != nullptr,
                                     {{y, sizeof(Out)}, {x, sizeof(In)}, {g, 4}, {rope.table, 4}},
                                     {x_rows.pitch});
  if (log2 >= 0) {
    const int64_t block_rows = kThreads >> log2;
    const auto kernel = C <= 128   ? rmsnorm_forward_vec_kernel<Out, In, 1>
                        : C <= 256 ? rmsnorm_forward_vec_kernel<Out, In, 2>
                                   : rmsnorm_forward_vec_kernel<Out, In, kMaxChunks>;
    kernel<<<grid_x((rows + block_rows - 1) / block_rows), kThreads, 0, compute_stream()>>>(
        y, rstd, x, g, rows, C, log2, eps, rope, x_rows);
  } else {
    const auto kernel = rmsnorm_forward_kernel<Out, In>;
    kernel<<<grid_x((rows + kRowsPerBlock - 1) / kRowsPerBlock), kThreads, 0,
             compute_stream()>>>(y, rstd, x, g, rows, C, eps, rope, x_rows);
  }
  RETORT_CUDA_CHECK_LAUNCH();
}

template <class Out, class In>
void backward(Out* dx, float* dg, const In* dy, const In* x, const float* g, const float* rstd,
              int64_t rows, int64_t C, bool accumulate_dx, uint16_t* dx_rounded,
              RowRope rope = {}, Rows x_rows = {}, Rows dx_rows = {}) {
  if (rows <= 0 || C <= 0) return;
  cudaStream_t st = compute_stream();
  const bool fused = C <= kFusedMaxC;
  RETORT_CHECK(fused || (!rope.table && !x_rows.pitch && !dx_rows.pitch),  // two-pass: contiguous
               "rmsnorm with RoPE: head_dim ", C, " > ", kFusedMaxC);
  const int log2 = vector_lanes_log2(
      C, rope.table != nullptr,
      {{dx, sizeof(Out)}, {dy, sizeof(In)}, {x, sizeof(In)}, {g, 4}, {rope.table, 4},
       {dx_rounded, 2}},
      {x_rows.pitch, dx_rows.pitch});
  const int64_t block_rows = log2 >= 0 ? kThreads >> log2 : kRowsPerBlock;
  const unsigned dx_blocks = grid_x((rows + block_rows - 1) / block_rows);
  const int64_t nblk = fused ? dx_blocks : (rows + kRowBlock - 1) / kRowBlock;
  ScratchBuffer part(sizeof(double) * static_cast<size_t>(nblk * C));
  double* fused_part = fused ? part.as<double>() : nullptr;
  const size_t smem = fused ? block_rows * C * sizeof(float) : 0;
  if (log2 >= 0) {
    const auto kernel = C <= 128   ? rmsnorm_dx_vec_kernel<Out, In, 1>
                        : C <= 256 ? rmsnorm_dx_vec_kernel<Out, In, 2>
                                   : rmsnorm_dx_vec_kernel<Out, In, kMaxChunks>;
    kernel<<<dx_blocks, kThreads, smem, st>>>(dx, dy, x, g, rstd, rows, C, log2, accumulate_dx,
                                              dx_rounded, fused_part, nblk, rope, x_rows,
                                              dx_rows);
  } else {
    const auto kernel = rmsnorm_dx_kernel<Out, In>;
    kernel<<<dx_blocks, kThreads, smem, st>>>(dx, dy, x, g, rstd, rows, C, accumulate_dx,
                                              dx_rounded, fused_part, nblk, rope, x_rows,
                                              dx_rows);
  }
  RETORT_CUDA_CHECK_LAUNCH();
  if (!fused) {
    const int col_threads = C < 128 ? static_cast<int>((C + kWarp - 1) / kWarp * kWarp) : 128;
    const unsigned col_blocks = static_cast<unsigned>((C + col_threads - 1) / col_threads);
    const auto partial_kernel = rmsnorm_dg_partial_kernel<In>;
    partial_kernel<<<dim3(grid_x(nblk), col_blocks), col_threads, 0, st>>>(
        part.as<double>(), dy, x, rstd, rows, C);
    RETORT_CUDA_CHECK_LAUNCH();
  }
  // fused: part[c, b] (column-major); the separate pass: part[b, c]
  rmsnorm_dg_final_kernel<<<grid_x(C), kFinalThreads, 0, st>>>(
      dg, part.as<double>(), nblk, fused ? 1 : C, fused ? nblk : 1);
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
