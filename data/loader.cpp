// Windows of a token stream in a seeded order (see loader.h).
#include "data/loader.h"

#include <cstring>

namespace retort {
namespace {

// Windows in a stream of n tokens; Error when there is not one.
int64_t count_windows(const Tensor& tokens, int64_t T) {
  RETORT_CHECK(tokens.defined() && tokens.ndim() == 1 && tokens.dtype() == DType::I32,
               "WindowLoader needs a 1-D int32 token tensor");
  RETORT_CHECK(tokens.device() == Device::CPU, "WindowLoader needs host tokens");
  if (T < 1) throw Error(str_cat("sequence length must be >= 1, got ", T));
  const int64_t n = (tokens.numel() - 1) / T;
  if (n < 1)
    throw Error(str_cat("token stream too short: ", tokens.numel(), " tokens, need at least ",
                        T + 1, " for one window of seq_len ", T));
  return n;
}

}  // namespace

WindowLoader::WindowLoader(Tensor tokens, int64_t seq_len, uint64_t seed)
    : tokens_(std::move(tokens)), T_(seq_len), order_(count_windows(tokens_, seq_len), seed) {}

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
