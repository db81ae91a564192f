// Elementwise ops, the deterministic sums of squares and the bf16 conversions.
// Elementwise kernels: 1-D grid-stride loops, kBlock threads, grid from cuda::grid_for.
// sum_squares: two passes with a partition that depends only on n (not on the GPU):
//   pass 1: G = min(ceil(n / 4096), 1024) blocks; thread g of the G·256 sums x_i² in double
//           for i = g, g + G·256, ... in order; a fixed block tree gives partial[block];
//   pass 2: one block of 1024 threads adds partial[0..G) with the same fixed tree.
// sum_squares_multi: bitwise the CPU's result (core/cpu/elementwise.cpp), which adds, per
// tensor, chunks of 4096 elements (each: 8 lane accumulators over the full groups of 8, then
// the tail of < 8 elements, then the 8 lanes, all in double) in chunk order, and then the
// tensors in order. x² of a float is exact in double, so fused multiply-adds cannot change a
// bit; only the order of additions matters, and it is the CPU's:
//   pass 1 (per launch of <= kSqTensors tensors): 8 threads per chunk, thread l owns lane l;
//           thread 0 of the 8 adds the tail and the 8 lanes in order → part[chunk];
//   pass 2 (per launch): one block per tensor adds its part[] in order (staged through
//           shared memory, added by thread 0) → tot[tensor];
//   pass 3: one thread adds tot[0..count) in order; one copy to the host, one synchronisation.
// The sequential adds cost one dependent double add per 4096 elements of the largest tensor
// (about 12k for a 50M-element embedding) — microseconds, against a synchronisation per tensor.
#include <algorithm>

#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"

namespace retort::cuda {

namespace {

__global__ void fill_kernel(float* x, int64_t n, float value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    x[i] = value;
}

__global__ void add_kernel(float* y, const float* x, int64_t n, float alpha) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] += alpha * x[i];
}

__global__ void scale_kernel(float* y, int64_t n, float alpha) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    y[i] *= alpha;
}

constexpr int kSumThreads = 256;
constexpr int kSumMaxBlocks = 1024;
constexpr int64_t kSumPerBlock = 4096;  // elements per block before the block count caps

__global__ void sum_squares_partial(double* partial, const float* x, int64_t n) {
  __shared__ double scratch[kWarp];
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  double acc = 0.0;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += stride) {
    const double v = x[i];
    acc += v * v;
  }
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = acc;
}

// One block of kSumMaxBlocks threads: thread t holds partial[t] (0 beyond nparts).
__global__ void __launch_bounds__(kSumMaxBlocks)
    sum_squares_final(double* out, const double* partial, int nparts) {
  __shared__ double scratch[kWarp];
  double v = threadIdx.x < nparts ? partial[threadIdx.x] : 0.0;
  v = block_sum(v, scratch);
  if (threadIdx.x == 0) *out = v;
}

constexpr int64_t kSqChunk = 4096;  // the CPU's chunk (core/cpu/elementwise.cpp)
constexpr int kSqLanes = 8;          // the CPU's accumulators per chunk
constexpr int kSqThreads = 256;      // pass 1: kSqThreads / kSqLanes = 32 chunks per block
constexpr int kSqTensors = 128;      // tensors per launch

// The tensors of one sum_squares_multi launch (3088 bytes).
struct SumSqLaunch {
  const float* x[kSqTensors];
  int64_t n[kSqTensors];
  int64_t first_chunk[kSqTensors + 1];  // tensor j: chunks [first_chunk[j], first_chunk[j+1])
  int count;
};
static_assert(sizeof(SumSqLaunch) + 2 * sizeof(void*) <= 4096, "kernel parameters over 4 KiB");

// Pass 1: part[c] = the CPU's sum for chunk c of this launch.
__global__ void sum_squares_chunks(double* part, SumSqLaunch a) {
  __shared__ double lanes[kSqThreads];
  const int64_t c = blockIdx.x * int64_t(kSqThreads / kSqLanes) + threadIdx.x / kSqLanes;
  const int lane = threadIdx.x % kSqLanes;
  const bool valid = c < a.first_chunk[a.count];
  const float* x = nullptr;
  int64_t groups_end = 0, end = 0;  // [begin, groups_end): full groups of 8; then the tail
  double acc = 0.0;
  if (valid) {
    const int j = owner_of(a.first_chunk, a.count, c);
    const int64_t begin = (c - a.first_chunk[j]) * kSqChunk;
    end = begin + kSqChunk < a.n[j] ? begin + kSqChunk : a.n[j];
    groups_end = begin + (end - begin) / kSqLanes * kSqLanes;
    x = a.x[j];
    for (int64_t i = begin + lane; i < groups_end; i += kSqLanes) {
      const double v = x[i];
      acc += v * v;
    }
  }
  lanes[threadIdx.x] = acc;
  __syncthreads();
  if (valid && lane == 0) {
    double s = 0.0;
    for (int64_t i = groups_end; i < end; ++i) {
      const double v = x[i];
      s += v * v;
    }
    for (int l = 0; l < kSqLanes; ++l) s += lanes[threadIdx.x + l];
    part[c] = s;
  }
}

