// Generation's per-row work on the device (core/ops.h: topk_log_softmax, sample_tokens; the CPU
// kernels in core/cpu/generation.cpp are the reference), one block of 256 threads per row of
// logits x [V]; the results stay on the device (a generator fetches them when it needs them).
// Every output is bitwise reproducible (integer atomics only; fixed reduction trees).
//
// Keys: descending_key(x_j, j), distinct; ascending = descending value, ties by the smaller id.
// Radix selection walks them a byte at a time from the top: histogram the keys sharing the
// prefix chosen so far, take the byte where the wanted key falls, and stop as soon as that byte
// holds exactly what is wanted (usually 2–4 passes: the top bytes are the value's sign, exponent
// and mantissa). The histograms count with shared-memory integer atomics.
//
// topk_log_softmax: lse = m + log Σ exp(x/τ − m) in double (fixed block tree); the k smallest
// keys selected by count (the threshold T with exactly k keys ≤ T), gathered and bitonic-sorted
// (in shared memory up to kSharedSortTopK, else in a global scratch row);
// logprob = float(x/τ − lse).
//
// sample_tokens: core/sampling.h's draw as a selection by probability mass. The kept weights
// w_j = exp((x_j − m)/temperature) (0 outside a top_k) become fixed-point integers, the largest
// 2^(62 − bit width of V) (2^46 at V = 32768; Σ w < 2^62), so every sum is exact and
// order-free. With C(key) = Σ of w over the keys ≤ key (descending-value order):
//   nucleus (top_p < 1): the smallest key with C ≥ ⌈top_p · total⌉; total becomes its C;
//   token: the smallest key with C > ⌊u · total⌋, i.e. the inverse CDF.
// Both are one radix selection whose histogram sums mass as well as counts. Plain sampling walks
// the ids in order, as the CPU does: each thread's chunk of ids summed, then the chunks. The
// token is the CPU's unless u·total lies within the weights' rounding (V half-units at most) of
// a boundary, or the token's weight is below half a unit (rounded to 0, never drawn; the CPU
// draws it with a probability below 2^-47 at V = 32768).
#include <cmath>

#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"
#include "core/sampling.h"

namespace retort::cuda {

namespace {

constexpr int kRowThreads = 256;  // = the radix's 256 digits (SelectShared's arrays double as
                                  // per-thread scratch)
using u64 = unsigned long long;  // atomicAdd's 64-bit type

// core/descending_order.h's key: the value's bits made order-preserving and inverted, then the id.
__device__ __forceinline__ u64 descending_key(float x, int64_t id) {
  const uint32_t u = __float_as_uint(x == 0.0f ? 0.0f : x);
  const uint32_t ascending = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (u64(~ascending) << 32) | uint32_t(id);
}
__device__ __forceinline__ int32_t key_id(u64 key) { return int32_t(uint32_t(key)); }

struct SelectShared {
  unsigned count[256];
  u64 mass[256];
  u64 below;  // mass of the keys before the chosen digit
  unsigned remaining, gathered;
  int digit;
  u64 key;
};

// The threshold T with exactly k keys ≤ T (1 ≤ k ≤ V). Called by the whole block.
__device__ u64 kth_smallest_key(const float* x, int64_t V, int k, SelectShared& sh) {
  const int t = threadIdx.x, warp = t / kWarp, lane = t % kWarp;
  u64 prefix = 0, mask = 0;
  unsigned remaining = unsigned(k);
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int b = t; b < 256; b += blockDim.x) sh.count[b] = 0;
    __syncthreads();
    // Whole warps (the match needs all 32 lanes): the lanes of one digit add their count at once
    // (logits share a few sign/exponent bytes, so single adds would queue on one address).
    for (int64_t base = int64_t(warp) * kWarp; base < V; base += blockDim.x) {
      const int64_t j = base + lane;
      const u64 key = j < V ? descending_key(x[j], j) : 0;
      const bool counted = j < V && (key & mask) == prefix;
      const unsigned digit = counted ? unsigned(key >> shift) & 0xffu : 256u;
      const unsigned same = __match_any_sync(0xffffffffu, digit);
      if (counted && lane == __ffs(same) - 1) atomicAdd(&sh.count[digit], unsigned(__popc(same)));
    }
    __syncthreads();
    if (t == 0) {  // the byte holding the remaining-th smallest key of this prefix
      int b = 0;
      while (sh.count[b] < remaining) remaining -= sh.count[b++];
      sh.digit = b;
      sh.remaining = remaining;
    }
    __syncthreads();
    const int b = sh.digit;
    const bool all_of_digit = sh.count[b] == sh.remaining;
    remaining = sh.remaining;
    __syncthreads();  // read before thread 0 writes them again
    prefix |= u64(b) << shift;
    mask |= u64(0xff) << shift;
    if (all_of_digit) return prefix | ((u64(1) << shift) - 1);  // every key of it is wanted
  }
  return prefix;  // not reached: the last byte makes the keys distinct
}

