// Softmax cross-entropy with z-loss, one row per token (math as core/cpu/cross_entropy.cpp):
//   lse_r = m + log Σ_v exp(x_v − m)     ce_r = lse_r − x_{target}   (ce_r = lse_r when the
//   target is −1: on another vocabulary shard)
//   dx_v  = (ce_scale + 2·z_scale·lse_r)·p_v − ce_scale·[v = target],  p_v = exp(x_v − lse_r)
// forward: one block per row (grid = rows, row_threads(V) threads); each thread keeps an online
//   (max, Σexp) pair over its strided columns, merged by a fixed tree (block_row_lse).
// backward: one block per row, a single pass over the row: each element is read and written
//   by the same thread (the one-hot term is folded in), so dlogits may alias logits.
// forward_backward (training without tp): the forward kernel goes on to the backward's pass in
//   the same block once it has the row's lse, so the row is read from memory once; forward
//   alone is that kernel without the gradient, so the two give bitwise the same ce and lse.
// Both read (and the backward writes) four columns at once where V % 4 == 0 and the rows are
//   aligned to it (the vocabularies retort's configs use), one at a time otherwise. The logits
//   are fp32, or bf16 (the head's bf16 product under bf16 activations: half the bytes read,
//   and the bf16 dlogits written over them); the sums are fp32 either way.
// target_logits, logsumexp_merge: one thread per row; the merge is in double like the CPU.
#include <algorithm>

#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"

namespace retort::cuda {

namespace {

// Threads per row: enough for ~8 four-column loads each, at least 128 (16 blocks fill an SM),
// at most 1024. At V = 32768, 1024: two blocks per SM (the kernels' launch bounds hold them to
// 32 registers a thread so that two fit), so the rows in flight (264 on an H100) keep their
// ~17 MB of bf16 logits in L2 between forward_backward's two reads of a row.
constexpr int kMaxRowThreads = 1024;
int row_threads(int64_t V) {
  return int(std::clamp<int64_t>((V / 32 + 31) / 32 * 32, 128, kMaxRowThreads));
}

// One row's dlogits from its lse l and target t (−1: none on this shard): each element read and
// written by the same thread, so d may be x.
template <class Out, class In>
__device__ __forceinline__ void row_gradient(Out* d, const In* x, float l, int64_t t, int64_t V,
                                             float ce_scale, float z_scale) {
  const float coef = ce_scale + 2.0f * z_scale * l;  // multiplies p_v
  if (row_vectorizable(x, V) && row_vectorizable(d, V)) {
    for (int64_t i = threadIdx.x; i < V / 4; i += blockDim.x) {  // four columns 4i.. at once
      const float4 xv = load4(x + 4 * i);
      float4 g = make_float4(coef * expf(xv.x - l), coef * expf(xv.y - l),
                             coef * expf(xv.z - l), coef * expf(xv.w - l));
      if (t >= 4 * i && t < 4 * i + 4) (&g.x)[t - 4 * i] -= ce_scale;
      store4(d + 4 * i, g);
    }
    return;
  }
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) {
    const float g = coef * expf(load(&x[v]) - l);
    store(&d[v], v == t ? g - ce_scale : g);
  }
}

// Forward, and with dlogits (non-null) the gradient from the row's lse in the same block: the
// row comes from memory once, its second read from L2.
// Out: float (dlogits may be logits) or uint16_t (bf16, rounded at the store; may be bf16
// logits themselves).
template <class Out, class In>
__global__ void __launch_bounds__(kMaxRowThreads, 2)
    ce_forward_kernel(float* ce, float* lse, Out* dlogits, const In* logits,
                      const int32_t* targets, int64_t V, float ce_scale, float z_scale) {
  __shared__ float scratch[2 * kWarp];
  const int64_t r = blockIdx.x;
  const In* x = logits + r * V;
  const int32_t t = targets[r];
  // Read before block_row_lse's barriers, so before any thread overwrites it in place.
  const float target_logit = threadIdx.x == 0 && t >= 0 ? load(&x[t]) : 0.0f;
  const float l = block_row_lse(x, V, 1.0f, scratch);
  if (threadIdx.x == 0) {
    lse[r] = l;
    ce[r] = t < 0 ? l : l - target_logit;
  }
  if (dlogits != nullptr) row_gradient(dlogits + r * V, x, l, t, V, ce_scale, z_scale);
}

template <class Out, class In>
__global__ void __launch_bounds__(kMaxRowThreads, 2)
    ce_backward_kernel(Out* dlogits, const In* logits, const float* lse, const int32_t* targets,
                       int64_t V, float ce_scale, float z_scale) {
  const int64_t r = blockIdx.x;
  row_gradient(dlogits + r * V, logits + r * V, lse[r], targets[r], V, ce_scale, z_scale);
}

__global__ void vocab_shard_ids_kernel(int32_t* out, const int32_t* ids, int64_t n,
                                       int32_t begin, int32_t V) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    out[i] = ids[i] >= begin && ids[i] - begin < V ? ids[i] - begin : -1;
}

