// Input expansion (glob(3), std::filesystem) and document reading (nlohmann::json for JSONL).
#include "data/text_sources.h"

#include <glob.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "core/check.h"

namespace fs = std::filesystem;

namespace retort {
namespace {

bool is_pattern(const std::string& s) { return s.find_first_of("*?[") != std::string::npos; }

bool hidden(const fs::path& p) {
  std::string n = p.filename().string();
  return !n.empty() && n[0] == '.';
}

void add_directory(const std::string& dir, std::vector<std::string>& out) {
  std::vector<std::string> files;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::follow_directory_symlink, ec), end;
  if (ec) throw Error(str_cat(dir, ": cannot list directory: ", ec.message()));
  for (; it != end; it.increment(ec)) {
    if (ec) throw Error(str_cat(dir, ": cannot list directory: ", ec.message()));
    if (hidden(it->path())) {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file()) files.push_back(it->path().string());
  }
  std::sort(files.begin(), files.end());
  out.insert(out.end(), files.begin(), files.end());
}

bool is_blank(const std::string& s) {
  return s.find_first_not_of(" \t\r\n\f\v") == std::string::npos;
}

std::string extension_lower(const std::string& path) {
  std::string e = fs::path(path).extension().string();
  std::transform(e.begin(), e.end(), e.begin(), [](unsigned char c) { return std::tolower(c); });
  return e;
}

}  // namespace

std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> out;
  for (const std::string& in : inputs) {
    std::error_code ec;
    if (fs::is_directory(in, ec)) {
      add_directory(in, out);
    } else if (fs::exists(in, ec)) {
      out.push_back(in);
    } else if (is_pattern(in)) {
      glob_t g{};
      int rc = glob(in.c_str(), 0, nullptr, &g);
      std::vector<std::string> matches(g.gl_pathv, g.gl_pathv + g.gl_pathc);
      globfree(&g);
      if (rc == GLOB_NOMATCH || matches.empty())
        throw Error(str_cat("input pattern '", in, "' matched no files"));
      if (rc != 0) throw Error(str_cat("input pattern '", in, "': glob failed"));
      std::sort(matches.begin(), matches.end());
      for (const std::string& m : matches) {
        if (fs::is_directory(m, ec)) add_directory(m, out);
        else out.push_back(m);
      }
    } else {
      throw Error(str_cat("input '", in, "': no such file or directory"));
    }
  }
  // Drop duplicates, keeping the first occurrence.
  std::set<std::string> seen;
  std::vector<std::string> unique;
  for (auto& p : out)
    if (seen.insert(fs::weakly_canonical(p).string()).second) unique.push_back(p);
  return unique;
}

void for_each_document(const std::vector<std::string>& inputs, const std::string& jsonl_field,
                       const std::function<void(Document&&)>& each) {
  for (const std::string& path : expand_inputs(inputs)) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(str_cat(path, ": cannot open for reading"));
    if (extension_lower(path) == ".jsonl") {
      std::string line;
      int64_t lineno = 0;
      while (std::getline(in, line)) {
        ++lineno;
        if (is_blank(line)) continue;
        std::string where = str_cat(path, ":", lineno);
        nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (j.is_discarded()) throw Error(str_cat(where, ": invalid JSON"));
        if (!j.is_object()) throw Error(str_cat(where, ": expected a JSON object"));
        auto it = j.find(jsonl_field);
        if (it == j.end())
          throw Error(str_cat(where, ": no field '", jsonl_field, "' (tokenize.jsonl_field)"));
        if (!it->is_string())
          throw Error(str_cat(where, ": field '", jsonl_field, "' is not a string"));
        std::string text = it->get<std::string>();
        if (!is_blank(text)) each({std::move(text), where});
      }
      if (in.bad()) throw Error(str_cat(path, ": read error"));
    } else {
      std::ostringstream ss;
      ss << in.rdbuf();
      if (in.bad()) throw Error(str_cat(path, ": read error"));
      std::string text = ss.str();
      if (!is_blank(text)) each({std::move(text), path});
    }
  }
}

}  // namespace retort
