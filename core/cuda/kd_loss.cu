// Knowledge-distillation losses on logits (math: core/cpu/kd_loss.cpp, docs/DISTILLATION.md).
// z: student logits [V] (this shard), τ: temperature, q = softmax(z/τ), s_v = z_v/τ − lse_s.
// Top-k teacher (ids I, log-probs ℓ [k], ids shard-local or −1 = on another shard):
//   renormalize: p̂_i = exp(ℓ_i − logsumexp(ℓ)); bucket: p_i = exp(ℓ_i), P = max(0, 1 − Σ p_i),
//   Q = Σ_{v∉I} q_v, KL += P (log P − log Q); gradients (q_v − p_v)/τ on I, q_v(1 − P/Q)/τ off I.
// Dense teacher (logits t): p = softmax(t/τ), KL = Σ_v p_v (log p_v − s_v), dKL/dz = (q − p)/τ.
//
// Mapping: every row kernel is one block per row (grid = rows, 256 threads), fixed block trees
// for every sum (float over the vocabulary, double over the top-k like the CPU); bucket_finish
// is one thread per row. Top-k sums over i run in double, the vocabulary sums in float.
// Bucket tail Q: the top-k ids of the row are marked in a shared-memory bitmap of V bits
// (integer atomicOr: order-free and exact), then Σ over the unmarked v — no subtraction from
// the total, so a tiny Q keeps its relative precision.
// Backward: the dense pass d_v += c·q_v·(1 − ratio), a block barrier, then one thread per
// top-k id adds c·(q_v·ratio − p_v): each element has one writer at a time (ids are distinct).
#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"

namespace retort::cuda {

namespace {

constexpr int kRowThreads = 256;
constexpr float kMinTail = 1e-30f;  // floor of the student's tail mass Q (bucket)

// Teacher top-k normaliser of one row, computed by the whole block:
//   renormalize (tail 0): log_norm = logsumexp(ℓ), P = 0;  bucket: log_norm = 0, P = max(0, 1 − Σ e^ℓ)
// so p_i = exp(ℓ_i − log_norm) in both cases.
struct TopkNorm {
  double log_norm, P;
};

__device__ TopkNorm block_topk_norm(const float* lp, int64_t k, int tail, double* scratch) {
  if (tail == 0) {
    double mx = -INFINITY;
    for (int64_t i = threadIdx.x; i < k; i += blockDim.x) mx = fmax(mx, double(lp[i]));
    mx = block_reduce(mx, MaxOp{}, double(-INFINITY), scratch);
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < k; i += blockDim.x) s += exp(double(lp[i]) - mx);
    s = block_sum(s, scratch);
    return {mx + log(s), 0.0};
  }
  double total = 0.0;
  for (int64_t i = threadIdx.x; i < k; i += blockDim.x) total += exp(double(lp[i]));
  total = block_sum(total, scratch);
  const double P = 1.0 - total;
  return {0.0, P > 0.0 ? P : 0.0};  // NaN -> 0, as std::max(0.0, ·) on the CPU
}

__global__ void kd_logsumexp_kernel(float* lse, const float* logits, int64_t V, float inv_tau) {
  __shared__ float scratch[2 * kWarp];
  const int64_t r = blockIdx.x;
  const float l = block_row_lse(logits + r * V, V, inv_tau, scratch);
  if (threadIdx.x == 0) lse[r] = l;
}

// Dynamic shared memory: the bitmap of ceil(V/32) words when tail == 1.
__global__ void kd_topk_shard_forward_kernel(float* kl, float* tail_q, const float* logits,
                                             const float* lse_s, const int32_t* ids,
                                             const float* logp, int64_t V, int64_t k,
                                             float inv_tau, int tail) {
  extern __shared__ uint32_t outside_bits[];  // bit v set: v is in the top-k
  __shared__ double dscratch[kWarp];
  __shared__ float fscratch[kWarp];
  const int64_t r = blockIdx.x;
  const float* x = logits + r * V;
  const int32_t* id = ids + r * k;
  const float* lp = logp + r * k;
  const float lse = lse_s[r];
  const TopkNorm norm = block_topk_norm(lp, k, tail, dscratch);
  double part = 0.0;  // Σ_{i here} p_i (log p_i − s_{I_i})
  for (int64_t i = threadIdx.x; i < k; i += blockDim.x) {
    const double p = exp(double(lp[i]) - norm.log_norm);
    if (id[i] >= 0 && p > 0)
      part += p * ((double(lp[i]) - norm.log_norm) -
                   (double(x[id[i]]) * double(inv_tau) - double(lse)));
  }
  part = block_sum(part, dscratch);
  if (threadIdx.x == 0) kl[r] = float(part);
  if (tail != 1) {
    if (threadIdx.x == 0) tail_q[r] = 0.0f;
    return;
  }
  const int64_t words = (V + 31) / 32;
  for (int64_t w = threadIdx.x; w < words; w += blockDim.x) outside_bits[w] = 0u;
  __syncthreads();
  for (int64_t i = threadIdx.x; i < k; i += blockDim.x)
    if (id[i] >= 0) atomicOr(&outside_bits[id[i] >> 5], 1u << (id[i] & 31));
  __syncthreads();
  float sq = 0.0f;  // Σ_{v here, ∉I} exp(z_v/τ − lse)
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x)
    if (!((outside_bits[v >> 5] >> (v & 31)) & 1u)) sq += expf(x[v] * inv_tau - lse);
  sq = block_sum(sq, fscratch);
  if (threadIdx.x == 0) tail_q[r] = sq;
}

