#include "core/progress.h"

#include <unistd.h>

#include <cstdio>

#include "core/check.h"

namespace retort {

Progress::Progress(std::string what, int64_t total, int64_t every, int64_t first, bool enabled)
    : what_(std::move(what)),
      total_(total),
      every_(every > 0 ? every : 1),
      start_done_(first),
      enabled_(enabled),
      tty_(::isatty(STDOUT_FILENO)),
      start_(std::chrono::steady_clock::now()) {}

std::string Progress::format_duration(double s) {
  if (s < 0 || s != s) return "?";
  int64_t t = static_cast<int64_t>(s + 0.5);
  if (t >= 3600) return str_cat(t / 3600, "h", (t % 3600) / 60, "m");
  if (t >= 60) return str_cat(t / 60, "m", t % 60, "s");
  return str_cat(t, "s");
}

void Progress::update(int64_t done, const std::string& detail) {
  if (!enabled_) return;
  if (!tty_ && done % every_ != 0 && done != total_) return;
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  int64_t progressed = done - start_done_;
  double eta = progressed > 0 ? elapsed / progressed * (total_ - done) : -1;
  std::string line = str_cat(what_, " ", done, "/", total_, " | ", detail, " | ETA ",
                             format_duration(eta));
  if (tty_) {
    std::printf("\r\033[K%s", line.c_str());
    live_ = true;
  } else {
    std::printf("%s\n", line.c_str());
  }
  std::fflush(stdout);
}

void Progress::message(const std::string& line) {
  if (!enabled_) return;
  if (live_) std::printf("\r\033[K");
  std::printf("%s\n", line.c_str());
  live_ = false;
  std::fflush(stdout);
}

void Progress::finish() {
  if (live_) std::printf("\n");
  live_ = false;
  std::fflush(stdout);
}

}  // namespace retort
