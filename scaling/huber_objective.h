// The fitting objective of Hoffmann et al. (2022) and Busbridge et al. (2025):
//
//   J(θ) = Σ_i w_i · Huber_δ( log L̂_i(θ) − log L_i )
//
//   Huber_δ(r) = r²/2             for |r| <= δ
//              = δ·(|r| − δ/2)     otherwise          (C¹: Huber'_δ(r) = clamp(r, −δ, δ))
//
// The laws are written so that log L̂_i is a log-sum-exp of linear terms in the parameters
// (e.g. log(E + A/N^α + B/D^β) = LSE(e, a − α·log N, b − β·log D) with e = log E, ...), which
// keeps the objective finite and smooth for any parameter values. A LogLaw supplies log L̂_i and
// its gradient ∂ log L̂_i/∂θ; then ∇J = Σ_i w_i · Huber'_δ(r_i) · ∂ log L̂_i/∂θ.
// Weights w_i are 1 for a plain fit and the resampling counts for a bootstrap replicate.
#pragma once
#include <Eigen/Core>
#include <vector>

namespace retort::scaling {

// log(e^x + e^y) and the like, computed without overflow.
double log_sum_exp(double x, double y);
double log_sum_exp(double x, double y, double z);

double huber(double r, double delta);
double huber_derivative(double r, double delta);  // = clamp(r, −δ, δ)

// A law in log space over a fixed data set.
class LogLaw {
 public:
  virtual ~LogLaw() = default;
  virtual int num_params() const = 0;
  virtual int num_points() const = 0;
  // log L̂_i(θ); writes ∂ log L̂_i/∂θ into grad (num_params values) when grad is not null.
  virtual double log_predict(const double* theta, int i, double* grad) const = 0;
};

class HuberObjective {
 public:
  // log_y: observed log losses; weights: empty (all 1) or one per point.
  HuberObjective(const LogLaw& law, std::vector<double> log_y, double delta, std::vector<double> weights = {});
  // J(θ) and ∇J(θ) (the signature LBFGSpp expects).
  double operator()(const Eigen::VectorXd& theta, Eigen::VectorXd& grad) const;
  double value(const Eigen::VectorXd& theta) const;
  // r_i = log L̂_i − log L_i.
  std::vector<double> residuals(const Eigen::VectorXd& theta) const;
  double delta() const { return delta_; }
  double total_weight() const;  // Σ w_i

 private:
  const LogLaw& law_;
  std::vector<double> log_y_, w_;
  double delta_;
};

}  // namespace retort::scaling
