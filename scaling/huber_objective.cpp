#include "scaling/huber_objective.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace retort::scaling {

// LSE(x, y) = m + log(e^{x−m} + e^{y−m}), m = max(x, y).
double log_sum_exp(double x, double y) {
  double m = std::max(x, y);
  return m + std::log(std::exp(x - m) + std::exp(y - m));
}
double log_sum_exp(double x, double y, double z) {
  double m = std::max({x, y, z});
  return m + std::log(std::exp(x - m) + std::exp(y - m) + std::exp(z - m));
}

double huber(double r, double delta) {
  double a = std::abs(r);
  return a <= delta ? 0.5 * r * r : delta * (a - 0.5 * delta);
}
double huber_derivative(double r, double delta) { return std::clamp(r, -delta, delta); }

HuberObjective::HuberObjective(const LogLaw& law, std::vector<double> log_y, double delta,
                               std::vector<double> weights)
    : law_(law), log_y_(std::move(log_y)), w_(std::move(weights)), delta_(delta) {
  RETORT_CHECK(int(log_y_.size()) == law_.num_points(), "one observation per point");
  RETORT_CHECK(w_.empty() || w_.size() == log_y_.size(), "one weight per point");
  RETORT_CHECK(delta_ > 0, "Huber delta must be positive");
}

double HuberObjective::operator()(const Eigen::VectorXd& theta, Eigen::VectorXd& grad) const {
  const int p = law_.num_params();
  grad.setZero(p);
  std::vector<double> g(p);
  double J = 0;
  for (int i = 0; i < law_.num_points(); ++i) {
    double w = w_.empty() ? 1.0 : w_[i];
    if (w == 0) continue;
    double r = law_.log_predict(theta.data(), i, g.data()) - log_y_[i];
    J += w * huber(r, delta_);
    double s = w * huber_derivative(r, delta_);  // ∂J/∂ log L̂_i
    for (int k = 0; k < p; ++k) grad[k] += s * g[k];
  }
  return J;
}

double HuberObjective::value(const Eigen::VectorXd& theta) const {
  double J = 0;
  for (int i = 0; i < law_.num_points(); ++i) {
    double w = w_.empty() ? 1.0 : w_[i];
    if (w != 0) J += w * huber(law_.log_predict(theta.data(), i, nullptr) - log_y_[i], delta_);
  }
  return J;
}

double HuberObjective::total_weight() const {
  if (w_.empty()) return double(log_y_.size());
  double s = 0;
  for (double w : w_) s += w;
  return s;
}

std::vector<double> HuberObjective::residuals(const Eigen::VectorXd& theta) const {
  std::vector<double> r(log_y_.size());
  for (int i = 0; i < law_.num_points(); ++i) r[i] = law_.log_predict(theta.data(), i, nullptr) - log_y_[i];
  return r;
}

}  // namespace retort::scaling
