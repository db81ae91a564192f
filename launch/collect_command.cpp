// retort collect DIR: one row per training run of a sweep (plan.csv) with what its run
// directory reports → DIR/results.csv (docs/SWEEPS.md). Status: complete (summary.json says so),
// incomplete (the run dir exists but is not complete: printed with its latest checkpoint's
// step), missing (never started).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "core/check.h"
#include "core/checkpoint.h"
#include "core/fs.h"
#include "launch/commands.h"

namespace retort {

namespace {

namespace stdfs = std::filesystem;
using Row = std::map<std::string, std::string>;

// Splits CSV text into rows of fields (RFC 4180 quoting).
std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
  std::vector<std::vector<std::string>> rows(1);
  std::string field;
  bool quoted = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') field += '"', ++i;
      else if (c == '"') quoted = false;
      else field += c;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      rows.back().push_back(field), field.clear();
    } else if (c == '\n') {
      rows.back().push_back(field), field.clear();
      rows.emplace_back();
    } else if (c != '\r') {
      field += c;
    }
  }
  if (!field.empty() || !rows.back().empty()) rows.back().push_back(field);
  if (rows.back().empty()) rows.pop_back();
  return rows;
}

std::string csv(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

// The run's summary.json when it says "complete".
std::optional<nlohmann::json> complete_summary(const std::string& run_dir) {
  const std::string path = run_dir + "/summary.json";
  if (!stdfs::exists(path)) return std::nullopt;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(fs::read_file(path));
  } catch (const nlohmann::json::exception& e) {
    throw Error(path + ": not valid JSON (" + e.what() + ")");
  }
  if (!j.is_object() || !j.contains("status") || j["status"] != "complete") return std::nullopt;
  return j;
}

std::string json_num(const nlohmann::json& j, const char* key, const std::string& path) {
  if (!j.contains(key) || !j[key].is_number())
    throw Error(path + ": key '" + key + "' is missing or not a number");
  return num(j[key].get<double>());
}

// The step of a run's latest complete checkpoint (where --resume continues), 0 when none.
int64_t checkpoint_step(const std::string& run_dir) {
  const std::string latest = find_latest_checkpoint(run_dir + "/checkpoints");
  return latest.empty() ? 0 : checkpoint_dir_step(latest);
}

// The last step metrics.jsonl logged, or -1 (no file, no line with a step).
int64_t logged_step(const std::string& run_dir) {
  const std::string path = run_dir + "/metrics.jsonl";
  if (!stdfs::exists(path)) return -1;
  std::istringstream lines(fs::read_file(path));
  int64_t last = -1;
  for (std::string line; std::getline(lines, line);) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    if (j.is_object() && j.contains("step") && j["step"].is_number_integer()) last = j["step"].get<int64_t>();
  }
  return last;
}

// Seed replicates (sweep `seeds:`): how far final_val_loss moves between seeds of one point,
// as the sample standard deviation over its complete seeds; median and largest over points.
void print_seed_spread(const std::map<std::string, std::vector<double>>& replicates) {
  std::vector<std::pair<double, std::string>> spread;
  size_t seeds_min = SIZE_MAX, seeds_max = 0;
  for (const auto& [point, loss] : replicates) {
    if (loss.size() < 2) continue;
    double mean = 0, ss = 0;
    for (double l : loss) mean += l / double(loss.size());
    for (double l : loss) ss += (l - mean) * (l - mean);
    spread.emplace_back(std::sqrt(ss / double(loss.size() - 1)), point);
    seeds_min = std::min(seeds_min, loss.size()), seeds_max = std::max(seeds_max, loss.size());
  }
  if (spread.empty()) return;
  std::sort(spread.begin(), spread.end());
  const size_t n = spread.size();
  const double median = n % 2 ? spread[n / 2].first : (spread[n / 2 - 1].first + spread[n / 2].first) / 2;
  std::printf("seeds: %zu points with %zu%s complete seeds; final_val_loss std across seeds: median %.4g, "
              "largest %.4g (%s)\n",
              n, seeds_min, seeds_max > seeds_min ? str_cat("-", seeds_max).c_str() : "", median,
              spread.back().first, spread.back().second.c_str());
}

}  // namespace