// chosen[0, k) = the k smallest keys of x, ascending; chosen[k, k_pow2) = ~0 (k_pow2: the
// power of two ≥ k). chosen: shared or global memory. Called by the whole block.
__device__ void select_sorted(const float* x, int64_t V, int k, int k_pow2, u64* chosen,
                              SelectShared& sh) {
  const int t = threadIdx.x;
  const u64 threshold = kth_smallest_key(x, V, k, sh);
  if (t == 0) sh.gathered = 0;
  for (int i = k + t; i < k_pow2; i += blockDim.x) chosen[i] = ~u64(0);  // padding, last
  __syncthreads();
  for (int64_t j = t; j < V; j += blockDim.x) {
    const u64 key = descending_key(x[j], j);
    if (key <= threshold) chosen[atomicAdd(&sh.gathered, 1u)] = key;
  }
  __syncthreads();
  for (int size = 2; size <= k_pow2; size *= 2) {  // bitonic sort, ascending
    for (int stride = size / 2; stride > 0; stride /= 2) {
      for (int i = t; i < k_pow2 / 2; i += blockDim.x) {
        const int lo = 2 * i - (i & (stride - 1)), hi = lo + stride;
        const bool ascending = (lo & size) == 0;
        const u64 a = chosen[lo], c = chosen[hi];
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
                                        int64_t V, int k, int k_pow2, double tau,
                                        u64* global_chosen) {
  __shared__ float max_scratch[kWarp];
  __shared__ double sum_scratch[kWarp];
  __shared__ SelectShared sh;
  __shared__ u64 shared_chosen[kSharedSortTopK];
  u64* chosen =
      k_pow2 <= kSharedSortTopK ? shared_chosen : global_chosen + blockIdx.x * int64_t(k_pow2);
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

struct Pick {
  u64 key;
  u64 through;  // C(key): the mass of the keys up to and including it
};

// The smallest key whose C reaches need (1 ≤ need ≤ Σ w). w: the row's fixed-point weights.
// Called by the whole block.
__device__ Pick select_by_mass(const float* x, const u64* w, int64_t V, u64 need,
                               SelectShared& sh) {
  const int t = threadIdx.x;
  u64 prefix = 0, mask = 0, below = 0;
  for (int shift = 56;; shift -= 8) {
    for (int b = t; b < 256; b += blockDim.x) sh.count[b] = 0, sh.mass[b] = 0;
    __syncthreads();
    // Each thread adds a run of one digit at once (the top bytes are shared by most keys).
    int digit = -1;
    unsigned count = 0;
    u64 mass = 0;
    for (int64_t j = t; j < V; j += blockDim.x) {
      const u64 key = descending_key(x[j], j);
      if ((key & mask) != prefix) continue;
      const int d = int(key >> shift) & 0xff;
      if (d != digit && count > 0) {
        atomicAdd(&sh.count[digit], count);
        atomicAdd(&sh.mass[digit], mass);
        count = 0, mass = 0;
      }
      digit = d;
      ++count;
      mass += w[j];
    }
    if (count > 0) {
      atomicAdd(&sh.count[digit], count);
      atomicAdd(&sh.mass[digit], mass);
    }
    __syncthreads();
    if (t == 0) {  // the byte where C first reaches need (mass > 0 there: below < need)
      int b = 0;
      while (b < 255 && below + sh.mass[b] < need) below += sh.mass[b++];
      sh.digit = b;
      sh.below = below;
    }
    __syncthreads();
    const int b = sh.digit;
    below = sh.below;
    const bool alone = sh.count[b] == 1;
    const u64 through = below + sh.mass[b];
    __syncthreads();  // read before thread 0 writes them again
    prefix |= u64(b) << shift;
    mask |= u64(0xff) << shift;
    if (shift == 0) return {prefix, through};
    if (alone) {  // the one key with this prefix
      for (int64_t j = t; j < V; j += blockDim.x) {
        const u64 key = descending_key(x[j], j);
        if ((key & mask) == prefix) sh.key = key;
      }
      __syncthreads();
      const u64 key = sh.key;
      __syncthreads();
      return {key, through};
    }
  }
}

// Plain sampling's draw, ids in order: the first id whose running mass reaches need (1 ≤ need ≤
// Σ w). Each thread sums its contiguous chunk; thread 0 walks the chunk sums, then the chosen
// chunk, and returns the id (the other threads −1). sums: kRowThreads values in shared memory.
__device__ int32_t first_id_by_mass(const u64* w, int64_t V, u64 need, u64* sums) {
  const int t = threadIdx.x;
  const int64_t chunk = (V + blockDim.x - 1) / blockDim.x;
  const int64_t begin = t * chunk < V ? t * chunk : V, end = begin + chunk < V ? begin + chunk : V;
  u64 part = 0;
  for (int64_t j = begin; j < end; ++j) part += w[j];
  sums[t] = part;
  __syncthreads();
  if (t != 0) return -1;
  u64 below = 0;
  int c = 0;
  while (below + sums[c] < need) below += sums[c++];
  for (int64_t j = c * chunk;; ++j) {
    below += w[j];
    if (below >= need) return int32_t(j);
  }
}

// One token per row. keep: top_k's count (V: all). weights: [rows, V] scratch.
__global__ void sample_tokens_kernel(int32_t* tokens, const float* logits, int64_t V,
                                     RowDraws draws, double temperature, int64_t keep,
                                     double top_p, u64* weights) {
  __shared__ u64 u64_scratch[kWarp];
  __shared__ SelectShared sh;
  const float* x = logits + blockIdx.x * V;
  const int t = threadIdx.x;
  u64 best = ~0ull;  // greedy, and the draw of a row without finite weights: the first largest
  for (int64_t j = t; j < V; j += blockDim.x) {
    const u64 key = descending_key(x[j], j);
    best = key < best ? key : best;
  }
  best = block_reduce(best, MinOp{}, ~0ull, u64_scratch);
  if (temperature == 0) {
    if (t == 0) tokens[blockIdx.x] = key_id(best);
    return;
  }
  const bool by_value = keep < V || top_p < 1;
  const u64 last_kept = keep < V ? kth_smallest_key(x, V, int(keep), sh) : ~0ull;
  const double m = double(x[key_id(best)]);
  // One = 2^(62 − bit width of V): Σ w < 2^62 for any V.
  int bits = 62;
  for (int64_t v = V; v > 0; v >>= 1) --bits;
  const double one = ldexp(1.0, bits);
  u64* w = weights + blockIdx.x * V;
  u64 total = 0;
  for (int64_t j = t; j < V; j += blockDim.x) {
    const double e = exp((double(x[j]) - m) / temperature);
    w[j] = descending_key(x[j], j) <= last_kept && e > 0 ? u64(e * one + 0.5) : 0;  // NaN: 0
    total += w[j];
  }
  total = block_sum(total, u64_scratch);  // also the barrier that publishes w to the block
  if (total == 0) {  // no finite weight (an infinite or NaN maximum)
    if (t == 0) tokens[blockIdx.x] = key_id(best);
    return;
  }
  if (top_p < 1) {  // the nucleus: the smallest prefix whose mass reaches top_p · total
    const double need = ceil(top_p * double(total));
    total = select_by_mass(x, w, V, need < 1 ? 1 : need < double(total) ? u64(need) : total,
                           sh).through;
  }
  const double below = floor(draws.u(blockIdx.x) * double(total));  // the token: C > u · total
  const u64 need = below + 1 < double(total) ? u64(below) + 1 : total;
  if (!by_value) {
    const int32_t id = first_id_by_mass(w, V, need, sh.mass);
    if (t == 0) tokens[blockIdx.x] = id;
    return;
  }
  const u64 key = select_by_mass(x, w, V, need, sh).key;
  if (t == 0) tokens[blockIdx.x] = key_id(key);
}

}  // namespace

void topk_log_softmax(int32_t* ids, float* logprobs, const float* logits, int64_t rows,
                      int64_t V, int64_t k, double tau) {
  if (rows == 0) return;
  const int k_pow2 = pow2_at_least(k);
  ScratchBuffer chosen(k_pow2 <= kSharedSortTopK ? 0 : rows * k_pow2 * sizeof(u64));
  topk_log_softmax_kernel<<<rows, kRowThreads, 0, compute_stream()>>>(
      ids, logprobs, logits, V, int(k), k_pow2, tau, chosen.as<u64>());
  RETORT_CUDA_CHECK_LAUNCH();
}

void sample_tokens(int32_t* tokens, const float* logits, int64_t rows, int64_t V,
                   const RowDraws& draws, const SamplingParams& p) {
  if (rows == 0) return;
  const int64_t keep = p.top_k > 0 && p.top_k < V ? p.top_k : V;
  ScratchBuffer weights(p.temperature > 0 ? rows * V * sizeof(u64) : 0);
  sample_tokens_kernel<<<rows, kRowThreads, 0, compute_stream()>>>(
      tokens, logits, V, draws, p.temperature, keep, p.top_p, weights.as<u64>());
  RETORT_CUDA_CHECK_LAUNCH();
}

}  // namespace retort::cuda
