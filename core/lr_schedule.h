// Learning-rate schedule: linear warmup to the peak, then cosine decay to a floor.
//   step s in [0, steps):  s < W:  lr = peak · (s+1)/W
//                          else:   lr = peak · (r + (1−r)·½(1 + cos(π·(s−W)/(steps−W))))
// with r = min_lr_ratio, so the last step sits just above the floor.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace retort {

struct LrSchedule {
  double peak = 3e-3;
  double min_ratio = 0.1;
  int64_t warmup = 0;
  int64_t steps = 1;

  double at(int64_t step) const {
    if (warmup > 0 && step < warmup) return peak * static_cast<double>(step + 1) / warmup;
    int64_t decay_steps = std::max<int64_t>(1, steps - warmup);
    double progress = std::min(1.0, static_cast<double>(step - warmup) / decay_steps);
    double cosine = 0.5 * (1.0 + std::cos(3.14159265358979323846 * progress));
    return peak * (min_ratio + (1.0 - min_ratio) * cosine);
  }
};

}  // namespace retort
