// Scaling-law fits (retort fit): objective gradients, recovery of known coefficients from
// synthetic data, the Chinchilla refit of Besiroglu et al. (2024), and error paths.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <sstream>

#include "core/check.h"
#include "scaling/bootstrap.h"
#include "scaling/chinchilla_fit.h"
#include "scaling/distillation_fit.h"
#include "scaling/isoflop_fit.h"
#include "scaling/multistart.h"
#include "scaling/results_table.h"

using namespace retort;
using namespace retort::scaling;

namespace {

const std::string kChinchillaCsv = RETORT_SOURCE_DIR "/../shared/data/chinchilla_svg_extracted_data.csv";

}  // namespace

// Epoch AI's refit of Chinchilla's Figure 4 data (Besiroglu et al. 2024, Table/Eq. in §3):
// E = 1.8172, A = 482.01, B = 2085.43, α = 0.3478, β = 0.3658 (γ = 1, δ = 1e-3, 5 highest
// losses dropped).
TEST(ScalingFit, ChinchillaRefitMatchesEpoch) {
  if (!std::filesystem::exists(kChinchillaCsv))
    GTEST_SKIP() << "reference data missing: " << kChinchillaCsv << " (see ../shared/data/README.md)";
  ColumnNames cols;
  cols.n = "Model Size";
  cols.c = "Training FLOP";
  auto table = drop_highest_loss(read_results_csv(kChinchillaCsv, cols, false), 5);
  ASSERT_EQ(table.size(), 240u);
  auto fit = fit_supervised(table.N, table.D, table.loss, LawForm::chinchilla, 1e-3);
  std::printf("E=%.4f A=%.2f B=%.2f alpha=%.4f beta=%.4f obj=%.6g conv=%d/%d\n", fit.law.E, fit.law.A,
              fit.law.B, fit.law.alpha, fit.law.beta, fit.objective, fit.converged, fit.starts);
  EXPECT_NEAR(fit.law.E, 1.8172, 0.02);
  EXPECT_NEAR(fit.law.alpha, 0.3478, 0.01);
  EXPECT_NEAR(fit.law.beta, 0.3658, 0.01);
  EXPECT_NEAR(fit.law.A / 482.01, 1.0, 0.05);
  EXPECT_NEAR(fit.law.B / 2085.43, 1.0, 0.05);
}

namespace {

// Central finite differences of J vs the analytic gradient, relative to the gradient's scale.
void expect_gradient_matches(const HuberObjective& J, Eigen::VectorXd theta) {
  Eigen::VectorXd g;
  J(theta, g);
  const double scale = std::max(g.cwiseAbs().maxCoeff(), 1e-12);
  for (int k = 0; k < theta.size(); ++k) {
    const double h = 1e-6;
    Eigen::VectorXd tp = theta, tm = theta;
    tp[k] += h;
    tm[k] -= h;
    const double fd = (J.value(tp) - J.value(tm)) / (2 * h);
    EXPECT_NEAR(g[k], fd, 1e-5 * scale) << "parameter " << k;
  }
}

struct Synthetic {
  std::vector<double> N, D, loss, L_T;
};

// Runs on a grid of model sizes × tokens, loss from `truth` with multiplicative noise e^{σ·z}.
template <class F>
Synthetic make_points(F truth, double sigma, uint64_t seed, bool teachers = false) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> z(0, 1);
  Synthetic s;
  for (double N : {1e7, 3e7, 1e8, 3e8, 1e9, 3e9, 1e10})
    for (double D : {2e8, 1e9, 5e9, 2.5e10, 1.25e11, 6e11}) {
      std::vector<double> lts = teachers ? std::vector<double>{1.9, 2.2, 2.6, 3.1, 3.7} : std::vector<double>{0};
      for (double lt : lts) {
        s.N.push_back(N);
        s.D.push_back(D);
        s.L_T.push_back(lt);
        s.loss.push_back(truth(N, D, lt) * std::exp(sigma * z(rng)));
      }
    }
  return s;
}

}  // namespace

