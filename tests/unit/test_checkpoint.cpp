// Checkpoint directories: round trip, latest/keep_last, atomic replacement, and the errors
// for missing, mismatched and corrupted files.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/checkpoint.h"
#include "core/fs.h"
#include "core/lr_schedule.h"
#include "core/ops.h"
#include "tests/unit/test_support.h"

namespace stdfs = std::filesystem;
using namespace retort;

namespace {

Tensor filled(const Shape& s, float v) {
  Tensor t = Tensor::empty(s);
  ops::fill(t, v);
  return t;
}

CheckpointData sample(float v) {
  CheckpointData d;
  d.model = {{"a.weight", filled({3, 4}, v)}, {"b.weight", filled({5}, v + 1)}};
  d.exp_avg = {{"a.weight", filled({3, 4}, 0.1f)}, {"b.weight", filled({5}, 0.2f)}};
  d.exp_avg_sq = {{"a.weight", filled({3, 4}, 0.3f)}, {"b.weight", filled({5}, 0.4f)}};
  d.config_yaml = "model:\n  d_model: 4\n";
  d.state = {{"step", 1}};
  return d;
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Checkpoint, RoundTripAndLatest) {
  std::string root = test::fresh_temp_dir("ckpt", "roundtrip");
  save_checkpoint(root, 10, sample(1.0f), 0);
  std::string dir = save_checkpoint(root, 20, sample(2.0f), 0);
  EXPECT_EQ(find_latest_checkpoint(root), dir);
  EXPECT_EQ(resolve_checkpoint_dir(root), dir);

  std::vector<NamedTensor> params{{"a.weight", Tensor::zeros({3, 4})}, {"b.weight", Tensor::zeros({5})}};
  load_model_weights(dir, params);
  EXPECT_EQ(params[0].tensor.host<float>()[7], 2.0f);
  EXPECT_EQ(params[1].tensor.host<float>()[4], 3.0f);
  std::vector<NamedTensor> m{{"a.weight", Tensor::zeros({3, 4})}, {"b.weight", Tensor::zeros({5})}};
  std::vector<NamedTensor> v{{"a.weight", Tensor::zeros({3, 4})}, {"b.weight", Tensor::zeros({5})}};
  auto state = load_training_state(dir, m, v);
  EXPECT_EQ(state["step"], 1);
  EXPECT_FLOAT_EQ(m[1].tensor.host<float>()[0], 0.2f);
  EXPECT_FLOAT_EQ(v[0].tensor.host<float>()[0], 0.3f);
}

TEST(Checkpoint, KeepLastPrunesOldest) {
  std::string root = test::fresh_temp_dir("ckpt", "keep");
  for (int s = 1; s <= 5; ++s) save_checkpoint(root, s, sample(s), 2);
  std::vector<std::string> names;
  for (auto& e : stdfs::directory_iterator(root)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"step_00000004", "step_00000005"}));
}

TEST(Checkpoint, KeepStepsAreNeverPruned) {  // checkpoint.keep_steps: branch points
  std::string root = test::fresh_temp_dir("ckpt", "keep_steps");
  for (int s = 1; s <= 6; ++s) save_checkpoint(root, s, sample(s), 2, {2, 3});
  std::vector<std::string> names;
  for (auto& e : stdfs::directory_iterator(root)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"step_00000002", "step_00000003", "step_00000005",
                                             "step_00000006"}));
  EXPECT_EQ(find_latest_checkpoint(root), root + "/step_00000006");
}

TEST(Checkpoint, IncompleteDirectoriesAreIgnored) {
  std::string root = test::fresh_temp_dir("ckpt", "incomplete");
  std::string good = save_checkpoint(root, 1, sample(1.0f), 0);
  // A crash mid-write leaves a temporary; a directory without state.json is not complete.
  stdfs::create_directories(root + "/step_00000002.tmp-123");
  stdfs::create_directories(root + "/step_00000003");
  EXPECT_EQ(find_latest_checkpoint(root), good);
}