int run_collect(const std::string& dir) {
  const std::string plan_path = dir + "/plan.csv";
  if (!stdfs::exists(plan_path))
    throw Error(plan_path + ": not found; DIR must be a sweep directory written by `retort sweep`");
  const auto table = parse_csv(fs::read_file(plan_path));
  if (table.empty()) throw Error(plan_path + ": empty");
  const std::vector<std::string>& header = table[0];
  std::vector<Row> plan;
  for (size_t i = 1; i < table.size(); ++i) {
    if (table[i].size() != header.size())
      throw Error(str_cat(plan_path, ": line ", i + 1, " has ", table[i].size(), " fields, the header ",
                          header.size()));
    Row r;
    for (size_t k = 0; k < header.size(); ++k) r[header[k]] = table[i][k];
    plan.push_back(r);
  }
  for (const char* k : {"name", "stage", "protocol", "N", "N_nonemb", "D", "C", "steps", "run_dir", "flops_mode"})
    if (std::find(header.begin(), header.end(), k) == header.end())
      throw Error(plan_path + ": column '" + k + "' is missing (written by another version of retort sweep?)");

  struct Result {
    const Row* plan;
    std::string N, N_nonemb, D, C, loss, wall, status, epochs;
    int64_t step = 0;  // steps trained: all when complete, else the latest checkpoint's
  };
  std::vector<Result> results;
  std::map<std::string, std::string> final_loss;  // name → final_val_loss of complete runs
  int64_t complete = 0, incomplete = 0, missing = 0;
  std::string progress;  // a line per incomplete run
  for (const Row& r : plan) {
    if (r.at("stage") != "train" && r.at("stage") != "student") continue;  // corpora, totals
    const std::string& run_dir = r.at("run_dir");
    // data_epochs: plans written before it, or without data.train at plan time, have none
    const auto planned_epochs = r.find("data_epochs");
    Result x{&r, r.at("N"), r.at("N_nonemb"), r.at("D"), r.at("C"), "", "", "",
             planned_epochs == r.end() ? "" : planned_epochs->second};
    const std::string& steps = r.at("steps");
    if (auto s = complete_summary(run_dir)) {
      const std::string path = run_dir + "/summary.json";
      x.N = json_num(*s, "params", path);
      x.N_nonemb = json_num(*s, "params_nonembedding", path);
      x.D = json_num(*s, "tokens_seen", path);
      x.C = json_num(*s, r.at("flops_mode") == "6N" ? "flops_6N" : "flops", path);
      x.loss = json_num(*s, "final_val_loss", path);
      x.wall = json_num(*s, "wall_s", path);
      if (s->contains("data_epochs")) x.epochs = json_num(*s, "data_epochs", path);
      x.status = "complete", ++complete;
      x.step = std::stoll(steps);
      final_loss[r.at("name")] = x.loss;
    } else if (stdfs::exists(run_dir)) {
      x.status = "incomplete", ++incomplete;
      x.step = checkpoint_step(run_dir);
      const int64_t logged = logged_step(run_dir);
      progress += str_cat("  ", r.at("name"), ": ", x.step > 0 ? str_cat("checkpoint at step ", x.step) : "no checkpoint yet",
                          " of ", steps, logged > x.step ? str_cat(" (logged to step ", logged, ")") : "", "\n");
    } else {
      x.status = "missing", ++missing;
    }
    results.push_back(x);
  }
  std::string out =
      "name,protocol,N,N_nonemb,D,C,final_val_loss,teacher_loss,wall_s,status,stage,size,budget,"
      "tokens_per_param,teacher,data_epochs,step,steps,seed,point\n";
  auto field = [](const Row& r, const char* key) {  // columns older plans lack: empty
    const auto it = r.find(key);
    return it == r.end() ? std::string() : it->second;
  };
  for (const Result& x : results) {
    const Row& r = *x.plan;
    auto teacher = final_loss.find(r.at("teacher"));
    out += str_cat(csv(r.at("name")), ",", r.at("protocol"), ",", x.N, ",", x.N_nonemb, ",", x.D, ",",
                   x.C, ",", x.loss, ",", teacher == final_loss.end() ? "" : teacher->second, ",",
                   x.wall, ",", x.status, ",", r.at("stage"), ",", r.at("size"), ",", r.at("budget"),
                   ",", r.at("tokens_per_param"), ",", r.at("teacher"), ",", x.epochs, ",", x.step, ",",
                   r.at("steps"), ",", field(r, "seed"), ",", csv(field(r, "point")), "\n");
  }
  const int64_t n = static_cast<int64_t>(results.size());
  fs::write_file_atomic(dir + "/results.csv", out);
  std::printf("collect: %lld runs: %lld complete, %lld incomplete, %lld missing → %s/results.csv\n",
              (long long)n, (long long)complete, (long long)incomplete, (long long)missing, dir.c_str());
  if (!progress.empty()) std::printf("incomplete (--resume continues from the checkpoint):\n%s", progress.c_str());
  std::map<std::string, std::vector<double>> replicates;  // point → final losses of its complete seeds
  for (const Result& x : results)
    if (x.status == "complete" && !field(*x.plan, "point").empty())
      replicates[field(*x.plan, "point")].push_back(std::stod(x.loss));
  print_seed_spread(replicates);
  return 0;
}

}  // namespace retort
