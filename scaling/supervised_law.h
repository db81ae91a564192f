// The supervised scaling law and what follows from it.
//
//   L(N, D) = E + (A·N^−α + B·D^−β)^γ         γ = 1: Hoffmann et al. 2022 ("chinchilla")
//                                               γ free: Busbridge et al. 2025 ("busbridge")
//
// In log space, with e = log E, a = log A, b = log B, n = log N, d = log D:
//
//   log L = LSE(e, γ·S),   S = LSE(a − α·n, b − β·d)
//
// Compute-optimal allocation at C = 6·N·D: since x ↦ x^γ is increasing for γ > 0, minimising
// L(N, C/(6N)) over N is minimising A·N^−α + B·(C/6)^−β·N^β, whatever γ is. Setting the
// derivative to zero gives the closed form (Hoffmann et al., Eq. 4), for γ = 1 and free γ alike:
//
//   N_opt(C) = G·(C/6)^a,   D_opt(C) = G⁻¹·(C/6)^b,
//   a = β/(α+β),  b = α/(α+β),  G = (α·A / (β·B))^(1/(α+β)).
#pragma once
#include <vector>

#include "scaling/huber_objective.h"

namespace retort::scaling {

struct SupervisedLaw {
  double E = 0, A = 0, B = 0, alpha = 0, beta = 0, gamma = 1;

  double loss(double N, double D) const;
  double exponent_a() const { return beta / (alpha + beta); }
  double exponent_b() const { return alpha / (alpha + beta); }
  double G() const;
  double n_opt(double C) const;  // G·(C/6)^a
  double d_opt(double C) const;  // G⁻¹·(C/6)^b
  double loss_opt(double C) const { return loss(n_opt(C), d_opt(C)); }
};

// θ = (e, a, b, α, β[, γ]) over data points (log N_i, log D_i); with fixed_gamma the parameter
// vector has 5 entries and γ is the constant given.
class SupervisedLogLaw : public LogLaw {
 public:
  SupervisedLogLaw(const std::vector<double>& N, const std::vector<double>& D, bool free_gamma,
                   double fixed_gamma = 1.0);
  int num_params() const override { return free_gamma_ ? 6 : 5; }
  int num_points() const override { return int(log_n_.size()); }
  // log L̂ = LSE(e, γ·S), S = LSE(u, v), u = a − α·n, v = b − β·d. With p_u = e^{u−S},
  // p_v = e^{v−S}, w_e = e^{e − log L̂}, w_T = 1 − w_e:
  //   ∂/∂e = w_e,  ∂/∂a = w_T·γ·p_u,  ∂/∂α = −w_T·γ·p_u·n,  ∂/∂b = w_T·γ·p_v,
  //   ∂/∂β = −w_T·γ·p_v·d,  ∂/∂γ = w_T·S.
  double log_predict(const double* theta, int i, double* grad) const override;

  static SupervisedLaw to_law(const double* theta, bool free_gamma, double fixed_gamma = 1.0);

 private:
  std::vector<double> log_n_, log_d_;
  bool free_gamma_;
  double fixed_gamma_;
};

}  // namespace retort::scaling
