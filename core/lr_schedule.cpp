#include "core/lr_schedule.h"

#include "core/check.h"
#include "core/config.h"

namespace retort {

int64_t wsd_decay_steps(int64_t steps, double fraction) {
  return std::max<int64_t>(1, std::llround(fraction * double(steps)));
}

LrSchedule lr_schedule_from(const Config& cfg, int64_t steps, int64_t warmup) {
  LrSchedule s{cfg.get_float("train.lr"), cfg.get_float("train.min_lr_ratio"), warmup, steps};
  if (s.min_ratio < 0 || s.min_ratio > 1) cfg.fail("train.min_lr_ratio", "must be in [0, 1]");
  const std::string kind = cfg.get_string("train.lr_schedule");
  if (kind == "cosine") return s;
  if (kind != "wsd") cfg.fail("train.lr_schedule", str_cat("must be cosine or wsd, got '", kind, "'"));
  const std::string shape = cfg.get_string("train.wsd_decay_shape");
  if (shape != "linear" && shape != "sqrt")
    cfg.fail("train.wsd_decay_shape", str_cat("must be linear or sqrt, got '", shape, "'"));
  s.decay = shape == "linear" ? LrSchedule::Decay::Linear : LrSchedule::Decay::Sqrt;
  const double fraction = cfg.get_float("train.wsd_decay_fraction");
  if (!(fraction > 0 && fraction <= 1))
    cfg.fail("train.wsd_decay_fraction", str_cat("must be in (0, 1], got ", fraction));
  s.decay_steps = wsd_decay_steps(steps, fraction);
  if (s.warmup > steps - s.decay_steps)
    cfg.fail("train.warmup_steps", str_cat(s.warmup, " warmup steps run into wsd's decay, which starts at step ",
                                           steps - s.decay_steps, " of ", steps));
  return s;
}

}  // namespace retort
