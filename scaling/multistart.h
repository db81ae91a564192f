// Multi-start L-BFGS-B: minimise a Huber objective from every point of an initialisation grid
// and keep the best (lowest objective; ties go to the earlier start, so results do not depend on
// the thread count). Starts run in parallel with OpenMP.
#pragma once
#include <Eigen/Core>
#include <vector>

#include "scaling/huber_objective.h"

namespace retort::scaling {

struct MultiStartResult {
  Eigen::VectorXd theta;
  double objective = 0;
  int starts = 0;
  int converged = 0;  // starts whose solver stopped on its own criteria
  int best_start = -1;
};

// The Cartesian product of per-parameter value lists, first parameter varying slowest.
std::vector<Eigen::VectorXd> cartesian_grid(const std::vector<std::vector<double>>& values);

MultiStartResult minimize_from_grid(const HuberObjective& objective, const std::vector<Eigen::VectorXd>& starts,
                                    const Eigen::VectorXd& lower, const Eigen::VectorXd& upper);

}  // namespace retort::scaling
