#include "launch/teacher_tokenizer.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>

#include "core/check.h"
#include "core/config.h"
#include "core/hdf5.h"
#include "core/sha256.h"

namespace retort {

TeacherTokenizer teacher_tokenizer(const LoadedModel& teacher) {
  namespace stdfs = std::filesystem;
  const stdfs::path dir(teacher.dir);
  if (stdfs::exists(dir / "config.json") && !stdfs::exists(dir / "config.yaml")) {  // transformers
    TeacherTokenizer t;
    for (const char* name : {"tokenizer.model", "tokenizer.json"})
      if (stdfs::exists(dir / name)) {
        t.file += str_cat(t.file.empty() ? "" : " or ", (dir / name).string());
        t.sha256.push_back(sha256_file((dir / name).string()));
      }
    return t;
  }
  YAML::Node root = YAML::Load(teacher.config_yaml);
  for (const char* key : {"val", "train"}) {
    YAML::Node n = root["data"] ? root["data"][key] : YAML::Node();
    if (!n || !n.IsScalar() || n.as<std::string>().empty()) continue;
    const std::string path = n.as<std::string>();
    if (!stdfs::exists(path)) continue;
    h5::File f = h5::File::open_read(path);
    if (f.has_attr("tokenizer_sha256")) return {path, {f.attr_string("tokenizer_sha256")}};
  }
  return {teacher.dir + "/config.yaml", {}};
}

void check_same_tokenizer(const std::string& a_file, const std::string& a_sha, const std::string& b_file,
                          const std::string& b_sha, const char* why) {
  if (a_sha == "none" || b_sha == "none" || a_sha == b_sha) return;
  throw ConfigError(str_cat("tokenizer mismatch: ", a_file, " has tokenizer_sha256 ", a_sha, " but ", b_file,
                            " has ", b_sha, " (", why, ")"));
}

void check_same_tokenizer(const TeacherTokenizer& teacher, const std::string& b_file, const std::string& b_sha,
                          const char* why) {
  const auto& shas = teacher.sha256;
  if (shas.empty() || std::find(shas.begin(), shas.end(), b_sha) != shas.end()) return;
  std::string all = shas[0];
  for (size_t i = 1; i < shas.size(); ++i) all += " or " + shas[i];
  check_same_tokenizer(teacher.file, all, b_file, b_sha, why);
}

}  // namespace retort