// Pass 2: block j: tot[j] = Σ part[first_chunk[j] .. first_chunk[j+1]) in order.
__global__ void sum_squares_tensors(double* tot, const double* part, SumSqLaunch a) {
  __shared__ double tile[kSqThreads];
  const int64_t b = a.first_chunk[blockIdx.x], e = a.first_chunk[blockIdx.x + 1];
  double s = 0.0;
  for (int64_t t = b; t < e; t += kSqThreads) {  // the same trip count in every thread
    if (t + threadIdx.x < e) tile[threadIdx.x] = part[t + threadIdx.x];
    __syncthreads();
    if (threadIdx.x == 0) {
      const int m = e - t < kSqThreads ? static_cast<int>(e - t) : kSqThreads;
      for (int k = 0; k < m; ++k) s += tile[k];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) tot[blockIdx.x] = s;
}

// Pass 3: *out = Σ tot[0..count) in order (one thread).
__global__ void sum_squares_total(double* out, const double* tot, int64_t count) {
  if (threadIdx.x != 0) return;
  double s = 0.0;
  for (int64_t t = 0; t < count; ++t) s += tot[t];
  *out = s;
}

__global__ void f32_to_bf16_kernel(uint16_t* dst, const float* src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    store(&dst[i], src[i]);
}

// Four at a time (16-byte loads, 8-byte stores; element 0 in the low half, little-endian).
__global__ void f32_to_bf16_x4_kernel(uint2* dst, const float4* src, int64_t n4) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n4;
       i += int64_t(gridDim.x) * blockDim.x)
    store4(reinterpret_cast<uint16_t*>(dst + i), src[i]);
}

__global__ void bf16_to_f32_kernel(float* dst, const uint16_t* src, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    dst[i] = __uint_as_float(static_cast<uint32_t>(src[i]) << 16);
}

// y[r·y_pitch + c] = x[r·x_pitch + c], one thread per element (consecutive c coalesced).
template <class Out, class In>
__global__ void copy_rows_kernel(Out* y, int64_t y_pitch, const In* x, int64_t x_pitch,
                                 int64_t cols, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i % cols;
    store(&y[r * y_pitch + c], load(&x[r * x_pitch + c]));
  }
}

}  // namespace

template <class Out, class In>
void copy_rows(Out* y, int64_t y_pitch, const In* x, int64_t x_pitch, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  if (n <= 0) return;
  const auto kernel = copy_rows_kernel<Out, In>;
  kernel<<<grid_for(n, kBlock), kBlock, 0, compute_stream()>>>(y, y_pitch, x, x_pitch, cols, n);
  RETORT_CUDA_CHECK_LAUNCH();
}
template void copy_rows(float*, int64_t, const float*, int64_t, int64_t, int64_t);
template void copy_rows(uint16_t*, int64_t, const float*, int64_t, int64_t, int64_t);
template void copy_rows(float*, int64_t, const uint16_t*, int64_t, int64_t, int64_t);
template void copy_rows(uint16_t*, int64_t, const uint16_t*, int64_t, int64_t, int64_t);

void fill(float* x, int64_t n, float value) {
  if (n <= 0) return;
  fill_kernel<<<grid_for(n, kBlock), kBlock, 0, compute_stream()>>>(x, n, value);
  RETORT_CUDA_CHECK_LAUNCH();
}

// memmove semantics like the CPU: overlapping ranges go through a temporary.
void copy_bytes(void* dst, const void* src, int64_t nbytes) {
  if (nbytes <= 0 || dst == src) return;
  const char* d = static_cast<const char*>(dst);
  const char* s = static_cast<const char*>(src);
  const size_t nb = static_cast<size_t>(nbytes);
  if (d < s + nb && s < d + nb) {
    ScratchBuffer tmp(nb);
    RETORT_CUDA_CHECK(cudaMemcpyAsync(tmp.as<char>(), src, nb, cudaMemcpyDeviceToDevice,
                                      compute_stream()));
    RETORT_CUDA_CHECK(cudaMemcpyAsync(dst, tmp.as<char>(), nb, cudaMemcpyDeviceToDevice,
                                      compute_stream()));
    return;
  }
  RETORT_CUDA_CHECK(cudaMemcpyAsync(dst, src, nb, cudaMemcpyDeviceToDevice, compute_stream()));
}

void add_inplace(float* y, const float* x, int64_t n, float alpha) {
  if (n <= 0) return;
  add_kernel<<<grid_for(n, kBlock), kBlock, 0, compute_stream()>>>(y, x, n, alpha);
  RETORT_CUDA_CHECK_LAUNCH();
}