template <class In>
__global__ void target_logits_kernel(float* out, const In* logits, const int32_t* targets,
                                     int64_t rows, int64_t V) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows;
       r += int64_t(gridDim.x) * blockDim.x)
    out[r] = targets[r] < 0 ? 0.0f : load(&logits[r * V + targets[r]]);
}

// parts: [n, rows]; lse[r] = m + log Σ_i exp(parts[i, r] − m) with the sum in double.
__global__ void logsumexp_merge_kernel(float* lse, const float* parts, int64_t n, int64_t rows) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows;
       r += int64_t(gridDim.x) * blockDim.x) {
    float m = -INFINITY;
    for (int64_t i = 0; i < n; ++i) m = fmaxf(m, parts[i * rows + r]);
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += exp(static_cast<double>(parts[i * rows + r]) - m);
    lse[r] = static_cast<float>(m + log(s));
  }
}

}  // namespace

template <class Out, class In>
void cross_entropy_forward_backward(float* ce, float* lse, Out* dlogits, const In* logits,
                                    const int32_t* targets, int64_t rows, int64_t V,
                                    float ce_scale, float z_scale) {
  if (rows <= 0 || V <= 0) return;
  const auto kernel = ce_forward_kernel<Out, In>;
  kernel<<<grid_x(rows), row_threads(V), 0, compute_stream()>>>(ce, lse, dlogits, logits, targets,
                                                                V, ce_scale, z_scale);
  RETORT_CUDA_CHECK_LAUNCH();
}

// The same kernel without a gradient, so forward's lse is bitwise forward_backward's.
template <class In>
void cross_entropy_forward(float* ce, float* lse, const In* logits, const int32_t* targets,
                           int64_t rows, int64_t V) {
  cross_entropy_forward_backward<In, In>(ce, lse, nullptr, logits, targets, rows, V, 0.0f, 0.0f);
}

template <class Out, class In>
void cross_entropy_backward(Out* dlogits, const In* logits, const float* lse,
                            const int32_t* targets, int64_t rows, int64_t V, float ce_scale,
                            float z_scale) {
  if (rows <= 0 || V <= 0) return;
  const auto kernel = ce_backward_kernel<Out, In>;
  kernel<<<grid_x(rows), row_threads(V), 0, compute_stream()>>>(dlogits, logits, lse, targets, V,
                                                                ce_scale, z_scale);
  RETORT_CUDA_CHECK_LAUNCH();
}

template <class In>
void target_logits(float* out, const In* logits, const int32_t* targets, int64_t rows,
                   int64_t V) {
  if (rows <= 0) return;
  const auto kernel = target_logits_kernel<In>;
  kernel<<<grid_for(rows, kBlock), kBlock, 0, compute_stream()>>>(out, logits, targets, rows, V);
  RETORT_CUDA_CHECK_LAUNCH();
}

template void cross_entropy_forward(float*, float*, const float*, const int32_t*, int64_t, int64_t);
template void cross_entropy_forward(float*, float*, const uint16_t*, const int32_t*, int64_t,
                                    int64_t);
#define RETORT_CE_BACKWARD(Out, In)                                                            \
  template void cross_entropy_backward(Out*, const In*, const float*, const int32_t*, int64_t, \
                                       int64_t, float, float);
#define RETORT_CE_FORWARD_BACKWARD(Out, In)                                                 \
  template void cross_entropy_forward_backward(float*, float*, Out*, const In*,             \
                                               const int32_t*, int64_t, int64_t, float, float);
#define RETORT_CE(Out, In) RETORT_CE_BACKWARD(Out, In) RETORT_CE_FORWARD_BACKWARD(Out, In)
RETORT_CE(float, float)
RETORT_CE(uint16_t, float)
RETORT_CE(uint16_t, uint16_t)
#undef RETORT_CE
#undef RETORT_CE_FORWARD_BACKWARD
#undef RETORT_CE_BACKWARD
template void target_logits(float*, const float*, const int32_t*, int64_t, int64_t);
template void target_logits(float*, const uint16_t*, const int32_t*, int64_t, int64_t);

void vocab_shard_ids(int32_t* out, const int32_t* ids, int64_t n, int32_t begin, int32_t V) {
  if (n <= 0) return;
  vocab_shard_ids_kernel<<<grid_for(n, kBlock), kBlock, 0, compute_stream()>>>(out, ids, n, begin, V);
  RETORT_CUDA_CHECK_LAUNCH();
}

void logsumexp_merge(float* lse, const float* parts, int64_t n, int64_t rows) {
  if (rows <= 0) return;
  logsumexp_merge_kernel<<<grid_for(rows, kBlock), kBlock, 0, compute_stream()>>>(lse, parts, n,
                                                                                   rows);
  RETORT_CUDA_CHECK_LAUNCH();
}

}  // namespace retort::cuda
