#include "launch/run_dir.h"

#include <filesystem>
#include <sstream>

#include "core/check.h"
#include "core/fs.h"

namespace retort {

RunDir::RunDir(std::string path, bool create) : path_(std::move(path)) {
  if (!create) return;
  std::error_code ec;
  std::filesystem::create_directories(path_, ec);
  if (ec) throw Error(str_cat(path_, ": cannot create run directory: ", ec.message()));
}

void RunDir::open_metrics(int64_t keep_up_to_step) {
  std::string path = file("metrics.jsonl");
  std::string kept;
  if (keep_up_to_step >= 0 && std::filesystem::exists(path)) {
    std::istringstream in(fs::read_file(path));
    std::string line;
    while (std::getline(in, line)) {
      auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
      if (j.is_object() && j.value("step", int64_t{0}) <= keep_up_to_step) kept += line + "\n";
    }
  }
  fs::write_file_atomic(path, kept);
  metrics_.open(path, std::ios::app);
  if (!metrics_) throw Error(str_cat(path, ": cannot open for appending"));
}

void RunDir::log_metrics(const nlohmann::json& line) {
  metrics_ << line.dump() << "\n";
  metrics_.flush();
}

void RunDir::write_json(const std::string& name, const nlohmann::json& value) const {
  fs::write_file_atomic(file(name), value.dump(2) + "\n");
}

}  // namespace retort
