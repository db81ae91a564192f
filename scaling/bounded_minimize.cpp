#include "scaling/bounded_minimize.h"

#include <LBFGSB.h>

#include <cmath>
#include <limits>

namespace retort::scaling {

MinimizeResult minimize_bounded(const ObjectiveFn& f, Eigen::VectorXd x0, const Eigen::VectorXd& lower,
                                const Eigen::VectorXd& upper, int max_iterations) {
  LBFGSpp::LBFGSBParam<double> param;
  param.m = 10;
  // Callers scale objectives to O(1) (see multistart.cpp), so absolute tolerances suffice.
  param.epsilon = 1e-6;      // stop when the projected gradient's norm is below this
  param.epsilon_rel = 0;
  param.past = 1;            // or when f changes by less than delta·max(|f|, 1) in one iteration
  param.delta = 1e-10;
  param.max_iterations = max_iterations;
  param.max_linesearch = 20;
  LBFGSpp::LBFGSBSolver<double> solver(param);

  MinimizeResult best;
  best.f = std::numeric_limits<double>::infinity();
  best.x = x0;
  // Wraps f: remembers the best finite point; a NaN becomes +inf so line searches back off.
  auto tracked = [&](const Eigen::VectorXd& x, Eigen::VectorXd& g) {
    double v = f(x, g);
    if (!std::isfinite(v) || !g.allFinite()) {
      g.setZero(x.size());
      return std::numeric_limits<double>::infinity();
    }
    if (v < best.f) {
      best.f = v;
      best.x = x;
    }
    return v;
  };
  double fx = 0;
  try {
    best.iterations = solver.minimize(tracked, x0, fx, lower, upper);
    best.converged = best.iterations < max_iterations;
    best.message = best.converged ? "converged" : "iteration limit";
  } catch (const std::exception& e) {
    best.message = e.what();  // typically a line search that cannot make progress at the optimum
  }
  return best;
}

}  // namespace retort::scaling
