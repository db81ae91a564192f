// Generation's per-row work on the device (core/ops.h: topk_log_softmax, sample_tokens; the CPU
// kernels in core/cpu/generation.cpp are the reference), one block of 256 threads per row of
// logits x [V], so only [rows, k] results and [rows] tokens reach the host.
//
// select_sorted: the k smallest keys descending_key(x_j, j) (distinct; ascending = descending
// value, ties by the smaller id), sorted. Radix select a byte at a time from the top: histogram
// the keys sharing the prefix chosen so far, take the byte where the k-th smallest falls; as
// soon as every key of that byte is needed the threshold T is known and the keys ≤ T are
// exactly the k (usually 2–4 passes: the top bytes are the value's sign, exponent and
// mantissa). Then the k are gathered (any order) and bitonic-sorted in shared memory.
// The histogram counts with integer atomics, one per warp and digit (exact), and the gather's
// order is undone by the sort: every output is bitwise reproducible.
//
// topk_log_softmax: lse = m + log Σ exp(x/τ − m) in double (fixed block tree), the selected
// ids, logprob = float(x/τ − lse).
// sample_tokens: core/sampling.h's draw, the same double arithmetic in the same order where
// that order is the sorted candidates (greedy; top_k; top_p over ≤ 1024 tokens) — so the token
// differs from the CPU's only when u·total lies within exp's last bit of a boundary; plain
// sampling sums each thread's contiguous chunk and then the chunks (the CPU: one running sum),
// and a nucleus over the whole vocabulary sums its total in the block tree. A nucleus that
// needs more than the 1024 largest tokens is left to the host (token −1 from the kernel), as
// is a top-k with k above 1024 (the CPU kernel on a host copy of the logits).
#include <cmath>
#include <vector>

#include "core/cpu/kernels.h"
#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"
#include "core/sampling.h"

