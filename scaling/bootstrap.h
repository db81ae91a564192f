// Nonparametric bootstrap: R replicates, each a refit on n rows drawn with replacement
// (expressed as per-row counts, so every fitter takes them as weights). Percentile intervals:
// [q_{(1−level)/2}, q_{(1+level)/2}] of the replicate values (linear interpolation), plus the
// replicates' standard deviation. Replicates whose refit throws are counted and left out.
// Replicates run in parallel (OpenMP); the resampling is drawn up front from one seeded
// generator, so results do not depend on the thread count.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace retort::scaling {

struct Interval {
  double lo = 0, hi = 0, stddev = 0;
};

struct BootstrapResult {
  int replicates = 0, failed = 0;
  double level = 0.95;
  uint64_t seed = 0;
  std::map<std::string, Interval> intervals;
};

using RefitFn = std::function<std::map<std::string, double>(const std::vector<double>& weights)>;

BootstrapResult bootstrap(int rows, int replicates, uint64_t seed, double level, const RefitFn& refit);

}  // namespace retort::scaling
