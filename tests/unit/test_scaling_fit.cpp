// Scaling-law fits (retort fit): objective gradients, recovery of known coefficients from
// synthetic data, the Chinchilla refit of Besiroglu et al. (2024), and error paths.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <random>
#include <sstream>

#include "core/check.h"
#include "scaling/chinchilla_fit.h"
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
