#include "scaling/isoflop_fit.h"

#include <Eigen/Dense>
#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <string>

#include "core/check.h"

namespace retort::scaling {

std::vector<std::vector<int>> group_budgets(const std::vector<double>& C, double tolerance_decades) {
  std::vector<int> order(C.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return C[a] < C[b]; });
  std::vector<std::vector<int>> groups;
  for (size_t k = 0; k < order.size(); ++k) {
    if (k == 0 || std::log10(C[order[k]]) - std::log10(C[order[k - 1]]) > tolerance_decades) groups.emplace_back();
    groups.back().push_back(order[k]);
  }
  return groups;
}

namespace {

// y ≈ p0 + p1·x (+ p2·x²), weighted least squares via a QR solve of √w-scaled rows.
Eigen::VectorXd weighted_polyfit(const std::vector<double>& x, const std::vector<double>& y,
                                 const std::vector<double>& w, int degree) {
  Eigen::MatrixXd X(x.size(), degree + 1);
  Eigen::VectorXd Y(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    double s = std::sqrt(w[i]);
    for (int k = 0; k <= degree; ++k) X(i, k) = s * std::pow(x[i], k);
    Y[i] = s * y[i];
  }
  return X.colPivHouseholderQr().solve(Y);
}

// "lines 3, 7, 9" (source lines when known, else 1-based row numbers), at most 6 listed.
std::string rows_text(const std::vector<int>& rows, const std::vector<int>& lines) {
  std::string s = lines.empty() ? "row" : "line";
  s += rows.size() == 1 ? " " : "s ";
  for (size_t k = 0; k < rows.size() && k < 6; ++k)
    s += (k ? ", " : "") + std::to_string(lines.empty() ? rows[k] + 1 : lines[rows[k]]);
  return rows.size() > 6 ? s + ", ..." : s;
}

PowerLawFit fit_power_law(const std::vector<double>& C, const std::vector<double>& y) {
  std::vector<double> lx, ly, w(C.size(), 1.0);
  for (size_t i = 0; i < C.size(); ++i) {
    lx.push_back(std::log(C[i]));
    ly.push_back(std::log(y[i]));
  }
  auto p = weighted_polyfit(lx, ly, w, 1);
  PowerLawFit f;
  f.exponent = p[1];
  f.coefficient = std::exp(p[0]);
  double ss = 0;
  for (size_t i = 0; i < C.size(); ++i) {
    f.residuals.push_back(ly[i] - (p[0] + p[1] * lx[i]));
    ss += f.residuals.back() * f.residuals.back();
  }
  f.rms_residual = std::sqrt(ss / C.size());
  return f;
}

}  // namespace

IsoflopFit fit_isoflop(const std::vector<double>& N, const std::vector<double>& C, const std::vector<double>& loss,
                       double tolerance_decades, const std::vector<double>& weights,
                       const std::vector<int>& lines) {
  RETORT_CHECK(N.size() == C.size() && N.size() == loss.size(), "N, C, loss of equal length");
  IsoflopFit out;
  for (const auto& rows : group_budgets(C, tolerance_decades)) {
    BudgetFit b;
    std::vector<double> x, y, w;
    std::set<double> sizes;
    double log_c = 0, wsum = 0;
    for (int i : rows) {
      double wi = weights.empty() ? 1.0 : weights[i];
      log_c += std::log(C[i]) / rows.size();
      if (wi <= 0) continue;
      x.push_back(std::log(N[i]));
      y.push_back(loss[i]);
      w.push_back(wi);
      sizes.insert(N[i]);
      wsum += wi;
      ++b.points;
    }
    b.C = std::exp(log_c);
    b.rows = rows;
    if (sizes.size() < 3)
      throw Error(str_cat("IsoFLOP budget C ≈ ", b.C, " (", rows_text(rows, lines), ") has ", sizes.size(),
                          " distinct model size(s); a parabola in log N needs at least 3 (group budgets with "
                          "--budget-tolerance or select rows with --where)"));
    // Centre x for conditioning: L ≈ q0 + q1·(x − m) + q2·(x − m)².
    double m = 0;
    for (size_t i = 0; i < x.size(); ++i) m += w[i] * x[i] / wsum;
    std::vector<double> xc(x.size());
    for (size_t i = 0; i < x.size(); ++i) xc[i] = x[i] - m;
    auto q = weighted_polyfit(xc, y, w, 2);
    if (!(q[2] > 0))
      throw Error(str_cat("IsoFLOP budget C ≈ ", b.C, " (", rows_text(rows, lines), "): loss is not convex in log N (parabola curvature ", q[2],
                          "), so the budget does not bracket its optimum"));
    b.c2 = q[2];
    b.c1 = q[1] - 2 * q[2] * m;
    b.c0 = q[0] - q[1] * m + q[2] * m * m;
    const double xs = m - q[1] / (2 * q[2]);
    b.N_opt = std::exp(xs);
    b.D_opt = b.C / (6.0 * b.N_opt);
    b.L_opt = q[0] - q[1] * q[1] / (4 * q[2]);
    double ss = 0;
    for (size_t i = 0; i < x.size(); ++i) {
      double r = y[i] - (q[0] + q[1] * xc[i] + q[2] * xc[i] * xc[i]);
      ss += w[i] * r * r;
    }
    b.rms_residual = std::sqrt(ss / wsum);
    b.extrapolated = b.N_opt < *sizes.begin() || b.N_opt > *sizes.rbegin();
    out.budgets.push_back(b);
  }
  if (out.budgets.size() < 2)
    throw Error(str_cat("Approach 2 needs at least 2 compute budgets, found ", out.budgets.size()));
  std::vector<double> cs, ns, ds;
  for (const auto& b : out.budgets) {
    cs.push_back(b.C);
    ns.push_back(b.N_opt);
    ds.push_back(b.D_opt);
  }
  out.n_opt = fit_power_law(cs, ns);
  out.d_opt = fit_power_law(cs, ds);
  return out;
}

}  // namespace retort::scaling
