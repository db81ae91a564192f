// The run directory of SPEC §6:
//   config.resolved.yaml   the config after defaults and --set
//   metrics.jsonl          one JSON object per logged step (eval lines carry val_loss)
//   summary.json           written at the end (atomically)
//   checkpoints/           step_NNNNNNNN/ directories (core/checkpoint.h)
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>

namespace retort {

class RunDir {
 public:
  // `create`: make the directory (the writing rank); other ranks only read paths.
  RunDir(std::string path, bool create);
  const std::string& path() const { return path_; }
  std::string checkpoints() const { return path_ + "/checkpoints"; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

  // Start metrics.jsonl, first dropping lines with step > keep_up_to_step (a resumed run
  // rewrites the steps after its checkpoint). keep_up_to_step < 0: start empty.
  void open_metrics(int64_t keep_up_to_step);
  // Appends one line (open, write, close: no file stays open for writing, so the disk can be
  // remounted read-only; a failed write is an Error naming the file and the OS reason).
  void log_metrics(const nlohmann::json& line);
  void write_json(const std::string& name, const nlohmann::json& value) const;  // atomic

 private:
  std::string path_;
};

}  // namespace retort
