#include "scaling/plot_runner.h"

#include <cstdlib>
#include <filesystem>

namespace retort::scaling {
namespace {

// Single-quotes a string for /bin/sh.
std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

bool run_plot_script(const std::string& fit_json, std::string* why) {
  const char* env = std::getenv("RETORT_PLOT_SCRIPT");
  const std::string script = env ? env : RETORT_PLOT_SCRIPT;
  const std::string python = "/usr/bin/python3";  // the first python3 on PATH may lack matplotlib
  if (!std::filesystem::exists(script)) {
    *why = "plot script " + script + " not found";
    return false;
  }
  if (!std::filesystem::exists(python)) {
    *why = python + " not found";
    return false;
  }
  if (std::system((python + " -c 'import matplotlib' >/dev/null 2>&1").c_str()) != 0) {
    *why = "matplotlib is not installed for " + python + " (apt-get install python3-matplotlib)";
    return false;
  }
  int rc = std::system((python + " " + shell_quote(script) + " " + shell_quote(fit_json)).c_str());
  if (rc != 0) {
    *why = "plot script exited with status " + std::to_string(rc);
    return false;
  }
  return true;
}

}  // namespace retort::scaling
