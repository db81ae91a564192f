#include "scaling/multistart.h"

#include <limits>

#include "core/check.h"
#include "scaling/bounded_minimize.h"

namespace retort::scaling {

std::vector<Eigen::VectorXd> cartesian_grid(const std::vector<std::vector<double>>& values) {
  std::vector<Eigen::VectorXd> out{Eigen::VectorXd(0)};
  for (const auto& vals : values) {
    std::vector<Eigen::VectorXd> next;
    for (const auto& prefix : out)
      for (double v : vals) {
        Eigen::VectorXd x(prefix.size() + 1);
        x << prefix, v;
        next.push_back(x);
      }
    out = std::move(next);
  }
  return out;
}

MultiStartResult minimize_from_grid(const HuberObjective& objective, const std::vector<Eigen::VectorXd>& starts,
                                    const Eigen::VectorXd& lower, const Eigen::VectorXd& upper) {
  RETORT_CHECK(!starts.empty(), "no initial points");
  const int n = int(starts.size());
  std::vector<MinimizeResult> results(n);
  // Scaled by 1/(δ·Σw) so that J ≈ mean |r| and its gradient are O(1) whatever δ and the number
  // of points: the solver's absolute tolerances then mean the same thing for every fit.
  const double scale = 1.0 / (objective.delta() * objective.total_weight());
  ObjectiveFn f = [&](const Eigen::VectorXd& x, Eigen::VectorXd& g) {
    double v = objective(x, g) * scale;
    g *= scale;
    return v;
  };
#pragma omp parallel for schedule(dynamic, 4)
  for (int s = 0; s < n; ++s) results[s] = minimize_bounded(f, starts[s], lower, upper);

  MultiStartResult best;
  best.objective = std::numeric_limits<double>::infinity();
  best.starts = n;
  for (int s = 0; s < n; ++s) {
    best.converged += results[s].converged;
    if (results[s].f / scale < best.objective) {
      best.objective = results[s].f / scale;
      best.theta = results[s].x;
      best.best_start = s;
    }
  }
  if (best.best_start < 0) throw Error("every start of the fit gave a non-finite objective");
  return best;
}

}  // namespace retort::scaling
