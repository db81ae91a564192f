// See harness.h.
#include "harness.h"

#include <hdf5.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
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

const std::vector<std::pair<std::string, Shape>>& tiny_params() {
  static const std::vector<std::pair<std::string, Shape>> params = {
      {"model.embed_tokens.weight", {6, 4}},
      {"model.layers.0.mlp.up_proj.weight", {5, 4}},
      {"model.norm.weight", {4}},
  };
  return params;
}

std::vector<NamedTensor> tiny_param_zeros() {
  std::vector<NamedTensor> out;
  for (const auto& [name, shape] : tiny_params()) out.push_back({name, Tensor::zeros(shape)});
  return out;
}

void flip_bytes(FuzzedDataProvider& in, const std::string& path) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(0, std::ios::end);
  const int64_t size = f.tellg();
  const int flips = in.ConsumeIntegralInRange(1, 4);
  for (int i = 0; i < flips && size > 0; ++i) {
    const int64_t at = in.ConsumeIntegralInRange<int64_t>(0, size - 1);
    f.seekg(at);
    const char c = char(f.get() ^ in.ConsumeIntegralInRange(1, 255));
    f.seekp(at);
    f.put(c);
  }
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
