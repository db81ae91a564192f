// Approach 2 of Hoffmann et al. (2022): IsoFLOP profiles.
//
// Runs are grouped into compute budgets C. Within a budget, loss is fitted by a parabola in
// x = ln N (weighted least squares):  L ≈ c2·x² + c1·x + c0,  minimum at x* = −c1/(2·c2), so
//   N_opt(C) = e^{x*},  D_opt(C) = C/(6·N_opt),  L_opt(C) = c0 − c1²/(4·c2).
// Across budgets, ln N_opt = ln k_N + a·ln C and ln D_opt = ln k_D + b·ln C (least squares);
// the residuals of these two regressions are reported.
//
// Budgets: rows are sorted by log10 C and a new budget starts wherever two consecutive values
// differ by more than `tolerance_decades` (exact sweep budgets group trivially; values read off
// a plot, like Epoch's Chinchilla extraction, scatter by a few percent).
#pragma once
#include <vector>

namespace retort::scaling {

struct BudgetFit {
  double C = 0;                 // geometric mean of the budget's C values
  int points = 0;               // rows with positive weight
  double c0 = 0, c1 = 0, c2 = 0;  // parabola in x = ln N
  double N_opt = 0, D_opt = 0, L_opt = 0;
  double rms_residual = 0;      // of the parabola, in loss units
  bool extrapolated = false;    // N_opt lies outside the budget's model sizes
  std::vector<int> rows;        // indices into the input
};

struct PowerLawFit {
  double exponent = 0, coefficient = 0;  // y = coefficient · C^exponent
  std::vector<double> residuals;         // ln y_i − ln ŷ_i, one per budget
  double rms_residual = 0;
};

struct IsoflopFit {
  std::vector<BudgetFit> budgets;
  PowerLawFit n_opt, d_opt;  // exponents a and b
};

// Row indices per budget, budgets in increasing C.
std::vector<std::vector<int>> group_budgets(const std::vector<double>& C, double tolerance_decades);

// Throws Error for a budget with fewer than 3 distinct model sizes or a non-convex parabola,
// and for fewer than 2 budgets (naming the budget's source lines when given). weights: empty (all 1) or per row (bootstrap counts).
IsoflopFit fit_isoflop(const std::vector<double>& N, const std::vector<double>& C, const std::vector<double>& loss,
                       double tolerance_decades = 0.05, const std::vector<double>& weights = {},
                       const std::vector<int>& lines = {});  // source lines, for messages

}  // namespace retort::scaling
