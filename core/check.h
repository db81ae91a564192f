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

// User-supplied text (a YAML scalar, a key, a parser message) made safe for a one-line error:
// control characters escaped (\n, \t, \xNN) and anything past `max` characters cut to "...".
inline std::string printable(const std::string& text, size_t max = 80) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < text.size() && i < max; ++i) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c < 0x20 || c == 0x7f) out += std::string("\\x") + hex[c >> 4] + hex[c & 15];
    else out += char(c);
  }
  if (text.size() > max) out += "...";
  return out;
}

}  // namespace retort

#define RETORT_CHECK(cond, ...)                                                         \
  do {                                                                                  \
    if (!(cond))                                                                        \
      throw ::retort::Error(::retort::str_cat(__FILE__, ":", __LINE__, ": check `" #cond \
                                              "` failed: ", ##__VA_ARGS__));            \
  } while (0)
