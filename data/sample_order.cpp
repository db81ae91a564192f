// Feistel permutation per epoch (see sample_order.h).
#include "data/sample_order.h"

#include "core/check.h"
#include "core/random.h"

namespace retort {
namespace {

constexpr int kRounds = 6;
constexpr uint64_t kOrderStream = 0x6c6f61646572ull;  // "loader" (kept: same order as before)

// Balanced Feistel permutation of [0, 2^(2h)) keyed by `key`.
uint64_t feistel(uint64_t x, int h, uint64_t key) {
  const uint64_t mask = (uint64_t(1) << h) - 1;
  uint64_t l = x >> h, r = x & mask;
  for (int round = 0; round < kRounds; ++round) {
    uint64_t f = rng::hash(key, uint64_t(round), r) & mask;
    uint64_t nl = r;
    r = l ^ f;
    l = nl;
  }
  return (l << h) | r;
}

}  // namespace

SampleOrder::SampleOrder(int64_t n, uint64_t seed) : n_(n), seed_(seed) {
  RETORT_CHECK(n >= 1, "SampleOrder needs at least one item, got ", n);
  int bits = 1;
  while ((int64_t(1) << bits) < n_) ++bits;
  half_bits_ = (bits + 1) / 2;
}

int64_t SampleOrder::item_of(int64_t index) const {
  RETORT_CHECK(index >= 0, "negative sample index ", index);
  const uint64_t epoch = uint64_t(index / n_);
  uint64_t x = uint64_t(index % n_);
  const uint64_t key = rng::hash(seed_, kOrderStream, epoch);
  // Cycle walking: the domain is < 4 * n, so this takes < 4 steps on average.
  do {
    x = feistel(x, half_bits_, key);
  } while (x >= uint64_t(n_));
  return int64_t(x);
}

}  // namespace retort
