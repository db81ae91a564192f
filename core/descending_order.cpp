// See descending_order.h.
#include "core/descending_order.h"

#include <algorithm>
#include <utility>

namespace retort {
namespace {

// Ascending order of distinct keys: least-significant digit first, a byte per pass, skipping
// the bytes every key shares (the id's high bytes, often the value's sign and exponent).
void radix_sort(std::vector<uint64_t>& keys) {
  std::vector<uint64_t> other(keys.size());
  for (int shift = 0; shift < 64; shift += 8) {
    size_t at[256] = {};
    for (uint64_t k : keys) ++at[(k >> shift) & 0xff];
    if (at[(keys[0] >> shift) & 0xff] == keys.size()) continue;
    size_t sum = 0;
    for (size_t& a : at) sum += std::exchange(a, sum);  // counts -> first positions
    for (uint64_t k : keys) other[at[(k >> shift) & 0xff]++] = k;
    keys.swap(other);
  }
}

}  // namespace

std::vector<int32_t> ids_by_descending_value(const float* x, int64_t V, int64_t n) {
  std::vector<uint64_t> keys(V);
  for (int64_t j = 0; j < V; ++j) keys[j] = descending_key(x[j], j);
  if (n < V) std::partial_sort(keys.begin(), keys.begin() + n, keys.end());
  else radix_sort(keys);
  std::vector<int32_t> ids(n);
  for (int64_t i = 0; i < n; ++i) ids[i] = int32_t(uint32_t(keys[i]));
  return ids;
}

}  // namespace retort