TEST(ScalingFit, SupervisedObjectiveGradientMatchesFiniteDifferences) {
  auto s = make_points([](double N, double D, double) { return 1.7 + 400 / std::pow(N, 0.34) + 2000 / std::pow(D, 0.37); },
                       0.02, 1);
  for (bool free_gamma : {false, true}) {
    SupervisedLogLaw law(s.N, s.D, free_gamma);
    std::vector<double> ly;
    for (double l : s.loss) ly.push_back(std::log(l));
    // δ small enough that points sit on both sides of the Huber kink.
    HuberObjective J(law, ly, 0.01);
    Eigen::VectorXd theta(free_gamma ? 6 : 5);
    if (free_gamma)
      theta << 0.4, 6.1, 7.4, 0.3, 0.4, 0.8;
    else
      theta << 0.4, 6.1, 7.4, 0.3, 0.4;
    expect_gradient_matches(J, theta);
  }
}

TEST(ScalingFit, DistillationObjectiveGradientMatchesFiniteDifferences) {
  SupervisedLaw sup{1.8, 400, 2000, 0.34, 0.37, 1.0};
  auto s = make_points([](double, double, double lt) { return lt + 0.3; }, 0.02, 2, true);
  DistillationLogLaw law(s.N, s.D, s.L_T, sup);
  std::vector<double> ly;
  for (double l : s.loss) ly.push_back(std::log(l));
  HuberObjective J(law, ly, 0.01);
  Eigen::VectorXd theta(9);
  theta << 1.5, 2.0, std::log(1.1), std::log(0.3), 7.0, 8.0, 0.35, 0.4, 0.7;
  expect_gradient_matches(J, theta);
}

TEST(ScalingFit, RecoversChinchillaFormFromSyntheticData) {
  SupervisedLaw truth{1.7, 400, 2000, 0.34, 0.37, 1.0};
  auto s = make_points([&](double N, double D, double) { return truth.loss(N, D); }, 0.005, 3);
  auto fit = fit_supervised(s.N, s.D, s.loss, LawForm::chinchilla, 1e-3);
  EXPECT_NEAR(fit.law.E, truth.E, 0.03);
  EXPECT_NEAR(fit.law.alpha, truth.alpha, 0.02);
  EXPECT_NEAR(fit.law.beta, truth.beta, 0.02);
  // With 0.5% noise on 42 points the bootstrap spread of a is about 0.01.
  EXPECT_NEAR(fit.law.exponent_a(), truth.exponent_a(), 0.02);
  EXPECT_EQ(fit.law.gamma, 1.0);
  // A and B are exponentially sensitive to α, β: compare predictions instead.
  EXPECT_NEAR(fit.law.loss(1e9, 2e10) / truth.loss(1e9, 2e10), 1.0, 0.005);
  EXPECT_NEAR(fit.law.n_opt(1e21) / truth.n_opt(1e21), 1.0, 0.15);
}

TEST(ScalingFit, RecoversFreeGammaFromSyntheticData) {
  SupervisedLaw truth{1.5, 1500, 6000, 0.40, 0.42, 0.7};
  auto s = make_points([&](double N, double D, double) { return truth.loss(N, D); }, 0.002, 4);
  auto fit = fit_supervised(s.N, s.D, s.loss, LawForm::busbridge, 1e-4);
  EXPECT_NEAR(fit.law.gamma, truth.gamma, 0.07);
  EXPECT_NEAR(fit.law.E, truth.E, 0.05);
  EXPECT_NEAR(fit.law.alpha, truth.alpha, 0.04);
  EXPECT_NEAR(fit.law.beta, truth.beta, 0.04);
  EXPECT_NEAR(fit.law.exponent_a(), truth.exponent_a(), 0.01);
  EXPECT_NEAR(fit.law.loss(1e9, 2e10) / truth.loss(1e9, 2e10), 1.0, 0.003);
}