namespace retort::cuda {

namespace {

constexpr int kRowThreads = 256;

// core/descending_order.h's key: the value's bits made order-preserving and inverted, then the id.
__device__ __forceinline__ uint64_t descending_key(float x, int64_t id) {
  const uint32_t u = __float_as_uint(x == 0.0f ? 0.0f : x);
  const uint32_t ascending = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (uint64_t(~ascending) << 32) | uint32_t(id);
}
__device__ __forceinline__ int32_t key_id(uint64_t key) { return int32_t(uint32_t(key)); }

struct SelectShared {
  unsigned hist[256];
  unsigned remaining, gathered;
  int digit;
};

// chosen[0, k) = the k smallest keys of x, ascending; chosen[k, k_pow2) = ~0 (k_pow2: the
// power of two ≥ k, ≤ kMaxDeviceTopK). Called by the whole block.
__device__ void select_sorted(const float* x, int64_t V, int k, int k_pow2, uint64_t* chosen,
                              SelectShared& sh) {
  const int t = threadIdx.x, warp = t / kWarp, lane = t % kWarp;
  uint64_t prefix = 0, mask = 0, threshold = 0;
  unsigned remaining = unsigned(k);
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int b = t; b < 256; b += blockDim.x) sh.hist[b] = 0;
    __syncthreads();
    // Whole warps (the match needs all 32 lanes): the lanes of one digit add their count at once
    // (logits share a few sign/exponent bytes, so single adds would queue on one address).
    for (int64_t base = int64_t(warp) * kWarp; base < V; base += blockDim.x) {
      const int64_t j = base + lane;
      const uint64_t key = j < V ? descending_key(x[j], j) : 0;
      const bool counted = j < V && (key & mask) == prefix;
      const unsigned digit = counted ? unsigned(key >> shift) & 0xffu : 256u;
      const unsigned same = __match_any_sync(0xffffffffu, digit);
      if (counted && lane == __ffs(same) - 1) atomicAdd(&sh.hist[digit], unsigned(__popc(same)));
    }
    __syncthreads();
    if (t == 0) {  // the byte holding the remaining-th smallest key of this prefix
      int b = 0;
      while (sh.hist[b] < remaining) remaining -= sh.hist[b++];
      sh.digit = b;
      sh.remaining = remaining;
    }
    __syncthreads();
    const int b = sh.digit;
    const bool all_of_digit = sh.hist[b] == sh.remaining;
    remaining = sh.remaining;
    __syncthreads();  // read before thread 0 writes them again
    prefix |= uint64_t(b) << shift;
    mask |= uint64_t(0xff) << shift;
    if (all_of_digit) {  // every key of this prefix is among the k: they end at prefix | 1…1
      threshold = prefix | ((uint64_t(1) << shift) - 1);
      break;
    }
  }
  if (t == 0) sh.gathered = 0;
  for (int i = k + t; i < k_pow2; i += blockDim.x) chosen[i] = ~uint64_t(0);  // padding, last
  __syncthreads();
  for (int64_t j = t; j < V; j += blockDim.x) {
    const uint64_t key = descending_key(x[j], j);
    if (key <= threshold) chosen[atomicAdd(&sh.gathered, 1u)] = key;
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
}

int pow2_at_least(int64_t k) {
  int p = 2;
  while (p < k) p *= 2;
  return p;
}

__global__ void topk_log_softmax_kernel(int32_t* ids, float* logprobs, const float* logits,
                                        int64_t V, int k, int k_pow2, double tau) {
  __shared__ float max_scratch[kWarp];
  __shared__ double sum_scratch[kWarp];
  __shared__ SelectShared sh;
  __shared__ uint64_t chosen[kMaxDeviceTopK];
  const float* x = logits + blockIdx.x * V;
  const int t = threadIdx.x;
  float mx = -INFINITY;
  for (int64_t j = t; j < V; j += blockDim.x) mx = x[j] > mx ? x[j] : mx;
  const double m = double(block_max(mx, max_scratch)) / tau;
  double s = 0;
  for (int64_t j = t; j < V; j += blockDim.x) s += exp(double(x[j]) / tau - m);
  const double lse = m + log(block_sum(s, sum_scratch));
  select_sorted(x, V, k, k_pow2, chosen, sh);
  const int64_t out = blockIdx.x * int64_t(k);
  for (int i = t; i < k; i += blockDim.x) {
    const int32_t id = key_id(chosen[i]);
    ids[out + i] = id;
    logprobs[out + i] = float(double(x[id]) / tau - lse);
  }
}

// One token per row. k = 0: plain sampling over ids in order; else the k largest are the
// candidates: top_k's k (whole_total false: the total is theirs, summed in order), or a
// nucleus's min(V, 1024) (whole_total: Σ over all V in the block tree, unless k = V).
__global__ void sample_tokens_kernel(int32_t* tokens, const float* logits, int64_t V,
                                     const double* u, double temperature, int k, int k_pow2,
                                     double top_p, bool whole_total) {
  __shared__ float max_scratch[kWarp];
  __shared__ double sum_scratch[kWarp];
  __shared__ unsigned long long min_scratch[kWarp];
  __shared__ SelectShared sh;
  __shared__ uint64_t chosen[kMaxDeviceTopK];
  __shared__ double w[kMaxDeviceTopK > kRowThreads ? kMaxDeviceTopK : kRowThreads];
  const float* x = logits + blockIdx.x * V;
  const int t = threadIdx.x;
  if (temperature == 0) {  // greedy: the first largest
    unsigned long long best = ~0ull;
    for (int64_t j = t; j < V; j += blockDim.x) {
      const unsigned long long key = descending_key(x[j], j);
      best = key < best ? key : best;
    }
    best = block_reduce(best, MinOp{}, ~0ull, min_scratch);
    if (t == 0) tokens[blockIdx.x] = key_id(best);
    return;
  }
  const double target_u = u[blockIdx.x];
  if (k == 0) {  // plain: thread t's contiguous chunk, then the chunks in order
    float mx = -INFINITY;
    for (int64_t j = t; j < V; j += blockDim.x) mx = x[j] > mx ? x[j] : mx;
    const double m = double(block_max(mx, max_scratch));
    const int64_t chunk = (V + blockDim.x - 1) / blockDim.x;
    const int64_t begin = t * chunk < V ? t * chunk : V;
    const int64_t end = begin + chunk < V ? begin + chunk : V;
    double part = 0;
    for (int64_t j = begin; j < end; ++j) part += exp((double(x[j]) - m) / temperature);
    w[t] = part;
    __syncthreads();
    if (t == 0) {
      double total = 0;
      for (int c = 0; c < blockDim.x; ++c) total += w[c];
      const double target = target_u * total;
      int32_t token = int32_t(V - 1);  // u·total rounded up to the total
      double start = 0;
      for (int c = 0; c < int(blockDim.x); ++c) {
        const double stop = start + w[c];
        if (target < stop) {  // in chunk c: the same sums again, so it is found there
          double run = 0;
          for (int64_t j = c * chunk; j < V; ++j) {
            run += exp((double(x[j]) - m) / temperature);
            if (target < start + run) {
              token = int32_t(j);
              break;
            }
          }
          break;
        }
        start = stop;
      }
      tokens[blockIdx.x] = token;
    }
    return;
  }
  select_sorted(x, V, k, k_pow2, chosen, sh);
  const double m = double(x[key_id(chosen[0])]);
  for (int i = t; i < k; i += blockDim.x)
    w[i] = exp((double(x[key_id(chosen[i])]) - m) / temperature);
  double whole = 0;
  if (whole_total) {
    double s = 0;
    for (int64_t j = t; j < V; j += blockDim.x) s += exp((double(x[j]) - m) / temperature);
    whole = block_sum(s, sum_scratch);
  }
  __syncthreads();
  if (t != 0) return;
  double total = 0;
  if (whole_total) total = whole;
  else for (int i = 0; i < k; ++i) total += w[i];
  int n = k;
  if (top_p < 1) {  // the smallest prefix whose probability reaches top_p
    double run = 0;
    n = 0;
    while (n < k) {
      run += w[n++];
      if (run >= top_p * total) break;
    }
    if (run < top_p * total) {  // a nucleus beyond the candidates: the host draws this row
      tokens[blockIdx.x] = -1;
      return;
    }
    total = run;
  }
  const double target = target_u * total;
  double run = 0;
  for (int i = 0; i < n; ++i) {
    run += w[i];
    if (target < run) {
      tokens[blockIdx.x] = key_id(chosen[i]);
      return;
    }
  }
  tokens[blockIdx.x] = key_id(chosen[n - 1]);  // u·total rounded up to the total
}

}  // namespace