// One thread per row, serial over k in the CPU's order.
__global__ void kd_bucket_finish_kernel(float* kl, float* tail_q, const float* logp, int64_t rows,
                                        int64_t k) {
  for (int64_t r = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; r < rows;
       r += int64_t(gridDim.x) * blockDim.x) {
    const float* lp = logp + r * k;
    double total = 0.0;
    for (int64_t i = 0; i < k; ++i) total += exp(double(lp[i]));
    const double P = 1.0 - total > 0.0 ? 1.0 - total : 0.0;
    const float Q = tail_q[r] < kMinTail ? kMinTail : tail_q[r];  // NaN stays NaN
    tail_q[r] = Q;
    if (P > 0) kl[r] = float(double(kl[r]) + P * (log(P) - log(double(Q))));
  }
}

__global__ void kd_topk_backward_kernel(float* dlogits, const float* logits, const float* lse_s,
                                        const float* tail_q, const int32_t* ids,
                                        const float* logp, int64_t V, int64_t k, float inv_tau,
                                        int tail, float scale) {
  __shared__ double dscratch[kWarp];
  const int64_t r = blockIdx.x;
  const float* x = logits + r * V;
  float* d = dlogits + r * V;
  const int32_t* id = ids + r * k;
  const float* lp = logp + r * k;
  const float lse = lse_s[r];
  const TopkNorm norm = block_topk_norm(lp, k, tail, dscratch);
  const double c = double(scale) * double(inv_tau);
  // ratio = P/Q: off the top-k the gradient is c·q_v·(1 − ratio); renormalize: ratio 0.
  const double ratio = tail == 1 ? norm.P / double(tail_q[r]) : 0.0;
  const float cq = float(c * (1.0 - ratio));
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x) d[v] += cq * expf(x[v] * inv_tau - lse);
  __syncthreads();  // the dense writes above are visible to the whole block
  // On the top-k: c·(q_v − p_v) in total, i.e. add c·(q_v·ratio − p_v).
  for (int64_t i = threadIdx.x; i < k; i += blockDim.x) {
    if (id[i] < 0) continue;  // on another shard
    const double p = exp(double(lp[i]) - norm.log_norm);
    const double q = exp(double(x[id[i]]) * double(inv_tau) - double(lse));
    d[id[i]] += float(c * (q * ratio - p));
  }
}

__global__ void kd_dense_shard_forward_kernel(float* kl, const float* logits, const float* teacher,
                                              const float* lse_s, const float* lse_t, int64_t V,
                                              float inv_tau) {
  __shared__ float scratch[kWarp];
  const int64_t r = blockIdx.x;
  const float* x = logits + r * V;
  const float* t = teacher + r * V;
  const float lt = lse_t[r], dl = lt - lse_s[r];
  float sum = 0.0f;  // Σ_{v here} p_v ((t_v − z_v)/τ − (lse_t − lse_s))
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x)
    sum += expf(t[v] * inv_tau - lt) * ((t[v] - x[v]) * inv_tau - dl);
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) kl[r] = sum;
}