TEST(ScalingFit, RecoversDistillationLawFromSyntheticData) {
  SupervisedLaw sup{1.7, 400, 2000, 0.34, 0.37, 1.0};
  DistillationLaw truth;
  truth.c0 = 2.0;
  truth.c1 = 3.0;
  truth.d1 = 1.1;
  truth.f1 = 0.3;
  truth.A = 2000;
  truth.B = 8000;
  truth.alpha = 0.35;
  truth.beta = 0.4;
  truth.gamma = 0.8;
  truth.supervised = sup;
  auto s = make_points([&](double N, double D, double lt) { return truth.loss(N, D, lt); }, 0.002, 5, true);
  // A small start grid around the usual ranges keeps this test fast (the default grid has 1728
  // starts; see distillation_fit.h).
  auto starts = cartesian_grid({{1, 3}, {0.5, 5}, {0}, {std::log(0.1), std::log(0.5)}, {7}, {9}, {0.3}, {0.3}, {0.5, 1}});
  auto fit = fit_distillation(s.N, s.D, s.L_T, s.loss, sup, 1e-4, {}, starts);
  std::printf("c0=%.3f c1=%.3f d1=%.3f f1=%.3f A=%.4g B=%.4g alpha=%.3f beta=%.3f gamma=%.3f\n", fit.law.c0,
              fit.law.c1, fit.law.d1, fit.law.f1, fit.law.A, fit.law.B, fit.law.alpha, fit.law.beta, fit.law.gamma);
  EXPECT_NEAR(fit.law.c0, truth.c0, 0.3);
  // d1 and c1 (the break of the capacity gap and its slope) trade off against each other under
  // this noise and are not checked: where the fit lands depends on the floating-point code the
  // compiler made (d1 = 1.23 in one -march=native build, 1.40 under AddressSanitizer, truth
  // 1.1), with every prediction below within 1% in each. The predictions pin the law down.
  EXPECT_NEAR(fit.law.alpha, truth.alpha, 0.05);
  EXPECT_NEAR(fit.law.beta, truth.beta, 0.05);
  EXPECT_NEAR(fit.law.gamma, truth.gamma, 0.1);
  // Predictions, including a teacher outside the fitted range.
  for (double lt : {2.0, 2.8, 4.0})
    EXPECT_NEAR(fit.law.loss(3e8, 6e9, lt) / truth.loss(3e8, 6e9, lt), 1.0, 0.01) << "L_T=" << lt;
}

TEST(ScalingFit, Approach2RecoversExponentOnSyntheticIsoflops) {
  // IsoFLOP profiles of a γ=1 law: for each budget, 7 model sizes around the optimum.
  SupervisedLaw truth{1.7, 400, 2000, 0.34, 0.37, 1.0};
  std::vector<double> N, C, loss;
  for (double c : {1e18, 3e18, 1e19, 3e19, 1e20})
    for (double k : {-0.6, -0.4, -0.2, 0.0, 0.2, 0.4, 0.6}) {
      double n = truth.n_opt(c) * std::pow(10.0, k);
      N.push_back(n);
      C.push_back(c);
      loss.push_back(truth.loss(n, c / (6 * n)));
    }
  auto fit = fit_isoflop(N, C, loss);
  ASSERT_EQ(fit.budgets.size(), 5u);
  // The parabola in log N is an approximation of the true profile; a is recovered closely.
  EXPECT_NEAR(fit.n_opt.exponent, truth.exponent_a(), 0.01);
  EXPECT_NEAR(fit.d_opt.exponent, truth.exponent_b(), 0.01);
  EXPECT_NEAR(fit.n_opt.exponent + fit.d_opt.exponent, 1.0, 1e-9);  // D_opt = C/(6·N_opt)
  for (const auto& b : fit.budgets) EXPECT_NEAR(b.N_opt / truth.n_opt(b.C), 1.0, 0.1);
  EXPECT_LT(fit.n_opt.rms_residual, 0.05);
}

TEST(ScalingFit, Approach2RejectsBudgetWithTooFewModelSizes) {
  std::vector<double> N{1e8, 2e8, 4e8, 1e8, 2e8}, C{1e18, 1e18, 1e18, 1e19, 1e19}, loss{3, 2.9, 3.0, 2.8, 2.7};
  try {
    fit_isoflop(N, C, loss, 0.05, {}, {2, 3, 4, 5, 6});
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("C ≈ 1e+19 (lines 5, 6) has 2 distinct model size(s)"), std::string::npos)
        << e.what();
  }
}

