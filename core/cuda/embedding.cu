// Embedding lookup and its gradient (math as core/cpu/embedding.cpp):
//   forward:  out[r, :] = table[ids[r], :]   (zeros when ids[r] = −1: another vocab shard;
//             a bf16 table widened exactly)
//   backward: dtable[ids[r], :] += dout[r, :] (ids −1 skipped)
// forward: one block per row (grid = rows), threads over the d columns.
// backward, deterministic without atomics, by sorting rows by id:
//   1. (id, row) pairs sorted by id with CUB's radix sort, which is stable: the rows of one id
//      stay in ascending order;
//   2. one block per sorted position (grid = rows); only the block at the start of an id's run
//      works: it owns dtable[id, :] and adds the run's dout rows in ascending row order, one
//      thread per column, acc = dtable[id, c]; acc += dout[row, c] ...  This is the CPU's
//      order exactly, so the result is bitwise equal to cpu::embedding_backward.
// Cost: sort O(rows) plus one pass over dout. Caveat: a very frequent id is summed by a single
// block (serial over its rows, parallel over the d columns).
#include <cub/device/device_radix_sort.cuh>

#include "core/cuda/common.cuh"
#include "core/cuda/kernels.h"

namespace retort::cuda {

namespace {

constexpr int kColThreads = 128;

template <class Table>
__global__ void embedding_forward_kernel(float* out, const int32_t* ids, const Table* table,
                                         int64_t d) {
  const int64_t r = blockIdx.x;
  const int32_t id = ids[r];
  float* o = out + r * d;
  if (id < 0) {
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) o[c] = 0.0f;
  } else {
    const Table* t = table + static_cast<int64_t>(id) * d;
    for (int64_t c = threadIdx.x; c < d; c += blockDim.x) o[c] = load(t + c);
  }
}

__global__ void iota_kernel(int32_t* v, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    v[i] = static_cast<int32_t>(i);
}

// sorted_ids / sorted_rows: [rows], ids ascending, rows ascending within one id.
__global__ void embedding_backward_kernel(float* dtable, const float* dout,
                                          const int32_t* sorted_ids, const int32_t* sorted_rows,
                                          int64_t rows, int64_t d) {
  const int64_t i = blockIdx.x;
  const int32_t id = sorted_ids[i];
  if (id < 0 || (i > 0 && sorted_ids[i - 1] == id)) return;  // not the start of an id's run
  int64_t end = i + 1;
  while (end < rows && sorted_ids[end] == id) ++end;
  float* dst = dtable + static_cast<int64_t>(id) * d;
  for (int64_t c = threadIdx.x; c < d; c += blockDim.x) {
    float acc = dst[c];
    for (int64_t j = i; j < end; ++j) acc += dout[static_cast<int64_t>(sorted_rows[j]) * d + c];
    dst[c] = acc;
  }
}

}  // namespace

template <class Table>
void embedding_forward(float* out, const int32_t* ids, const Table* table, int64_t rows,
                       int64_t d) {
  if (rows <= 0 || d <= 0) return;
  const auto kernel = embedding_forward_kernel<Table>;
  kernel<<<grid_x(rows), kColThreads, 0, compute_stream()>>>(out, ids, table, d);
  RETORT_CUDA_CHECK_LAUNCH();
}
template void embedding_forward(float*, const int32_t*, const float*, int64_t, int64_t);
template void embedding_forward(float*, const int32_t*, const uint16_t*, int64_t, int64_t);

void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t rows,
                        int64_t d) {
  if (rows <= 0 || d <= 0) return;
  RETORT_CHECK(rows <= 2147483647LL, "embedding_backward: ", rows, " rows exceed int32");
  cudaStream_t st = compute_stream();
  const int n = static_cast<int>(rows);
  // [sorted ids | row index | sorted rows], then CUB's temporary storage.
  ScratchBuffer pairs(sizeof(int32_t) * 3 * static_cast<size_t>(rows));
  int32_t* sorted_ids = pairs.as<int32_t>();
  int32_t* row_index = sorted_ids + rows;
  int32_t* sorted_rows = row_index + rows;
  iota_kernel<<<grid_for(rows, kBlock), kBlock, 0, st>>>(row_index, rows);
  RETORT_CUDA_CHECK_LAUNCH();
  size_t temp_bytes = 0;
  RETORT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, ids, sorted_ids,
                                                    row_index, sorted_rows, n, 0, 32, st));
  ScratchBuffer temp(temp_bytes);
  RETORT_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.as<void>(), temp_bytes, ids, sorted_ids,
                                                    row_index, sorted_rows, n, 0, 32, st));
  embedding_backward_kernel<<<grid_x(rows), kColThreads, 0, st>>>(dtable, dout, sorted_ids,
                                                                  sorted_rows, rows, d);
  RETORT_CUDA_CHECK_LAUNCH();
}

}  // namespace retort::cuda