TEST(Checkpoint, KeepLastNeverCountsIncompleteOnes) {
  // keep_last 1 after a failed newest write (only its temporary is left) and beside a
  // directory without state.json: the one complete checkpoint is never deleted.
  std::string root = test::fresh_temp_dir("ckpt", "keep_incomplete");
  std::string good = save_checkpoint(root, 10, sample(1.0f), 1);
  stdfs::create_directories(root + "/step_00000020.tmp-123");
  stdfs::create_directories(root + "/step_00000030");
  prune_checkpoints(root, 1);
  EXPECT_TRUE(stdfs::exists(good + "/state.json"));
  EXPECT_EQ(find_latest_checkpoint(root), good);
  // The next good write replaces it; then stale temporaries are removed.
  std::string next = save_checkpoint(root, 40, sample(2.0f), 1);
  EXPECT_FALSE(stdfs::exists(good));
  EXPECT_EQ(find_latest_checkpoint(root), next);
  remove_stale_checkpoint_temps(root);
  EXPECT_FALSE(stdfs::exists(root + "/step_00000020.tmp-123"));
  EXPECT_TRUE(stdfs::exists(root + "/step_00000030"));  // not ours to judge: left as it is
}

TEST(Checkpoint, StaleOldCopyIsPutBack) {
  // A crash between the two renames of a rewrite leaves step_N.old-PID and no step_N.
  std::string root = test::fresh_temp_dir("ckpt", "stale_old");
  std::string dir = save_checkpoint(root, 5, sample(3.0f), 0);
  stdfs::rename(dir, dir + ".old-999");
  EXPECT_EQ(find_latest_checkpoint(root), "");
  remove_stale_checkpoint_temps(root);
  EXPECT_EQ(find_latest_checkpoint(root), dir);
}

TEST(Checkpoint, FailedWriteLeavesNothingBehind) {
  // A parameter name HDF5 refuses makes the write fail midway: the temporary is removed and
  // the earlier checkpoint stays the latest.
  std::string root = test::fresh_temp_dir("ckpt", "failed_write");
  std::string good = save_checkpoint(root, 1, sample(1.0f), 1);
  CheckpointData bad = sample(2.0f);
  bad.model.push_back({"a.weight", filled({2}, 0.0f)});  // a duplicate dataset name
  EXPECT_NE(message_of([&] { save_checkpoint(root, 2, bad, 1); }).find("model.h5: dataset 'a.weight'"),
            std::string::npos);
  std::vector<std::string> names;
  for (auto& e : stdfs::directory_iterator(root)) names.push_back(e.path().filename().string());
  EXPECT_EQ(names, (std::vector<std::string>{"step_00000001"}));
  EXPECT_EQ(find_latest_checkpoint(root), good);
}

TEST(Checkpoint, ModelWeightsAreChecksummed) {
  std::string root = test::fresh_temp_dir("ckpt", "model_sha");
  std::string dir = save_checkpoint(root, 1, sample(1.0f), 0);
  {
    std::fstream f(dir + "/model.h5", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-8, std::ios::end);
    f.put('\x5a');
  }
  std::vector<NamedTensor> params{{"a.weight", Tensor::zeros({3, 4})}, {"b.weight", Tensor::zeros({5})}};
  EXPECT_NE(message_of([&] { load_model_weights(dir, params); }).find("model.h5: checksum mismatch"),
            std::string::npos);
}

TEST(Checkpoint, RewritingAStepReplacesItWhole) {
  std::string root = test::fresh_temp_dir("ckpt", "rewrite");
  save_checkpoint(root, 7, sample(1.0f), 0);
  std::string dir = save_checkpoint(root, 7, sample(5.0f), 0);
  std::vector<NamedTensor> params{{"a.weight", Tensor::zeros({3, 4})}, {"b.weight", Tensor::zeros({5})}};
  load_model_weights(dir, params);
  EXPECT_EQ(params[0].tensor.host<float>()[0], 5.0f);
  for (auto& e : stdfs::directory_iterator(root))
    EXPECT_EQ(e.path().filename().string(), "step_00000007");  // no leftovers
}