namespace {

std::string parse_error(const std::string& csv, bool teacher = false) {
  std::istringstream in(csv);
  try {
    parse_results_csv(in, "r.csv", ColumnNames{}, teacher);
  } catch (const ConfigError& e) {
    return std::string("config: ") + e.what();
  } catch (const Error& e) {
    return std::string("runtime: ") + e.what();
  }
  return "no error";
}

}  // namespace

TEST(ScalingFit, ResultsTableReadsColumnsAndComputeColumn) {
  std::istringstream in("name,N,C,loss\n\"a, b\",1e8,6e18,3.0\n\nc,2e8,6e18,2.9\n");
  auto t = parse_results_csv(in, "r.csv", ColumnNames{}, false);
  ASSERT_EQ(t.size(), 2u);
  EXPECT_DOUBLE_EQ(t.D[0], 6e18 / (6 * 1e8));  // D = C/(6N)
  EXPECT_EQ(t.line[1], 4);
  EXPECT_TRUE(t.c_from_column);
}

TEST(ScalingFit, ResultsTableErrorsNameFileLineAndColumn) {
  EXPECT_EQ(parse_error("N,D,loss\n1e8,1e9,abc\n"), "runtime: r.csv:2: column 'loss': 'abc' is not a finite number");
  EXPECT_EQ(parse_error("N,D,loss\n1e8,1e9,3\n-1e8,1e9,3\n"), "runtime: r.csv:3: column 'N': -1e8 must be positive");
  EXPECT_EQ(parse_error("N,D,loss\n1e8,1e9\n"), "runtime: r.csv:2: 2 fields, header has 3");
  EXPECT_EQ(parse_error("N,D,loss\n1e8,,3\n"), "runtime: r.csv:2: column 'D' is empty");
  EXPECT_NE(parse_error("N,D,los\n1e8,1e9,3\n").find("config: r.csv: no column 'loss' (set it with --col-loss"),
            std::string::npos);
  EXPECT_NE(parse_error("N,tokens,loss\n1e8,1e9,3\n").find("config: r.csv: needs a tokens column 'D' or a compute"),
            std::string::npos);
  EXPECT_NE(parse_error("N,D,loss\n1e8,1e9,3\n", true).find("no column 'teacher_loss'"), std::string::npos);
  EXPECT_EQ(parse_error("N,D,loss\n"), "runtime: r.csv: no data rows after the header");
  EXPECT_EQ(parse_error(""), "runtime: r.csv: empty results file (no header line)");
}

TEST(ScalingFit, DropHighestRemovesLargestLosses) {
  std::istringstream in("N,D,loss\n1,1,3\n2,2,5\n3,3,4\n4,4,1\n");
  auto t = drop_highest_loss(parse_results_csv(in, "r.csv", ColumnNames{}, false), 2);
  EXPECT_EQ(t.loss, (std::vector<double>{3, 1}));
  EXPECT_THROW(drop_highest_loss(t, 2), ConfigError);
}

TEST(ScalingFit, BootstrapIntervalsCoverTheFit) {
  SupervisedLaw truth{1.7, 400, 2000, 0.34, 0.37, 1.0};
  auto s = make_points([&](double N, double D, double) { return truth.loss(N, D); }, 0.01, 6);
  auto fit = fit_supervised(s.N, s.D, s.loss, LawForm::chinchilla, 1e-3);
  const std::vector<Eigen::VectorXd> start{fit.theta};
  auto b = bootstrap(int(s.N.size()), 8, 7, 0.95, [&](const std::vector<double>& w) {
    auto l = fit_supervised(s.N, s.D, s.loss, LawForm::chinchilla, 1e-3, w, start).law;
    return std::map<std::string, double>{{"alpha", l.alpha}, {"a", l.exponent_a()}};
  });
  EXPECT_EQ(b.failed, 0);
  ASSERT_EQ(b.intervals.count("alpha"), 1u);
  EXPECT_LE(b.intervals["alpha"].lo, b.intervals["alpha"].hi);
  EXPECT_GT(b.intervals["a"].stddev, 0);
  EXPECT_LT(b.intervals["a"].hi - b.intervals["a"].lo, 0.1);
}
