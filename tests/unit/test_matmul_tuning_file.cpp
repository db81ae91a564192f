// The file of timed cuBLASLt choices (core/matmul_tuning_file.h) as the CPU sees it: no file
// presets nothing, a file of another identity is ignored (-1), a bad file is one Error naming
// the file and the key, nothing is written when nothing was timed or loaded, and loaded choices
// no product used are written again. (Presetting itself and a resume that takes the choices:
// tests/e2e/gpu_train.sh on a GPU or the simulator.)
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "core/check.h"
#include "core/matmul_tuning_file.h"
#include "core/ops.h"

using namespace retort;

namespace {

std::string temp_file(const std::string& name, const std::string& content) {
  const auto dir = std::filesystem::temp_directory_path() / "retort_matmul_tuning_test";
  std::filesystem::create_directories(dir);
  const std::string path = (dir / name).string();
  std::ofstream(path) << content;
  return path;
}

std::string error_of(const std::string& path) {
  try {
    load_matmul_choices(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const char* kProduct =
    R"({"key": "8,8,8,0,1,1,0,256,256,256,256", "shape": "matmul 8x8x8 NT", "candidates": 3,)"
    R"( "chosen": 2, "heuristic_us": 9.5, "chosen_us": 3.25})";

}  // namespace

// One test: the file module keeps what it loaded for the process, so the order matters.
TEST(MatmulTuningFile, LoadAndSave) {
  ASSERT_EQ(ops::matmul_tuning_identity(), "");  // no GPU here
  const auto kept = std::filesystem::temp_directory_path() / "retort_matmul_tuning_kept" /
                    "matmul_tuning" / "rank_00000.json";
  std::filesystem::remove_all(kept.parent_path().parent_path());
  save_matmul_choices(kept.string());  // nothing timed, nothing loaded: no file
  EXPECT_FALSE(std::filesystem::exists(kept));

  EXPECT_EQ(load_matmul_choices("/nonexistent/matmul_tuning/rank_00000.json"), 0);
  const std::string products = std::string("[") + kProduct + "]";
  EXPECT_EQ(load_matmul_choices(temp_file(
                "other.json", R"({"identity": "NVIDIA H200, cuBLASLt 130100", "products": )" +
                                  products + "}")),
            -1);
  std::string path = temp_file("garbage.json", "{not json");
  EXPECT_NE(error_of(path).find(path + ": not a matmul tuning file"), std::string::npos);
  path = temp_file("noproducts.json", R"({"identity": ""})");
  EXPECT_NE(error_of(path).find(path + ": key 'products'"), std::string::npos);
  path = temp_file("badchoice.json",
                   R"({"identity": "", "products": [{"key": "1", "shape": "s", "candidates": 3,)"
                   R"( "chosen": 3, "heuristic_us": 1, "chosen_us": 1}]})");
  EXPECT_NE(error_of(path).find(path + ": key 'chosen'"), std::string::npos) << error_of(path);
  path = temp_file("nokey.json", R"({"identity": "", "products": [{"shape": "s"}]})");
  EXPECT_NE(error_of(path).find(path + ": key 'key'"), std::string::npos) << error_of(path);

  // A file of this identity is preset, and kept by the next save though no product used it.
  EXPECT_EQ(load_matmul_choices(temp_file("same.json", R"({"identity": "", "products": )" +
                                                           products + "}")),
            1);
  save_matmul_choices(kept.string());
  EXPECT_EQ(load_matmul_choices(kept.string()), 1);
  std::ifstream in(kept);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("\"key\": \"8,8,8,0,1,1,0,256,256,256,256\""), std::string::npos) << text;
  EXPECT_NE(text.find("\"chosen\": 2"), std::string::npos) << text;
}