void scale_inplace(float* y, int64_t n, float alpha) {
  if (n <= 0) return;
  scale_kernel<<<grid_for(n, kBlock), kBlock, 0, compute_stream()>>>(y, n, alpha);
  RETORT_CUDA_CHECK_LAUNCH();
}

// Synchronises the compute stream: the value is returned to the host.
namespace {
// One double from the device, after the compute stream's queued work (synchronises).
double read_back(const double* d) {
  double v = 0.0;
  RETORT_CUDA_CHECK(cudaMemcpyAsync(&v, d, sizeof v, cudaMemcpyDeviceToHost, compute_stream()));
  RETORT_CUDA_CHECK(cudaStreamSynchronize(compute_stream()));
  return v;
}
}  // namespace

double sum_squares(const float* x, int64_t n) {
  if (n <= 0) return 0.0;
  const int nparts =
      static_cast<int>(std::min<int64_t>((n + kSumPerBlock - 1) / kSumPerBlock, kSumMaxBlocks));
  ScratchBuffer buf(sizeof(double) * (nparts + 1));
  double* partial = buf.as<double>();
  double* total = partial + nparts;
  sum_squares_partial<<<nparts, kSumThreads, 0, compute_stream()>>>(partial, x, n);
  RETORT_CUDA_CHECK_LAUNCH();
  sum_squares_final<<<1, kSumMaxBlocks, 0, compute_stream()>>>(total, partial, nparts);
  RETORT_CUDA_CHECK_LAUNCH();
  return read_back(total);
}

// Synchronises the compute stream once: the value is returned to the host.
double sum_squares_multi(const float* const* xs, const int64_t* ns, int64_t count) {
  if (count <= 0) return 0.0;
  int64_t chunks = 0;
  for (int64_t t = 0; t < count; ++t) chunks += (std::max<int64_t>(ns[t], 0) + kSqChunk - 1) / kSqChunk;
  ScratchBuffer buf(sizeof(double) * (chunks + count + 1));
  double* part = buf.as<double>();
  double* tot = part + chunks;
  double* total = tot + count;
  int64_t chunk_base = 0;
  for (int64_t t0 = 0; t0 < count; t0 += kSqTensors) {
    SumSqLaunch a{};
    a.count = static_cast<int>(std::min<int64_t>(kSqTensors, count - t0));
    int64_t c = 0;
    for (int j = 0; j < a.count; ++j) {
      a.x[j] = xs[t0 + j];
      a.n[j] = std::max<int64_t>(ns[t0 + j], 0);
      a.first_chunk[j] = c;
      c += (a.n[j] + kSqChunk - 1) / kSqChunk;
    }
    a.first_chunk[a.count] = c;
    if (c > 0) {
      const int64_t per_block = kSqThreads / kSqLanes;
      sum_squares_chunks<<<grid_x((c + per_block - 1) / per_block), kSqThreads, 0,
                           compute_stream()>>>(part + chunk_base, a);
      RETORT_CUDA_CHECK_LAUNCH();
    }
    sum_squares_tensors<<<grid_x(a.count), kSqThreads, 0, compute_stream()>>>(
        tot + t0, part + chunk_base, a);
    RETORT_CUDA_CHECK_LAUNCH();
    chunk_base += c;
  }
  sum_squares_total<<<1, kWarp, 0, compute_stream()>>>(total, tot, count);
  RETORT_CUDA_CHECK_LAUNCH();
  return read_back(total);
}

void f32_to_bf16(uint16_t* dst, const float* src, int64_t n) {
  if (n <= 0) return;
  int64_t done = 0;  // the aligned bulk four at a time, the rest (or an unaligned view) one by one
  if (reinterpret_cast<uintptr_t>(src) % 16 == 0 && reinterpret_cast<uintptr_t>(dst) % 8 == 0 && n >= 4) {
    const int64_t n4 = n / 4;
    f32_to_bf16_x4_kernel<<<grid_for(n4, kBlock), kBlock, 0, compute_stream()>>>(
        reinterpret_cast<uint2*>(dst), reinterpret_cast<const float4*>(src), n4);
    RETORT_CUDA_CHECK_LAUNCH();
    done = 4 * n4;
  }
  if (done == n) return;
  f32_to_bf16_kernel<<<grid_for(n - done, kBlock), kBlock, 0, compute_stream()>>>(
      dst + done, src + done, n - done);
  RETORT_CUDA_CHECK_LAUNCH();
}

void bf16_to_f32(float* dst, const uint16_t* src, int64_t n) {
  if (n <= 0) return;
  bf16_to_f32_kernel<<<grid_for(n, kBlock), kBlock, 0, compute_stream()>>>(dst, src, n);
  RETORT_CUDA_CHECK_LAUNCH();
}

}  // namespace retort::cuda