TEST(Checkpoint, ErrorsNameTheFileAndParameter) {
  std::string root = test::fresh_temp_dir("ckpt", "errors");
  std::string dir = save_checkpoint(root, 1, sample(1.0f), 0);

  std::vector<NamedTensor> wrong_shape{{"a.weight", Tensor::zeros({4, 3})}, {"b.weight", Tensor::zeros({5})}};
  EXPECT_NE(message_of([&] { load_model_weights(dir, wrong_shape); })
                .find("model.h5: parameter 'a.weight' has shape [3, 4], the model expects [4, 3]"),
            std::string::npos);
  std::vector<NamedTensor> missing{{"a.weight", Tensor::zeros({3, 4})}, {"c.weight", Tensor::zeros({5})}};
  EXPECT_NE(message_of([&] { load_model_weights(dir, missing); }).find("missing parameter 'c.weight'"),
            std::string::npos);
  std::vector<NamedTensor> fewer{{"a.weight", Tensor::zeros({3, 4})}};
  EXPECT_NE(message_of([&] { load_model_weights(dir, fewer); }).find("unexpected parameter 'b.weight'"),
            std::string::npos);

  // Flip a byte of the optimizer state: the checksum catches it.
  {
    std::fstream f(dir + "/optimizer.h5", std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-8, std::ios::end);
    f.put('\x5a');
  }
  std::vector<NamedTensor> m{{"a.weight", Tensor::zeros({3, 4})}, {"b.weight", Tensor::zeros({5})}};
  std::vector<NamedTensor> v{{"a.weight", Tensor::zeros({3, 4})}, {"b.weight", Tensor::zeros({5})}};
  EXPECT_NE(message_of([&] { load_training_state(dir, m, v); }).find("optimizer.h5: checksum mismatch"),
            std::string::npos);
  EXPECT_NE(message_of([&] { resolve_checkpoint_dir(root + "/nothing"); }).find("no such checkpoint"),
            std::string::npos);
}

TEST(LrSchedule, WarmupThenCosineToFloor) {
  LrSchedule s{1.0, 0.1, 10, 110};
  EXPECT_DOUBLE_EQ(s.at(0), 0.1);
  EXPECT_DOUBLE_EQ(s.at(9), 1.0);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);
  EXPECT_NEAR(s.at(60), 0.55, 1e-12);  // halfway through the decay
  EXPECT_NEAR(s.at(110), 0.1, 1e-12);
  for (int i = 11; i < 110; ++i) EXPECT_LT(s.at(i), s.at(i - 1));
}

// wsd: the peak until the last decay_steps steps, which end at the floor; the rates before the
// decay are the same for any train.steps (what makes a cooldown branch the shorter run).
TEST(LrSchedule, WarmupStableDecayLinearAndSqrt) {
  using D = LrSchedule::Decay;
  const LrSchedule lin{1.0, 0.1, 10, 110, D::Linear, 20}, sq{1.0, 0.1, 10, 110, D::Sqrt, 20};
  const LrSchedule longer{1.0, 0.1, 10, 400, D::Linear, 80};
  EXPECT_DOUBLE_EQ(lin.at(0), 0.1);
  for (int i = 9; i < 90; ++i) {
    EXPECT_DOUBLE_EQ(lin.at(i), 1.0) << i;
    EXPECT_DOUBLE_EQ(sq.at(i), 1.0) << i;
  }
  for (int i = 0; i < 90; ++i) EXPECT_EQ(lin.at(i), longer.at(i)) << i;
  EXPECT_NEAR(lin.at(90), 0.1 + 0.9 * (1 - 1.0 / 20), 1e-12);
  EXPECT_NEAR(lin.at(99), 0.1 + 0.9 * 0.5, 1e-12);
  EXPECT_NEAR(sq.at(99), 0.1 + 0.9 * (1 - std::sqrt(0.5)), 1e-12);
  EXPECT_NEAR(lin.at(109), 0.1, 1e-12);
  EXPECT_NEAR(sq.at(109), 0.1, 1e-12);
  for (int i = 91; i < 110; ++i) {
    EXPECT_LT(lin.at(i), lin.at(i - 1));
    EXPECT_LT(sq.at(i), sq.at(i - 1));
    if (i < 109) EXPECT_LT(sq.at(i), lin.at(i));  // 1 − √p < 1 − p for p in (0, 1)
  }
}
