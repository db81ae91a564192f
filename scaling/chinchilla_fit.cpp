#include "scaling/chinchilla_fit.h"

#include <cmath>

#include "core/check.h"
#include "scaling/multistart.h"

namespace retort::scaling {

std::vector<Eigen::VectorXd> hoffmann_grid(LawForm form) {
  const std::vector<double> exps{0, 0.5, 1, 1.5, 2};
  const std::vector<double> e{-1, -0.5, 0, 0.5, 1};
  const std::vector<double> ab{0, 5, 10, 15, 20, 25};
  std::vector<std::vector<double>> axes{e, ab, ab, exps, exps};
  if (form == LawForm::busbridge) axes.push_back({0.5, 1});
  return cartesian_grid(axes);
}

SupervisedFit fit_supervised(const std::vector<double>& N, const std::vector<double>& D,
                             const std::vector<double>& loss, LawForm form, double delta,
                             const std::vector<double>& weights, const std::vector<Eigen::VectorXd>& starts) {
  RETORT_CHECK(N.size() == D.size() && N.size() == loss.size(), "N, D, loss of equal length");
  const bool free_gamma = form == LawForm::busbridge;
  const int p = free_gamma ? 6 : 5;
  if (int(N.size()) < p)
    throw Error(str_cat("need at least ", p, " results to fit ", p, " parameters, have ", N.size()));
  SupervisedLogLaw law(N, D, free_gamma);
  std::vector<double> log_y;
  for (double l : loss) log_y.push_back(std::log(l));
  HuberObjective objective(law, log_y, delta, weights);

  Eigen::VectorXd lower(p), upper(p);
  lower.head(5) << -5, -10, -10, 0, 0;
  upper.head(5) << 5, 60, 60, 5, 5;
  if (free_gamma) {
    lower[5] = 0.05;
    upper[5] = 5;
  }
  auto best = minimize_from_grid(objective, starts.empty() ? hoffmann_grid(form) : starts, lower, upper);
  SupervisedFit fit;
  fit.theta = best.theta;
  fit.law = SupervisedLogLaw::to_law(best.theta.data(), free_gamma);
  fit.objective = best.objective;
  fit.residuals = objective.residuals(best.theta);
  fit.starts = best.starts;
  fit.converged = best.converged;
  return fit;
}

}  // namespace retort::scaling
