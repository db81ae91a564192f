// Attention of one new query per (sequence, head) over a KV cache, for generation
// (math as core/cpu/attention_decode.cpp):
//   s_j = q · k_j / sqrt(hd) (j < n);  p = softmax(s);  out = Σ_j p_j v_j
// q: [B, H, hd] float; k, v: [B, T_max, Hkv, hd] float or bf16; out: [B, H, hd] float or bf16
// (rounded at the store); head h reads kv head h / (H/Hkv). One block of 256 threads per (b, h) (grid = B·H). Keys are taken in chunks of 256,
// every thread busy in both passes over the cache:
//   scores: thread t computes key t of the chunk (its row read VEC elements at a time: 16 bytes
//     of float, 8 of bf16); the chunk's max and Σexp by fixed block trees update the running
//     (m, l) and rescale the output accumulators (online softmax);
//   Σ_j p_j v_j: the threads are G = 256 / (hd / VEC) groups of hd / VEC, a group reading one V
//     row at a time (coalesced), group g the keys g, g + G, ... of the chunk; the groups'
//     partial outputs are added in group order at the end.
// Deterministic: every sum has a fixed order. Caveat: only B·H blocks; with few sequences the
// GPU is mostly idle (a split over the keys with a fixed-order merge would fix that), and the
// H/Hkv query heads of a GQA group read their kv head apart (from L2 when they run together).
#include <cmath>
#include <cstdint>

#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"

namespace retort::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kChunk = kThreads;  // keys per chunk: one score per thread

// VEC consecutive elements of a row as floats (VEC 4: one vector load, p aligned to it).
template <int VEC, class T>
__device__ __forceinline__ void load_vec(float (&x)[VEC], const T* p) {
  if constexpr (VEC == 4) {
    const float4 f = load4(p);
    x[0] = f.x, x[1] = f.y, x[2] = f.z, x[3] = f.w;
  } else {
    x[0] = load(p);
  }
}

template <class Out, class KV, int VEC>
__global__ void __launch_bounds__(kThreads)
    attention_decode_kernel(Out* out, const float* q, const KV* k, const KV* v, int64_t T_max,
                            int n, int H, int Hkv, int hd, float scale) {
  extern __shared__ float smem[];  // q [hd], then the groups' partial outputs [G, hd]
  __shared__ float ps[kChunk];
  __shared__ float scratch[kWarp];
  float* qs = smem;
  float* partial = smem + hd;
  const int bh = blockIdx.x, b = bh / H, h = bh % H, j = h / (H / Hkv);
  const int cols = hd / VEC, groups = kThreads / cols;
  const int g = threadIdx.x / cols, c = (threadIdx.x % cols) * VEC;  // V pass: group, column
  const int64_t ldk = static_cast<int64_t>(Hkv) * hd;
  const KV* K = k + static_cast<int64_t>(b) * T_max * ldk + static_cast<int64_t>(j) * hd;
  const KV* V = v + static_cast<int64_t>(b) * T_max * ldk + static_cast<int64_t>(j) * hd;
  for (int d = threadIdx.x; d < hd; d += kThreads) qs[d] = q[static_cast<int64_t>(bh) * hd + d];
  float o[VEC];
#pragma unroll
  for (int e = 0; e < VEC; ++e) o[e] = 0.0f;
  float m = -INFINITY, l = 0.0f;
  __syncthreads();
  for (int c0 = 0; c0 < n; c0 += kChunk) {
    const int nc = n - c0 < kChunk ? n - c0 : kChunk;
    float s = -INFINITY;
    if (threadIdx.x < nc) {
      const KV* kr = K + (c0 + threadIdx.x) * ldk;
      float dot = 0.0f;
#pragma unroll 4
      for (int d = 0; d < hd; d += VEC) {
        float x[VEC];
        load_vec<VEC>(x, kr + d);
#pragma unroll
        for (int e = 0; e < VEC; ++e) dot += qs[d + e] * x[e];
      }
      s = dot * scale;
    }
    const float mnew = fmaxf(m, block_max(s, scratch));  // finite: the chunk has >= 1 key
    const float p = threadIdx.x < nc ? expf(s - mnew) : 0.0f;
    ps[threadIdx.x] = p;  // each thread writes its own key's weight
    const float corr = expf(m - mnew);  // 0 on the first chunk
    l = l * corr + block_sum(p, scratch);  // the block_sum barriers also publish ps
    m = mnew;
    if (g < groups) {
#pragma unroll
      for (int e = 0; e < VEC; ++e) o[e] *= corr;
#pragma unroll 4
      for (int kk = g; kk < nc; kk += groups) {
        float x[VEC];
        load_vec<VEC>(x, V + (c0 + kk) * ldk + c);
        const float pk = ps[kk];
#pragma unroll
        for (int e = 0; e < VEC; ++e) o[e] += pk * x[e];
      }
    }
    __syncthreads();  // ps is rewritten by the next chunk
  }
  if (g < groups) {
#pragma unroll
    for (int e = 0; e < VEC; ++e) partial[g * hd + c + e] = o[e];
  }
  __syncthreads();
  Out* O = out + static_cast<int64_t>(bh) * hd;
  for (int d = threadIdx.x; d < hd; d += kThreads) {
    float acc = 0.0f;
    for (int gg = 0; gg < groups; ++gg) acc += partial[gg * hd + d];
    store(O + d, acc / l);
  }
}

}  // namespace

template <class Out, class KV>
void attention_decode(Out* out, const float* q, const KV* k, const KV* v, int64_t B,
                      int64_t T_max, int64_t n, int64_t H, int64_t Hkv, int64_t hd) {
  if (B <= 0 || H <= 0 || hd <= 0) return;
  // four elements per load where every row starts at a multiple of four elements
  const bool vec4 = vectorizable(hd, {{k, sizeof(KV)}, {v, sizeof(KV)}});
  const int64_t cols = vec4 ? hd / 4 : hd;
  RETORT_CHECK(cols <= kThreads, "attention_decode: the CUDA kernel supports head_dim <= ",
               4 * kThreads, " (a multiple of 4) or <= ", kThreads, ", got ", hd);
  RETORT_CHECK(n >= 1 && n <= T_max && Hkv > 0 && H % Hkv == 0,
               "attention_decode: bad sizes n = ", n, ", T_max = ", T_max, ", H = ", H,
               ", Hkv = ", Hkv);
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  const size_t smem = sizeof(float) * hd * (1 + kThreads / cols);  // ≤ 8 KiB
  const auto kernel =
      vec4 ? attention_decode_kernel<Out, KV, 4> : attention_decode_kernel<Out, KV, 1>;
  kernel<<<grid_x(B * H), kThreads, smem, compute_stream()>>>(
      out, q, k, v, T_max, static_cast<int>(n), static_cast<int>(H), static_cast<int>(Hkv),
      static_cast<int>(hd), scale);
  RETORT_CUDA_CHECK_LAUNCH();
}

#define RETORT_ATTENTION_DECODE(Out, KV)                                                       \
  template void attention_decode(Out*, const float*, const KV*, const KV*, int64_t, int64_t, \
                                 int64_t, int64_t, int64_t, int64_t);
RETORT_ATTENTION_DECODE(float, float)
RETORT_ATTENTION_DECODE(float, uint16_t)
RETORT_ATTENTION_DECODE(uint16_t, float)
RETORT_ATTENTION_DECODE(uint16_t, uint16_t)
#undef RETORT_ATTENTION_DECODE

}  // namespace retort::cuda