void topk_log_softmax(int32_t* ids, float* logprobs, const float* logits, int64_t rows,
                      int64_t V, int64_t k, double tau) {
  if (rows == 0) return;
  cudaStream_t s = compute_stream();
  if (k > kMaxDeviceTopK) {  // beyond the sort's shared memory: the CPU kernel on a host copy
    std::vector<float> x(rows * V), lp(rows * k);
    std::vector<int32_t> id(rows * k);
    RETORT_CUDA_CHECK(cudaMemcpyAsync(x.data(), logits, x.size() * sizeof(float),
                                      cudaMemcpyDeviceToHost, s));
    RETORT_CUDA_CHECK(cudaStreamSynchronize(s));
    cpu::topk_log_softmax(id.data(), lp.data(), x.data(), rows, V, k, tau);
    RETORT_CUDA_CHECK(cudaMemcpyAsync(ids, id.data(), id.size() * sizeof(int32_t),
                                      cudaMemcpyHostToDevice, s));
    RETORT_CUDA_CHECK(cudaMemcpyAsync(logprobs, lp.data(), lp.size() * sizeof(float),
                                      cudaMemcpyHostToDevice, s));
    RETORT_CUDA_CHECK(cudaStreamSynchronize(s));  // the host buffers go out of scope
    return;
  }
  topk_log_softmax_kernel<<<rows, kRowThreads, 0, s>>>(
      ids, logprobs, logits, V, int(k), pow2_at_least(k), tau);
  RETORT_CUDA_CHECK_LAUNCH();
}

void sample_tokens(int32_t* tokens, const float* logits, int64_t rows, int64_t V, const double* u,
                   const SamplingParams& p) {
  if (rows == 0) return;
  const int64_t keep = p.top_k > 0 && p.top_k < V ? p.top_k : V;
  std::vector<int32_t> host(rows, -1);  // -1: drawn on the host
  cudaStream_t s = compute_stream();
  if (p.temperature == 0 || keep <= kMaxDeviceTopK || keep == V) {
    int k = 0;  // plain sampling
    bool whole_total = false;
    if (p.temperature > 0 && (keep < V || p.top_p < 1)) {
      k = int(std::min<int64_t>(keep, kMaxDeviceTopK));
      whole_total = keep == V && k < V;
    }
    ScratchBuffer d_u(rows * sizeof(double)), d_tokens(rows * sizeof(int32_t));
    RETORT_CUDA_CHECK(cudaMemcpyAsync(d_u.as<double>(), u, rows * sizeof(double),
                                      cudaMemcpyHostToDevice, s));
    sample_tokens_kernel<<<rows, kRowThreads, 0, s>>>(d_tokens.as<int32_t>(), logits, V,
                                                       d_u.as<double>(), p.temperature, k,
                                                       pow2_at_least(k), p.top_p, whole_total);
    RETORT_CUDA_CHECK_LAUNCH();
    RETORT_CUDA_CHECK(cudaMemcpyAsync(host.data(), d_tokens.as<int32_t>(), rows * sizeof(int32_t),
                                      cudaMemcpyDeviceToHost, s));
    RETORT_CUDA_CHECK(cudaStreamSynchronize(s));
  }
  std::vector<float> row;
  for (int64_t r = 0; r < rows; ++r) {
    if (host[r] < 0) {  // top_k above the device's limit, or a nucleus beyond its candidates
      row.resize(V);
      RETORT_CUDA_CHECK(cudaMemcpyAsync(row.data(), logits + r * V, V * sizeof(float),
                                        cudaMemcpyDeviceToHost, s));
      RETORT_CUDA_CHECK(cudaStreamSynchronize(s));
      host[r] = sample_token(row.data(), V, p, u[r]);
    }
    tokens[r] = host[r];
  }
}

}  // namespace retort::cuda
