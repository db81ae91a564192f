#include "scaling/supervised_law.h"

#include <cmath>

namespace retort::scaling {

double SupervisedLaw::loss(double N, double D) const {
  return E + std::pow(A * std::pow(N, -alpha) + B * std::pow(D, -beta), gamma);
}
double SupervisedLaw::G() const { return std::pow(alpha * A / (beta * B), 1.0 / (alpha + beta)); }
double SupervisedLaw::n_opt(double C) const { return G() * std::pow(C / 6.0, exponent_a()); }
double SupervisedLaw::d_opt(double C) const { return std::pow(C / 6.0, exponent_b()) / G(); }

SupervisedLogLaw::SupervisedLogLaw(const std::vector<double>& N, const std::vector<double>& D, bool free_gamma,
                                   double fixed_gamma)
    : free_gamma_(free_gamma), fixed_gamma_(fixed_gamma) {
  for (size_t i = 0; i < N.size(); ++i) {
    log_n_.push_back(std::log(N[i]));
    log_d_.push_back(std::log(D[i]));
  }
}

double SupervisedLogLaw::log_predict(const double* t, int i, double* grad) const {
  const double e = t[0], a = t[1], b = t[2], al = t[3], be = t[4];
  const double g = free_gamma_ ? t[5] : fixed_gamma_;
  const double n = log_n_[i], d = log_d_[i];
  const double u = a - al * n, v = b - be * d;
  const double S = log_sum_exp(u, v);
  const double out = log_sum_exp(e, g * S);
  if (grad) {
    const double pu = std::exp(u - S), pv = std::exp(v - S);
    const double we = std::exp(e - out), wt = 1.0 - we;
    grad[0] = we;
    grad[1] = wt * g * pu;
    grad[2] = wt * g * pv;
    grad[3] = -wt * g * pu * n;
    grad[4] = -wt * g * pv * d;
    if (free_gamma_) grad[5] = wt * S;
  }
  return out;
}

SupervisedLaw SupervisedLogLaw::to_law(const double* t, bool free_gamma, double fixed_gamma) {
  SupervisedLaw law;
  law.E = std::exp(t[0]);
  law.A = std::exp(t[1]);
  law.B = std::exp(t[2]);
  law.alpha = t[3];
  law.beta = t[4];
  law.gamma = free_gamma ? t[5] : fixed_gamma;
  return law;
}

}  // namespace retort::scaling
