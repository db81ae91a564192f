#include "launch/run_dir.h"

#include <filesystem>
#include <sstream>

#include "core/check.h"
#include "core/fs.h"

namespace retort {

RunDir::RunDir(std::string path, bool create) : path_(std::move(path)) {
  if (!create) return;
  fs::create_directories(path_);
}

void RunDir::open_metrics(int64_t keep_up_to_step) {
  std::string path = file("metrics.jsonl");
  std::string kept;
  if (keep_up_to_step >= 0 && std::filesystem::exists(path)) {
    std::istringstream in(fs::read_file(path));
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.contains("step") && j["step"].is_number_integer() &&
          j["step"].get<int64_t>() <= keep_up_to_step)
        kept += line + "\n";
    }
  }
  fs::write_file_atomic(path, kept);
}

void RunDir::log_metrics(const nlohmann::json& line) {
  fs::append_file(file("metrics.jsonl"), line.dump() + "\n");
}

void RunDir::write_json(const std::string& name, const nlohmann::json& value) const {
  fs::write_file_atomic(file(name), value.dump(2) + "\n");
}

}  // namespace retort
