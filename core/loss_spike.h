// Loss-spike detector: the z-score of each new loss against the mean and standard deviation of
// the previous `window` losses, z = (loss − mean) / std. Reported (metrics.jsonl
// `loss_spike_z`) when it exceeds the threshold; 0 until `min_history` losses are in.
#pragma once
#include <cmath>
#include <cstddef>
#include <deque>

namespace retort {

class LossSpikeDetector {
 public:
  explicit LossSpikeDetector(size_t window = 50, size_t min_history = 20)
      : window_(window), min_history_(min_history) {}

  // z-score of `loss` against the history (0 while warming up), then adds it.
  double add(double loss) {
    double z = 0;
    if (history_.size() >= min_history_) {
      double mean = 0, var = 0;
      for (double x : history_) mean += x;
      mean /= double(history_.size());
      for (double x : history_) var += (x - mean) * (x - mean);
      const double sd = std::sqrt(var / double(history_.size()));
      z = sd > 0 ? (loss - mean) / sd : 0;
    }
    history_.push_back(loss);
    if (history_.size() > window_) history_.pop_front();
    return z;
  }

 private:
  size_t window_, min_history_;
  std::deque<double> history_;
};

}  // namespace retort
