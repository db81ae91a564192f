// LossSpikeDetector: quiet until warmed up, ~0 on a smooth curve, large on a jump.
#include <gtest/gtest.h>

#include <cmath>

#include "core/loss_spike.h"

using retort::LossSpikeDetector;

TEST(LossSpike, WarmsUpThenFlagsAJump) {
  LossSpikeDetector d(50, 20);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(d.add(5.0 - 0.01 * i + 0.001 * std::sin(i)), 0.0);
  for (int i = 20; i < 60; ++i) EXPECT_LT(std::abs(d.add(5.0 - 0.01 * i + 0.001 * std::sin(i))), 3.0);
  EXPECT_GT(d.add(7.0), 6.0);  // a jump far above the recent losses
  EXPECT_LT(d.add(4.4), 3.0);  // back on the curve
}
