// A corpus's top-k targets on the device (core/ops.h, topk_log_softmax; the CPU kernel is the
// reference): one block per row of logits x [V], so only the [rows, k] results need to reach
// the host.
//   1. lse = m + log Σ exp(x/τ − m) in double: max and sum by the fixed block tree.
//   2. Radix select on the 64-bit keys descending_key(x_j, j) (distinct; ascending = the output
//      order): a byte at a time from the top, histogram the keys that share the prefix chosen
//      so far and take the byte where the k-th smallest key falls. As soon as every key of
//      that byte is needed, the threshold T is known and all keys ≤ T are exactly the k.
//      (Usually 2–4 passes: the top bytes are the logit's sign, exponent and mantissa.)
//   3. The k keys gathered into shared memory (any order), bitonic-sorted, written out.
// Shared-memory histograms count with integer atomics (exact); the gather's order does not
// matter after the sort: the output is bitwise reproducible.
#include <cmath>

#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"

namespace retort::cuda {

namespace {

constexpr int kTopkThreads = 256;
constexpr int kTopkWarps = kTopkThreads / kWarp;

// core/descending_order.h's key: the value's bits made order-preserving and inverted, then the id.
__device__ __forceinline__ uint64_t descending_key(float x, int64_t id) {
  const uint32_t u = __float_as_uint(x == 0.0f ? 0.0f : x);
  const uint32_t ascending = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (uint64_t(~ascending) << 32) | uint32_t(id);
}

__global__ void topk_log_softmax_kernel(int32_t* ids, float* logprobs, const float* logits,
                                        int64_t V, int k, int k_pow2, double tau) {
  __shared__ float max_scratch[kWarp];
  __shared__ double sum_scratch[kWarp];
  __shared__ unsigned hist[kTopkWarps][256];  // one per warp: fewer colliding atomics
  __shared__ unsigned digit_count[256];
  __shared__ uint64_t chosen[kMaxDeviceTopK];
  __shared__ unsigned remaining_s, gathered;
  __shared__ int digit_s;
  const float* x = logits + blockIdx.x * V;
  const int t = threadIdx.x, warp = t / kWarp;

  // 1. log-sum-exp
  float mx = -INFINITY;
  for (int64_t j = t; j < V; j += blockDim.x) mx = x[j] > mx ? x[j] : mx;
  const double m = double(block_max(mx, max_scratch)) / tau;
  double s = 0;
  for (int64_t j = t; j < V; j += blockDim.x) s += exp(double(x[j]) / tau - m);
  const double lse = m + log(block_sum(s, sum_scratch));

  // 2. the k-th smallest key, a byte at a time
  uint64_t prefix = 0, mask = 0, threshold = 0;
  unsigned remaining = unsigned(k);
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int i = t; i < kTopkWarps * 256; i += blockDim.x) (&hist[0][0])[i] = 0;
    __syncthreads();
    for (int64_t j = t; j < V; j += blockDim.x) {
      const uint64_t key = descending_key(x[j], j);
      if ((key & mask) == prefix) atomicAdd(&hist[warp][(key >> shift) & 0xff], 1u);
    }
    __syncthreads();
    for (int b = t; b < 256; b += blockDim.x) {
      unsigned c = 0;
      for (int w = 0; w < kTopkWarps; ++w) c += hist[w][b];
      digit_count[b] = c;
    }
    __syncthreads();
    if (t == 0) {  // the byte holding the remaining-th smallest key of this prefix
      int b = 0;
      while (digit_count[b] < remaining) remaining -= digit_count[b++];
      digit_s = b;
      remaining_s = remaining;
    }
    __syncthreads();
    const int b = digit_s;
    const bool all_of_digit = digit_count[b] == remaining_s;
    remaining = remaining_s;
    __syncthreads();  // digit_s and remaining_s are read before thread 0 writes them again
    prefix |= uint64_t(b) << shift;
    mask |= uint64_t(0xff) << shift;
    if (all_of_digit) {  // every key of this prefix is among the k: they end at prefix | 1…1
      threshold = prefix | ((uint64_t(1) << shift) - 1);
      break;
    }
  }

  // 3. gather the k keys ≤ threshold, sort them, write the row
  if (t == 0) gathered = 0;
  for (int i = k + t; i < k_pow2; i += blockDim.x) chosen[i] = ~uint64_t(0);  // padding, last
  __syncthreads();
  for (int64_t j = t; j < V; j += blockDim.x) {
    const uint64_t key = descending_key(x[j], j);
    if (key <= threshold) chosen[atomicAdd(&gathered, 1u)] = key;
  }
  __syncthreads();
  for (int size = 2; size <= k_pow2; size *= 2) {  // bitonic sort, ascending
    for (int stride = size / 2; stride > 0; stride /= 2) {
      for (int i = t; i < k_pow2 / 2; i += blockDim.x) {
        const int lo = 2 * i - (i & (stride - 1)), hi = lo + stride;
        const bool ascending = (lo & size) == 0;
        const uint64_t a = chosen[lo], c = chosen[hi];
        if ((a > c) == ascending) chosen[lo] = c, chosen[hi] = a;
      }
      __syncthreads();
    }
  }
  const int64_t out = blockIdx.x * int64_t(k);
  for (int i = t; i < k; i += blockDim.x) {
    const int32_t id = int32_t(uint32_t(chosen[i]));
    ids[out + i] = id;
    logprobs[out + i] = float(double(x[id]) / tau - lse);
  }
}

}  // namespace

void topk_log_softmax(int32_t* ids, float* logprobs, const float* logits, int64_t rows,
                      int64_t V, int64_t k, double tau) {
  RETORT_CHECK(k >= 1 && k <= kMaxDeviceTopK && k <= V, "cuda::topk_log_softmax: k ", k,
               " outside [1, min(V, ", kMaxDeviceTopK, ")]");
  if (rows == 0) return;
  int k_pow2 = 2;
  while (k_pow2 < k) k_pow2 *= 2;
  topk_log_softmax_kernel<<<rows, kTopkThreads, 0, compute_stream()>>>(ids, logprobs, logits, V,
                                                                       int(k), k_pow2, tau);
  RETORT_CUDA_CHECK_LAUNCH();
}

}  // namespace retort::cuda
