// Stateless seeded sample order over n items (windows of a token stream, sequences of a
// distillation corpus). Global sample index i maps to epoch e = i / n and position
// p = i % n, and to item perm_e(p), where perm_e is a pseudo-random permutation of [0, n)
// keyed by hash(seed, e) (a Feistel network with cycle walking; O(1) per index). So the order
// depends only on (seed, global index): never on the number of ranks or on how the index
// range is split into batches; every item is seen once per epoch; resuming is exact by
// passing the next global index.
#pragma once
#include <cstdint>

namespace retort {

class SampleOrder {
 public:
  // n >= 1 items.
  SampleOrder(int64_t n, uint64_t seed);
  int64_t size() const { return n_; }
  // Item (0 .. n-1) used for global sample `index` (index >= 0).
  int64_t item_of(int64_t index) const;

 private:
  int64_t n_;
  uint64_t seed_;
  int half_bits_;  // Feistel halves; domain = 2^(2*half_bits) >= n
};

}  // namespace retort
