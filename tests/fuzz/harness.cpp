// See harness.h.
#include "harness.h"

#include <hdf5.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "core/check.h"

namespace retort::fuzz {

const std::string& scratch_dir() {
  // Never destroyed: the atexit cleanup below runs after static destructors.
  static const std::string* dir = [] {
    const char* tmp = std::getenv("TMPDIR");
    auto* path = new std::string(std::string(tmp && *tmp ? tmp : "/tmp") + "/retort-fuzz-XXXXXX");
    if (!::mkdtemp(path->data())) {
      std::perror("mkdtemp");
      std::abort();
    }
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(scratch_dir(), ec);
    });
    return path;
  }();
  return *dir;
}

std::string scratch(const std::string& name) { return scratch_dir() + "/" + name; }

void clear_scratch() {
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(scratch_dir(), ec))
    std::filesystem::remove_all(e.path(), ec);
}

void bug(const std::string& what) {
  std::fprintf(stderr, "\n==== fuzz oracle: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

bool clean_or_error(const std::string& must_name, const std::function<void()>& read) {
  std::string msg;
  try {
    read();
    return true;
  } catch (const Error& e) {
    msg = e.what();
  } catch (const ConfigError& e) {
    msg = e.what();
  } catch (const std::exception& e) {
    bug(str_cat("unexpected exception type (not retort::Error): ", e.what()));
  } catch (...) {
    bug("unexpected non-std exception");
  }
  if (msg.find(must_name) == std::string::npos)
    bug(str_cat("error message does not name '", must_name, "': ", msg));
  if (msg.find('\n') != std::string::npos) bug(str_cat("error message is not one line: ", msg));
  return false;
}

void expect_no_open_hdf5_objects() {
  const ssize_t open = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
  if (open > 0) bug(str_cat(open, " HDF5 objects left open after the reader returned"));
}

}  // namespace retort::fuzz
