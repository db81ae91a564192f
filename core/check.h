// Error checking that reports file:line. Two kinds of failure:
//   RETORT_CHECK(cond, msg...)      internal invariant / runtime failure -> retort::Error (exit 1)
//   throw ConfigError(msg)          bad user input (config, usage)       -> exit 2
// Messages are composed with operator<< on the arguments.
#pragma once
#include <sstream>
#include <stdexcept>
#include <string>

namespace retort {

// Runtime error (exit code 1): bad file, I/O failure, broken invariant.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Usage or configuration error (exit code 2).
struct ConfigError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <class... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  (os << ... << args);
  return os.str();
}

}  // namespace retort

#define RETORT_CHECK(cond, ...)                                                         \
  do {                                                                                  \
    if (!(cond))                                                                        \
      throw ::retort::Error(::retort::str_cat(__FILE__, ":", __LINE__, ": check `" #cond \
                                              "` failed: ", ##__VA_ARGS__));            \
  } while (0)
