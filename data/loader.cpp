// Stateless per-epoch permutation of windows (see loader.h).
#include "data/loader.h"

#include <cstring>

#include "core/random.h"

namespace retort {
namespace {

constexpr int kRounds = 6;
constexpr uint64_t kLoaderStream = 0x6c6f61646572ull;  // "loader"

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

WindowLoader::WindowLoader(Tensor tokens, int64_t seq_len, uint64_t seed)
    : tokens_(std::move(tokens)), T_(seq_len), seed_(seed) {
  RETORT_CHECK(tokens_.defined() && tokens_.ndim() == 1 && tokens_.dtype() == DType::I32,
               "WindowLoader needs a 1-D int32 token tensor");
  RETORT_CHECK(tokens_.device() == Device::CPU, "WindowLoader needs host tokens");
  if (T_ < 1) throw Error(str_cat("sequence length must be >= 1, got ", T_));
  n_windows_ = (tokens_.numel() - 1) / T_;
  if (n_windows_ < 1)
    throw Error(str_cat("token stream too short: ", tokens_.numel(), " tokens, need at least ",
                        T_ + 1, " for one window of seq_len ", T_));
  int bits = 1;
  while ((int64_t(1) << bits) < n_windows_) ++bits;
  half_bits_ = (bits + 1) / 2;
}

int64_t WindowLoader::window_of(int64_t index) const {
  RETORT_CHECK(index >= 0, "negative sample index ", index);
  const uint64_t epoch = uint64_t(index / n_windows_);
  uint64_t x = uint64_t(index % n_windows_);
  const uint64_t key = rng::hash(seed_, kLoaderStream, epoch);
  // Cycle walking: the domain is < 4 * n_windows, so this takes < 4 steps on average.
  do {
    x = feistel(x, half_bits_, key);
  } while (x >= uint64_t(n_windows_));
  return int64_t(x);
}

void WindowLoader::fill_batch(int64_t first_global_index, int64_t count, Tensor& inputs,
                              Tensor& targets) const {
  const Shape want = {count, T_};
  RETORT_CHECK(inputs.shape() == want && targets.shape() == want, "fill_batch: expected ",
               shape_str(want), " tensors, got ", shape_str(inputs.shape()), " and ",
               shape_str(targets.shape()));
  int32_t* in = inputs.host<int32_t>();
  int32_t* tg = targets.host<int32_t>();
  const int32_t* tok = tokens_.data<int32_t>();
  for (int64_t r = 0; r < count; ++r) {
    const int32_t* s = tok + window_of(first_global_index + r) * T_;
    std::memcpy(in + r * T_, s, T_ * sizeof(int32_t));
    std::memcpy(tg + r * T_, s + 1, T_ * sizeof(int32_t));
  }
}

}  // namespace retort
