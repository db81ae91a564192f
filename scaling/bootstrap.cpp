#include "scaling/bootstrap.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <random>

#include "core/check.h"

namespace retort::scaling {
namespace {

// Quantile p of sorted values, linear interpolation between order statistics.
double quantile(const std::vector<double>& sorted, double p) {
  double pos = p * (sorted.size() - 1);
  size_t k = size_t(std::floor(pos));
  if (k + 1 >= sorted.size()) return sorted.back();
  return sorted[k] + (pos - k) * (sorted[k + 1] - sorted[k]);
}

}  // namespace

BootstrapResult bootstrap(int rows, int replicates, uint64_t seed, double level, const RefitFn& refit) {
  RETORT_CHECK(rows > 0 && replicates > 0 && level > 0 && level < 1, "bootstrap arguments");
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> pick(0, rows - 1);
  std::vector<std::vector<double>> weights(replicates, std::vector<double>(rows, 0.0));
  for (auto& w : weights)
    for (int k = 0; k < rows; ++k) w[pick(rng)] += 1;

  std::vector<std::optional<std::map<std::string, double>>> values(replicates);
#pragma omp parallel for schedule(dynamic, 1)
  for (int r = 0; r < replicates; ++r) {
    try {
      values[r] = refit(weights[r]);
    } catch (const std::exception&) {
      values[r].reset();
    }
  }

  BootstrapResult out;
  out.replicates = replicates;
  out.level = level;
  out.seed = seed;
  std::map<std::string, std::vector<double>> samples;
  for (const auto& v : values) {
    if (!v) {
      ++out.failed;
      continue;
    }
    for (const auto& [k, x] : *v)
      if (std::isfinite(x)) samples[k].push_back(x);
  }
  for (auto& [k, xs] : samples) {
    if (xs.size() < 2) continue;
    std::sort(xs.begin(), xs.end());
    double mean = 0, var = 0;
    for (double x : xs) mean += x / xs.size();
    for (double x : xs) var += (x - mean) * (x - mean) / (xs.size() - 1);
    out.intervals[k] = {quantile(xs, (1 - level) / 2), quantile(xs, (1 + level) / 2), std::sqrt(var)};
  }
  return out;
}

}  // namespace retort::scaling
