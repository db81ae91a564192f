// Learning-rate schedule: linear warmup to the peak, then a decay to the floor r·peak
// (r = min_lr_ratio), over steps s in [0, steps):
//   s < W:  lr = peak · (s+1)/W
//   cosine: lr = peak · (r + (1−r)·½(1 + cos(π·(s−W)/(steps−W))))   (the last step just above r)
//   wsd (warmup–stable–decay): lr = peak until the last D = decay_steps steps, then with
//           p = (s − (steps − D) + 1)/D in (0, 1]  (the last step at the floor)
//           linear: lr = peak · (r + (1−r)·(1 − p));   sqrt: lr = peak · (r + (1−r)·(1 − √p))
// Under wsd the rate before the decay does not depend on `steps`, so a run resumed from a longer
// run's checkpoint taken before that run's decay, with a shorter train.steps, is the shorter run.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace retort {

struct LrSchedule {
  enum class Decay { Cosine, Linear, Sqrt };  // Linear, Sqrt: wsd's decay shapes
  double peak = 3e-3;
  double min_ratio = 0.1;
  int64_t warmup = 0;
  int64_t steps = 1;
  Decay decay = Decay::Cosine;
  int64_t decay_steps = 0;  // wsd: the last decay_steps steps decay (>= 1)

  double at(int64_t step) const {
    if (warmup > 0 && step < warmup) return peak * static_cast<double>(step + 1) / warmup;
    if (decay == Decay::Cosine) {
      const int64_t span = std::max<int64_t>(1, steps - warmup);
      double progress = std::min(1.0, static_cast<double>(step - warmup) / span);
      double cosine = 0.5 * (1.0 + std::cos(3.14159265358979323846 * progress));
      return peak * (min_ratio + (1.0 - min_ratio) * cosine);
    }
    const int64_t stable_end = steps - decay_steps;
    if (step < stable_end) return peak;
    const double p = std::min(1.0, static_cast<double>(step - stable_end + 1) / decay_steps);
    const double left = decay == Decay::Linear ? 1.0 - p : 1.0 - std::sqrt(p);
    return peak * (min_ratio + (1.0 - min_ratio) * left);
  }
};

class Config;
// The schedule of train.lr, min_lr_ratio, lr_schedule and wsd's keys over `steps` steps with
// `warmup` warmup steps; a bad value fails naming its key (cfg.fail: ConfigError).
LrSchedule lr_schedule_from(const Config& cfg, int64_t steps, int64_t warmup);
// wsd's decay length: the last round(fraction · steps) steps, at least one.
int64_t wsd_decay_steps(int64_t steps, double fraction);

}  // namespace retort
