// Ids of a row of values by descending value, ties by the smaller id: the order of a corpus's
// top-k (ops::topk_log_softmax) and of the sampler's top-k / top-p (models/sampling.cpp).
// -0 ties with +0; NaNs have a fixed place (their bit pattern's) but no meaning.
#pragma once
#include <bit>
#include <cstdint>
#include <vector>

namespace retort {

// A key that sorts ascending as a plain integer in that order: the value's bits made
// order-preserving and inverted (high 32 bits), then the id (low 32 bits). Distinct per id.
inline uint64_t descending_key(float value, int64_t id) {
  const uint32_t u = std::bit_cast<uint32_t>(value == 0 ? 0.0f : value);
  const uint32_t ascending = u & 0x80000000u ? ~u : u | 0x80000000u;
  return uint64_t(~ascending) << 32 | uint32_t(id);
}

// The first n ids of x[0, V) in that order (n = V: all of them).
std::vector<int32_t> ids_by_descending_value(const float* x, int64_t V, int64_t n);

}  // namespace retort
