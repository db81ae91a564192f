// The distillation scaling law of Busbridge et al. (2025, "Distillation Scaling Laws",
// arXiv 2502.08606, Eq. 8): the loss L_S of a student with N_S parameters distilled on D_S
// tokens from a teacher of loss L_T,
//
//   L_S = L_T + L_T^−c0 · (1 + (L_T / (L̃_S·d1))^(1/f1))^(−c1·f1) · (A'·N_S^−α' + B'·D_S^−β')^γ'
//
// where L̃_S = L̃(N_S, D_S) is the loss the same student reaches by supervised training (a fitted
// supervised law, scaling/supervised_law.h). The middle factor is a broken power law in the
// teacher/student "capacity" ratio L_T/L̃_S with its break at d1 and sharpness f1: for a teacher
// much stronger than the student can follow (L_T ≪ d1·L̃_S) it is ≈ 1; past the break it decays
// like (L_T/(d1·L̃_S))^−c1 and the student approaches its teacher (L_S → L_T).
//
// In log space, with θ = (c0, c1, ℓd = ln d1, ℓf = ln f1, a' = ln A', b' = ln B', α', β', γ'),
// t = ln L_T, q = (t − ln L̃_S − ℓd)/f1 and softplus(q) = ln(1 + e^q):
//
//   s      = −c0·t − c1·f1·softplus(q) + γ'·LSE(a' − α'·ln N_S, b' − β'·ln D_S)   (= ln of term 2)
//   ln L̂_S = LSE(t, s)
//
// Gradient (σ = logistic, w_s = e^{s − ln L̂_S}; p_u, p_v the LSE weights, S the inner LSE):
//   ∂/∂c0 = −w_s·t,   ∂/∂c1 = −w_s·f1·softplus(q),   ∂/∂ℓd = w_s·c1·σ(q),
//   ∂/∂ℓf = −w_s·c1·f1·(softplus(q) − q·σ(q)),
//   ∂/∂a' = w_s·γ'·p_u,  ∂/∂α' = −w_s·γ'·p_u·ln N_S,  ∂/∂b' = w_s·γ'·p_v,  ∂/∂β' = −w_s·γ'·p_v·ln D_S,
//   ∂/∂γ' = w_s·S.
//
// Initialisation grid (ours; the paper does not fix one we could verify): c0 ∈ {0, 1.5, 3},
// c1 ∈ {0.5, 5, 50}, d1 ∈ {0.7, 1, 1.4}, f1 ∈ {0.1, 0.5}, a', b' ∈ {5, 10}, α', β' ∈ {0.2, 0.5},
// γ' ∈ {0.5, 1} → 1728 starts. Bounds: c0 ∈ [−5, 10], c1 ∈ [0, 1000], d1 ∈ [0.05, 20],
// f1 ∈ [1e−3, 10], a', b' ∈ [−10, 60], α', β' ∈ [0, 5], γ' ∈ [0.05, 5].
#pragma once
#include <Eigen/Core>
#include <vector>

#include "scaling/huber_objective.h"
#include "scaling/supervised_law.h"

namespace retort::scaling {

struct DistillationLaw {
  double c0 = 0, c1 = 0, d1 = 1, f1 = 1, A = 0, B = 0, alpha = 0, beta = 0, gamma = 1;
  SupervisedLaw supervised;  // L̃_S

  double loss(double N_S, double D_S, double L_T) const;
};

class DistillationLogLaw : public LogLaw {
 public:
  DistillationLogLaw(const std::vector<double>& N_S, const std::vector<double>& D_S,
                     const std::vector<double>& L_T, const SupervisedLaw& supervised);
  int num_params() const override { return 9; }
  int num_points() const override { return int(log_n_.size()); }
  double log_predict(const double* theta, int i, double* grad) const override;
  static DistillationLaw to_law(const double* theta, const SupervisedLaw& supervised);

 private:
  std::vector<double> log_n_, log_d_, log_t_, log_sup_;  // ln N_S, ln D_S, ln L_T, ln L̃_S
};

struct DistillationFit {
  DistillationLaw law;
  Eigen::VectorXd theta;
  double objective = 0;
  std::vector<double> residuals;
  int starts = 0, converged = 0;
};

std::vector<Eigen::VectorXd> distillation_grid();

DistillationFit fit_distillation(const std::vector<double>& N_S, const std::vector<double>& D_S,
                                 const std::vector<double>& L_T, const std::vector<double>& L_S,
                                 const SupervisedLaw& supervised, double delta,
                                 const std::vector<double>& weights = {},
                                 const std::vector<Eigen::VectorXd>& starts = {});

}  // namespace retort::scaling
