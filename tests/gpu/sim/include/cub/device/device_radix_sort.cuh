// Host stand-in for CUB's stable radix sort of (key, value) pairs (simulator build), queued on
// the stream like the real one.
#pragma once
#include <algorithm>
#include <numeric>
#include <vector>
#include <cuda_runtime.h>
namespace cub {
struct DeviceRadixSort {
  template <class K, class V>
  static cudaError_t SortPairs(void* temp, size_t& bytes, const K* kin, K* kout, const V* vin, V* vout,
                               int n, int, int, cudaStream_t stream) {
    if (!temp) { bytes = 16; return 0; }
    sim::enqueue(stream, [=] {
      std::vector<int> idx(n);
      std::iota(idx.begin(), idx.end(), 0);
      std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return kin[a] < kin[b]; });
      for (int i = 0; i < n; ++i) kout[i] = kin[idx[i]], vout[i] = vin[idx[i]];
    });
    return 0;
  }
};
}  // namespace cub
