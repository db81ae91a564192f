// L-BFGS-B (LBFGSpp's LBFGSBSolver) with box bounds, made robust for grid searches: the best
// point ever evaluated is kept, so a line-search failure (LBFGSpp throws) still returns a usable
// result instead of aborting the whole fit.
#pragma once
#include <Eigen/Core>
#include <functional>
#include <string>

namespace retort::scaling {

struct MinimizeResult {
  Eigen::VectorXd x;
  double f = 0;
  int iterations = 0;
  bool converged = false;  // solver stopped on its own criteria (not an exception / NaN)
  std::string message;
};

// f(x, grad) returns the objective and writes its gradient.
using ObjectiveFn = std::function<double(const Eigen::VectorXd&, Eigen::VectorXd&)>;

MinimizeResult minimize_bounded(const ObjectiveFn& f, Eigen::VectorXd x0, const Eigen::VectorXd& lower,
                                const Eigen::VectorXd& upper, int max_iterations = 1000);

}  // namespace retort::scaling
