// Embedding lookup and its gradient.
//   forward:  out[r, :] = table[ids[r], :]
//   backward: dtable[ids[r], :] += dout[r, :]
// An id of -1 (the token lives on another rank's vocabulary shard) reads zeros / is skipped.
// A bf16 table (fsdp's bf16 parameter gather) is widened row by row: exact.
// Backward is deterministic and independent of the thread count: threads own blocks of
// feature columns and every thread walks the rows in ascending order.
#include "core/cpu/bf16.h"
#include "core/cpu/kernels.h"

namespace retort::cpu {

template <class Table>
void embedding_forward(float* out, const int32_t* ids, const Table* table, int64_t rows,
                       int64_t d) {
#pragma omp parallel for schedule(static) if (rows * d >= 16384)
  for (int64_t r = 0; r < rows; ++r) {
    const Table* row = ids[r] < 0 ? nullptr : table + static_cast<int64_t>(ids[r]) * d;
    for (int64_t c = 0; c < d; ++c) out[r * d + c] = row ? load(row + c) : 0.0f;
  }
}
template void embedding_forward(float*, const int32_t*, const float*, int64_t, int64_t);
template void embedding_forward(float*, const int32_t*, const uint16_t*, int64_t, int64_t);

void embedding_backward(float* dtable, const float* dout, const int32_t* ids, int64_t rows,
                        int64_t d) {
  constexpr int64_t kCols = 16;  // one 64-byte cache line per column block
  const int64_t nblk = (d + kCols - 1) / kCols;
#pragma omp parallel for schedule(static) if (rows * d >= 16384)
  for (int64_t blk = 0; blk < nblk; ++blk) {
    const int64_t c0 = blk * kCols, c1 = c0 + kCols < d ? c0 + kCols : d;
    for (int64_t r = 0; r < rows; ++r) {
      if (ids[r] < 0) continue;
      float* dst = dtable + static_cast<int64_t>(ids[r]) * d;
      const float* src = dout + r * d;
      for (int64_t c = c0; c < c1; ++c) dst[c] += src[c];
    }
  }
}

}  // namespace retort::cpu
