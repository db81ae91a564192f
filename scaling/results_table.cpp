#include "scaling/results_table.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <numeric>

#include "core/check.h"

namespace retort::scaling {
namespace {

// Splits one CSV line into fields: commas separate, "..." quotes (with "" for a quote).
std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char ch = line[i];
    if (quoted) {
      if (ch == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        out.back() += '"';
        ++i;
      } else if (ch == '"') {
        quoted = false;
      } else {
        out.back() += ch;
      }
    } else if (ch == '"') {
      quoted = true;
    } else if (ch == ',') {
      out.emplace_back();
    } else {
      out.back() += ch;
    }
  }
  for (auto& f : out) {
    size_t b = f.find_first_not_of(" \t\r"), e = f.find_last_not_of(" \t\r");
    f = (b == std::string::npos) ? "" : f.substr(b, e - b + 1);
  }
  return out;
}

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "'" : ", '") + x + "'";
  return s;
}

}  // namespace

ResultsTable parse_results_csv(std::istream& in, const std::string& source, const ColumnNames& cols,
                               bool need_teacher_loss) {
  ResultsTable t;
  t.source = source;
  std::string line;
  int lineno = 0;
  std::vector<std::string> header;
  while (header.empty() && std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    header = split_csv(line);
  }
  if (header.empty()) throw Error(str_cat(source, ": empty results file (no header line)"));

  auto find = [&](const std::string& name) -> int {
    auto it = std::find(header.begin(), header.end(), name);
    return it == header.end() ? -1 : int(it - header.begin());
  };
  auto require = [&](const std::string& name, const char* flag) {
    int i = find(name);
    if (i < 0)
      throw ConfigError(str_cat(source, ": no column '", name, "' (set it with ", flag,
                                "; columns are ", joined(header), ")"));
    return i;
  };
  const int in_n = require(cols.n, "--col-n");
  // `retort collect` writes final_val_loss: the default 'loss' falls back to it.
  const bool collected = cols.loss == "loss" && find("loss") < 0 && find("final_val_loss") >= 0;
  const int in_loss = require(collected ? "final_val_loss" : cols.loss, "--col-loss");
  const int in_d = find(cols.d), in_c = find(cols.c);
  if (in_d < 0 && in_c < 0)
    throw ConfigError(str_cat(source, ": needs a tokens column '", cols.d, "' or a compute column '",
                              cols.c, "' (D = C/(6N)); set --col-d or --col-c; columns are ",
                              joined(header)));
  const int in_t = need_teacher_loss ? require(cols.teacher_loss, "--col-teacher-loss") : -1;
  const int in_epochs = find(cols.data_epochs);
  t.c_from_column = in_c >= 0;
  std::vector<std::pair<int, std::string>> filters;
  for (const auto& [col, value] : cols.where) filters.emplace_back(require(col, "--where"), value);

  auto number = [&](const std::vector<std::string>& f, int col, const std::string& name) {
    const std::string& s = f[col];
    if (s.empty()) throw Error(str_cat(source, ":", lineno, ": column '", name, "' is empty"));
    size_t used = 0;
    double v = 0;
    try {
      v = std::stod(s, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != s.size() || !std::isfinite(v))
      throw Error(str_cat(source, ":", lineno, ": column '", name, "': '", s, "' is not a finite number"));
    if (v <= 0)
      throw Error(str_cat(source, ":", lineno, ": column '", name, "': ", s, " must be positive"));
    return v;
  };

  while (std::getline(in, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    auto f = split_csv(line);
    if (f.size() != header.size())
      throw Error(str_cat(source, ":", lineno, ": ", f.size(), " fields, header has ", header.size()));
    bool keep = true;
    for (const auto& [col, value] : filters) keep = keep && f[col] == value;
    if (!keep) continue;
    double n = number(f, in_n, cols.n);
    double d = 0, c = 0;
    if (in_c >= 0) c = number(f, in_c, cols.c);
    if (in_d >= 0) {
      d = number(f, in_d, cols.d);
      if (in_c < 0) c = 6.0 * n * d;
    } else {
      d = c / (6.0 * n);
    }
    t.N.push_back(n);
    t.D.push_back(d);
    t.C.push_back(c);
    t.loss.push_back(number(f, in_loss, cols.loss));
    if (in_t >= 0) t.teacher_loss.push_back(number(f, in_t, cols.teacher_loss));
    if (in_epochs >= 0)
      t.data_epochs.push_back(f[in_epochs].empty() ? std::nan("") : number(f, in_epochs, cols.data_epochs));
    t.line.push_back(lineno);
  }
  if (t.size() == 0)
    throw Error(str_cat(source, cols.where.empty() ? ": no data rows after the header" : ": no rows match --where"));
  return t;
}

ResultsTable read_results_csv(const std::string& path, const ColumnNames& cols, bool need_teacher_loss) {
  std::ifstream in(path);
  if (!in) throw Error(str_cat(path, ": cannot read results file"));
  return parse_results_csv(in, path, cols, need_teacher_loss);
}

ResultsTable drop_highest_loss(const ResultsTable& t, int k) {
  if (k <= 0) return t;
  if (size_t(k) >= t.size())
    throw ConfigError(str_cat("--drop-highest ", k, " would drop all ", t.size(), " rows of ", t.source));
  std::vector<size_t> order(t.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return t.loss[a] > t.loss[b]; });
  std::vector<bool> keep(t.size(), true);
  for (int i = 0; i < k; ++i) keep[order[i]] = false;
  return select_rows(t, keep);
}

ResultsTable select_rows(const ResultsTable& t, const std::vector<bool>& keep) {
  ResultsTable out;
  out.source = t.source;
  out.c_from_column = t.c_from_column;
  for (size_t i = 0; i < t.size(); ++i) {
    if (!keep[i]) continue;
    out.N.push_back(t.N[i]);
    out.D.push_back(t.D[i]);
    out.C.push_back(t.C[i]);
    out.loss.push_back(t.loss[i]);
    if (!t.teacher_loss.empty()) out.teacher_loss.push_back(t.teacher_loss[i]);
    if (!t.data_epochs.empty()) out.data_epochs.push_back(t.data_epochs[i]);
    out.line.push_back(t.line[i]);
  }
  return out;
}

}  // namespace retort::scaling
