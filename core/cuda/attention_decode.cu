// Attention of one new query per (sequence, head) over a KV cache, for generation
// (math as core/cpu/attention_decode.cpp):
//   s_j = q · k_j / sqrt(hd) (j < n);  p = softmax(s);  out = Σ_j p_j v_j
// q, out: [B, H, hd]; k, v: [B, T_max, Hkv, hd]; head h reads kv head h / (H/Hkv).
// One block of 256 threads per (b, h) (grid = B·H). Keys are taken in chunks of 256:
//   scores: warp w computes keys w, w + 8, ... of the chunk (lanes stride over hd, xor-tree sum);
//   the chunk's max and Σexp by fixed block trees update the running (m, l) and rescale the
//   output accumulators (online softmax); then thread d adds Σ_j p_j v_j[d] over the chunk in
//   key order (head-dim columns d, d + 256, ... up to hd ≤ 1024).
// Deterministic: every sum has a fixed order. Caveat: only B·H blocks; with few sequences the
// GPU is mostly idle (a split over the keys with a fixed-order merge would fix that).
#include <cmath>

#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"

namespace retort::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kChunk = kThreads;  // keys per chunk: one score per thread
constexpr int kMaxCols = 4;       // head-dim columns per thread: hd ≤ 1024

__global__ void __launch_bounds__(kThreads)
    attention_decode_kernel(float* out, const float* q, const float* k, const float* v,
                            int64_t T_max, int64_t n, int H, int Hkv, int hd, float scale) {
  extern __shared__ float qs[];  // [hd]
  __shared__ float ps[kChunk];
  __shared__ float scratch[kWarp];
  const int bh = blockIdx.x, b = bh / H, h = bh % H, j = h / (H / Hkv);
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  const int64_t ldk = static_cast<int64_t>(Hkv) * hd;
  const float* K = k + static_cast<int64_t>(b) * T_max * ldk + static_cast<int64_t>(j) * hd;
  const float* V = v + static_cast<int64_t>(b) * T_max * ldk + static_cast<int64_t>(j) * hd;
  for (int d = threadIdx.x; d < hd; d += kThreads) qs[d] = q[static_cast<int64_t>(bh) * hd + d];
  float o[kMaxCols];
#pragma unroll
  for (int e = 0; e < kMaxCols; ++e) o[e] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  __syncthreads();
  for (int64_t c0 = 0; c0 < n; c0 += kChunk) {
    const int nc = n - c0 < kChunk ? static_cast<int>(n - c0) : kChunk;
    for (int kk = warp; kk < nc; kk += kThreads / kWarp) {
      const float* kr = K + (c0 + kk) * ldk;
      float dot = 0.0f;
      for (int d = lane; d < hd; d += kWarp) dot += qs[d] * kr[d];
      dot = warp_reduce(dot, SumOp{});
      if (lane == 0) ps[kk] = dot * scale;
    }
    __syncthreads();
    const float s = threadIdx.x < nc ? ps[threadIdx.x] : -INFINITY;
    const float mnew = fmaxf(m, block_max(s, scratch));  // finite: the chunk has >= 1 key
    const float p = threadIdx.x < nc ? expf(s - mnew) : 0.0f;
    ps[threadIdx.x] = p;  // each thread rewrites its own score
    const float corr = expf(m - mnew);  // 0 on the first chunk
    l = l * corr + block_sum(p, scratch);  // the block_sum barriers also publish ps
    m = mnew;
#pragma unroll
    for (int e = 0; e < kMaxCols; ++e) {
      const int d = threadIdx.x + e * kThreads;
      if (d >= hd) break;
      float acc = o[e] * corr;
      for (int kk = 0; kk < nc; ++kk) acc += ps[kk] * V[(c0 + kk) * ldk + d];
      o[e] = acc;
    }
    __syncthreads();  // ps is rewritten by the next chunk
  }
  float* O = out + static_cast<int64_t>(bh) * hd;
#pragma unroll
  for (int e = 0; e < kMaxCols; ++e) {
    const int d = threadIdx.x + e * kThreads;
    if (d < hd) O[d] = o[e] / l;
  }
}

}  // namespace

void attention_decode(float* out, const float* q, const float* k, const float* v, int64_t B,
                      int64_t T_max, int64_t n, int64_t H, int64_t Hkv, int64_t hd) {
  if (B <= 0 || H <= 0 || hd <= 0) return;
  RETORT_CHECK(hd <= kThreads * kMaxCols, "attention_decode: the CUDA kernel supports head_dim <= ",
               kThreads * kMaxCols, ", got ", hd);
  RETORT_CHECK(n >= 1 && n <= T_max && Hkv > 0 && H % Hkv == 0,
               "attention_decode: bad sizes n = ", n, ", T_max = ", T_max, ", H = ", H,
               ", Hkv = ", Hkv);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  attention_decode_kernel<<<grid_x(B * H), kThreads, sizeof(float) * hd, compute_stream()>>>(
      out, q, k, v, T_max, n, static_cast<int>(H), static_cast<int>(Hkv), static_cast<int>(hd),
      scale);
  RETORT_CUDA_CHECK_LAUNCH();
}

}  // namespace retort::cuda
