#include "scaling/distillation_fit.h"

#include <cmath>

#include "core/check.h"
#include "scaling/multistart.h"

namespace retort::scaling {
namespace {

double softplus(double q) { return q > 0 ? q + std::log1p(std::exp(-q)) : std::log1p(std::exp(q)); }
double sigmoid(double q) { return q >= 0 ? 1.0 / (1.0 + std::exp(-q)) : std::exp(q) / (1.0 + std::exp(q)); }

}  // namespace

double DistillationLaw::loss(double N_S, double D_S, double L_T) const {
  const double ratio = L_T / (supervised.loss(N_S, D_S) * d1);
  const double gap = std::pow(1.0 + std::pow(ratio, 1.0 / f1), -c1 * f1);
  return L_T + std::pow(L_T, -c0) * gap * std::pow(A * std::pow(N_S, -alpha) + B * std::pow(D_S, -beta), gamma);
}

DistillationLogLaw::DistillationLogLaw(const std::vector<double>& N_S, const std::vector<double>& D_S,
                                       const std::vector<double>& L_T, const SupervisedLaw& supervised) {
  for (size_t i = 0; i < N_S.size(); ++i) {
    log_n_.push_back(std::log(N_S[i]));
    log_d_.push_back(std::log(D_S[i]));
    log_t_.push_back(std::log(L_T[i]));
    log_sup_.push_back(std::log(supervised.loss(N_S[i], D_S[i])));
  }
}

double DistillationLogLaw::log_predict(const double* th, int i, double* grad) const {
  const double c0 = th[0], c1 = th[1], ld = th[2], f1 = std::exp(th[3]);
  const double a = th[4], b = th[5], al = th[6], be = th[7], g = th[8];
  const double n = log_n_[i], d = log_d_[i], t = log_t_[i];
  const double q = (t - log_sup_[i] - ld) / f1;
  const double sp = softplus(q);
  const double u = a - al * n, v = b - be * d;
  const double S = log_sum_exp(u, v);
  const double s = -c0 * t - c1 * f1 * sp + g * S;
  const double out = log_sum_exp(t, s);
  if (grad) {
    const double ws = std::exp(s - out), sg = sigmoid(q);
    const double pu = std::exp(u - S), pv = std::exp(v - S);
    grad[0] = -ws * t;
    grad[1] = -ws * f1 * sp;
    grad[2] = ws * c1 * sg;
    grad[3] = -ws * c1 * f1 * (sp - q * sg);
    grad[4] = ws * g * pu;
    grad[5] = ws * g * pv;
    grad[6] = -ws * g * pu * n;
    grad[7] = -ws * g * pv * d;
    grad[8] = ws * S;
  }
  return out;
}

DistillationLaw DistillationLogLaw::to_law(const double* th, const SupervisedLaw& supervised) {
  DistillationLaw law;
  law.c0 = th[0];
  law.c1 = th[1];
  law.d1 = std::exp(th[2]);
  law.f1 = std::exp(th[3]);
  law.A = std::exp(th[4]);
  law.B = std::exp(th[5]);
  law.alpha = th[6];
  law.beta = th[7];
  law.gamma = th[8];
  law.supervised = supervised;
  return law;
}

std::vector<Eigen::VectorXd> distillation_grid() {
  auto logs = [](std::vector<double> v) {
    for (double& x : v) x = std::log(x);
    return v;
  };
  return cartesian_grid({{0, 1.5, 3}, {0.5, 5, 50}, logs({0.7, 1, 1.4}), logs({0.1, 0.5}), {5, 10}, {5, 10},
                         {0.2, 0.5}, {0.2, 0.5}, {0.5, 1}});
}

DistillationFit fit_distillation(const std::vector<double>& N_S, const std::vector<double>& D_S,
                                 const std::vector<double>& L_T, const std::vector<double>& L_S,
                                 const SupervisedLaw& supervised, double delta, const std::vector<double>& weights,
                                 const std::vector<Eigen::VectorXd>& starts) {
  RETORT_CHECK(N_S.size() == D_S.size() && N_S.size() == L_T.size() && N_S.size() == L_S.size(),
               "N_S, D_S, L_T, L_S of equal length");
  if (N_S.size() < 9) throw Error(str_cat("need at least 9 results to fit the distillation law, have ", N_S.size()));
  DistillationLogLaw law(N_S, D_S, L_T, supervised);
  std::vector<double> log_y;
  for (double l : L_S) log_y.push_back(std::log(l));
  HuberObjective objective(law, log_y, delta, weights);
  Eigen::VectorXd lower(9), upper(9);
  lower << -5, 0, std::log(0.05), std::log(1e-3), -10, -10, 0, 0, 0.05;
  upper << 10, 1000, std::log(20.0), std::log(10.0), 60, 60, 5, 5, 5;
  auto best = minimize_from_grid(objective, starts.empty() ? distillation_grid() : starts, lower, upper);
  DistillationFit fit;
  fit.theta = best.theta;
  fit.law = DistillationLogLaw::to_law(best.theta.data(), supervised);
  fit.objective = best.objective;
  fit.residuals = objective.residuals(best.theta);
  fit.starts = best.starts;
  fit.converged = best.converged;
  return fit;
}

}  // namespace retort::scaling