__global__ void kd_dense_backward_kernel(float* dlogits, const float* logits, const float* lse_s,
                                         const float* teacher, const float* lse_t, int64_t V,
                                         float inv_tau, float scale) {
  const int64_t r = blockIdx.x;
  const float* x = logits + r * V;
  const float* t = teacher + r * V;
  float* d = dlogits + r * V;
  const float ls = lse_s[r], lt = lse_t[r], c = scale * inv_tau;
  for (int64_t v = threadIdx.x; v < V; v += blockDim.x)
    d[v] += c * (expf(x[v] * inv_tau - ls) - expf(t[v] * inv_tau - lt));
}

}  // namespace

void kd_logsumexp(float* lse, const float* logits, int64_t rows, int64_t V, float inv_tau) {
  if (rows <= 0) return;
  kd_logsumexp_kernel<<<grid_x(rows), kRowThreads, 0, compute_stream()>>>(lse, logits, V,
                                                                          inv_tau);
  RETORT_CUDA_CHECK_LAUNCH();
}

void kd_topk_shard_forward(float* kl, float* tail_q, const float* logits, const float* lse_s,
                           const int32_t* ids, const float* logp, int64_t rows, int64_t V,
                           int64_t k, float inv_tau, int tail) {
  if (rows <= 0) return;
  size_t smem = 0;
  if (tail == 1) {  // the bitmap; beyond 48 KiB (V > 393216 on one shard) an opt-in
    smem = sizeof(uint32_t) * static_cast<size_t>((V + 31) / 32);
    require_smem(reinterpret_cast<const void*>(&kd_topk_shard_forward_kernel), smem,
                 "kd_topk_shard_forward (top-k bitmap of the vocabulary shard)");
  }
  kd_topk_shard_forward_kernel<<<grid_x(rows), kRowThreads, smem, compute_stream()>>>(
      kl, tail_q, logits, lse_s, ids, logp, V, k, inv_tau, tail);
  RETORT_CUDA_CHECK_LAUNCH();
}

void kd_bucket_finish(float* kl, float* tail_q, const float* logp, int64_t rows, int64_t k) {
  if (rows <= 0) return;
  kd_bucket_finish_kernel<<<grid_for(rows, kBlock), kBlock, 0, compute_stream()>>>(kl, tail_q,
                                                                                    logp, rows, k);
  RETORT_CUDA_CHECK_LAUNCH();
}

void kd_topk_backward(float* dlogits, const float* logits, const float* lse_s, const float* tail_q,
                      const int32_t* ids, const float* logp, int64_t rows, int64_t V, int64_t k,
                      float inv_tau, int tail, float scale) {
  if (rows <= 0) return;
  kd_topk_backward_kernel<<<grid_x(rows), kRowThreads, 0, compute_stream()>>>(
      dlogits, logits, lse_s, tail_q, ids, logp, V, k, inv_tau, tail, scale);
  RETORT_CUDA_CHECK_LAUNCH();
}

void kd_dense_shard_forward(float* kl, const float* logits, const float* teacher,
                            const float* lse_s, const float* lse_t, int64_t rows, int64_t V,
                            float inv_tau) {
  if (rows <= 0) return;
  kd_dense_shard_forward_kernel<<<grid_x(rows), kRowThreads, 0, compute_stream()>>>(
      kl, logits, teacher, lse_s, lse_t, V, inv_tau);
  RETORT_CUDA_CHECK_LAUNCH();
}

void kd_dense_backward(float* dlogits, const float* logits, const float* lse_s,
                       const float* teacher, const float* lse_t, int64_t rows, int64_t V,
                       float inv_tau, float scale) {
  if (rows <= 0) return;
  kd_dense_backward_kernel<<<grid_x(rows), kRowThreads, 0, compute_stream()>>>(
      dlogits, logits, lse_s, teacher, lse_t, V, inv_tau, scale);
  RETORT_CUDA_CHECK_LAUNCH();
}

}  // namespace retort::cuda
