// WindowLoader: determinism, batch-split independence, every window once per epoch,
// targets = inputs shifted by one.
#include <gtest/gtest.h>

#include <set>

#include "data/loader.h"

using namespace retort;

namespace {

Tensor make_tokens(int64_t n) {
  Tensor t = Tensor::empty({n}, DType::I32);
  for (int64_t i = 0; i < n; ++i) t.data<int32_t>()[i] = int32_t(i);  // token = position
  return t;
}

std::vector<int32_t> draw(const WindowLoader& l, int64_t first, int64_t count, Tensor* tg = nullptr) {
  Tensor in = Tensor::empty({count, l.seq_len()}, DType::I32);
  Tensor t = Tensor::empty({count, l.seq_len()}, DType::I32);
  l.fill_batch(first, count, in, t);
  if (tg) *tg = t;
  return std::vector<int32_t>(in.data<int32_t>(), in.data<int32_t>() + in.numel());
}

}  // namespace

TEST(Loader, WindowCount) {
  EXPECT_EQ(WindowLoader(make_tokens(101), 10, 1).num_windows(), 10);
  EXPECT_EQ(WindowLoader(make_tokens(100), 10, 1).num_windows(), 9);
  EXPECT_EQ(WindowLoader(make_tokens(11), 10, 1).num_windows(), 1);
  EXPECT_THROW(WindowLoader(make_tokens(10), 10, 1), Error);
}

TEST(Loader, DeterministicAndSeedDependent) {
  WindowLoader a(make_tokens(1000), 8, 42), b(make_tokens(1000), 8, 42), c(make_tokens(1000), 8, 43);
  EXPECT_EQ(draw(a, 0, 50), draw(b, 0, 50));
  EXPECT_NE(draw(a, 0, 50), draw(c, 0, 50));
}

TEST(Loader, IndependentOfBatchSplit) {
  WindowLoader l(make_tokens(5000), 16, 7);
  std::vector<int32_t> whole = draw(l, 100, 60);
  std::vector<int32_t> parts;
  // Uneven pieces, as different rank counts / micro-batches / a resume would draw them.
  for (auto [first, count] : {std::pair{100, 7}, {107, 1}, {108, 20}, {128, 32}}) {
    auto p = draw(l, first, count);
    parts.insert(parts.end(), p.begin(), p.end());
  }
  EXPECT_EQ(whole, parts);
}

TEST(Loader, EveryWindowOncePerEpochAndTargetsShifted) {
  for (int64_t n_tokens : {2, 12, 33, 1001, 4097}) {
    const int64_t T = 4;
    if (n_tokens < T + 1) continue;
    WindowLoader l(make_tokens(n_tokens), T, 99);
    const int64_t W = l.num_windows();
    ASSERT_EQ(W, (n_tokens - 1) / T);
    std::vector<int64_t> epoch0, epoch1;
    for (int epoch = 0; epoch < 3; ++epoch) {
      Tensor tg;
      auto in = draw(l, epoch * W, W, &tg);
      std::set<int64_t> seen;
      std::vector<int64_t> order;
      for (int64_t r = 0; r < W; ++r) {
        int32_t start = in[r * T];
        ASSERT_EQ(start % T, 0);
        ASSERT_LE(start + T, n_tokens - 1);
        seen.insert(start / T);
        order.push_back(start / T);
        for (int64_t t = 0; t < T; ++t) {
          ASSERT_EQ(in[r * T + t], start + t);
          ASSERT_EQ(tg.data<int32_t>()[r * T + t], start + t + 1);
        }
      }
      EXPECT_EQ(int64_t(seen.size()), W) << n_tokens;
      if (epoch == 0) epoch0 = order;
      if (epoch == 1) epoch1 = order;
    }
    if (W > 8) {
      EXPECT_NE(epoch0, epoch1) << "epochs should be shuffled differently";
    }
  }
}

TEST(Loader, ShuffledNotIdentity) {
  WindowLoader l(make_tokens(10001), 10, 3);
  int fixed = 0;
  for (int64_t i = 0; i < l.num_windows(); ++i) fixed += l.window_of(i) == i;
  EXPECT_LT(fixed, 20);
}
