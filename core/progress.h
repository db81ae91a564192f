// Progress reporting for long jobs: on a terminal one live line rewritten in place
// ("step 120/1000 | loss 3.412 | 5,120 tok/s | ETA 2m31s"); otherwise plain log lines.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace retort {

class Progress {
 public:
  // `every`: in non-terminal mode print one line per `every` updates (and the last).
  // `first`: items already done before this process started (a resumed run).
  Progress(std::string what, int64_t total, int64_t every, int64_t first = 0, bool enabled = true);
  // `done` items finished so far (absolute), `detail` e.g. "loss 3.41 | 5120 tok/s".
  void update(int64_t done, const std::string& detail);
  // Print a message without breaking the live line.
  void message(const std::string& line);
  void finish();
  static std::string format_duration(double seconds);

 private:
  std::string what_;
  int64_t total_, every_, start_done_;
  bool enabled_, tty_, live_ = false;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace retort
