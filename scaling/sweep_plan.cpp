#include "scaling/sweep_plan.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "core/check.h"
#include "core/checkpoint.h"
#include "core/edit_distance.h"
#include "core/lr_schedule.h"

namespace retort {

namespace {

namespace stdfs = std::filesystem;

// Keys that the planner sets per run; the sweep file may not fix them through `set:`.
const std::set<std::string> kPlannerKeys = {
    "run.dir",        "model.d_model",      "model.n_layers", "model.n_heads",
    "model.n_kv_heads", "model.head_dim",   "model.d_ff",     "train.steps",
    "train.warmup_steps", "eval.every",     "checkpoint.every", "train.branch_from",
    "checkpoint.keep_steps", "generate.teacher", "generate.data", "generate.out", "generate.num_sequences",
    "generate.seq_len", "distill.corpus", "distill.teacher"};
// Keys the sweep file has its own maps for (generate:, distill:), written into every corpus or
// student config.
const std::set<std::string> kSweepMapKeys = {"generate.mode", "generate.k", "distill.lambda",
                                             "distill.temperature", "distill.tail"};

// Reads typed values out of the sweep YAML; every failure is "FILE: key 'K': what".
class Reader {
 public:
  explicit Reader(std::string source) : source_(std::move(source)) {}

  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw ConfigError(source_ + ": key '" + key + "': " + what);
  }

  // Unknown keys of a map are errors with the nearest allowed key as a suggestion.
  void check_keys(const YAML::Node& map, const std::string& prefix,
                  const std::vector<std::string>& allowed) const {
    if (!map.IsMap()) fail(prefix.empty() ? "(top level)" : prefix, "must be a map");
    for (const auto& kv : map) {
      const std::string k = kv.first.as<std::string>();
      if (std::find(allowed.begin(), allowed.end(), k) != allowed.end()) continue;
      std::string best;
      size_t best_d = SIZE_MAX;
      for (const std::string& a : allowed)
        if (size_t d = edit_distance(k, a); d < best_d) best_d = d, best = a;
      std::string hint = best_d <= std::max<size_t>(2, k.size() / 3)
                             ? " (did you mean '" + join(prefix, best) + "'?)"
                             : " (see docs/SWEEPS.md for the known keys)";
      throw ConfigError(source_ + ": unknown key '" + join(prefix, k) + "'" + hint);
    }
  }

  static std::string join(const std::string& prefix, const std::string& k) {
    return prefix.empty() ? k : prefix + "." + k;
  }

  std::string scalar(const YAML::Node& n, const std::string& key) const {
    if (!n.IsScalar()) fail(key, "must be a single value");
    return n.Scalar();
  }
  std::string get_string(const YAML::Node& n, const std::string& key) const {
    return scalar(n, key);
  }
  int64_t get_int(const YAML::Node& n, const std::string& key, int64_t min) const {
    std::string s = scalar(n, key);
    int64_t v = 0;
    try {
      size_t used = 0;
      v = std::stoll(s, &used);
      if (used != s.size()) throw std::invalid_argument(s);
    } catch (const std::exception&) {
      fail(key, "must be an integer, got '" + s + "'");
    }
    if (v < min) fail(key, str_cat("must be >= ", min, ", got ", v));
    return v;
  }
  double get_number(const YAML::Node& n, const std::string& key) const {
    std::string s = scalar(n, key);
    double v = 0;
    try {
      size_t used = 0;
      v = std::stod(s, &used);
      if (used != s.size()) throw std::invalid_argument(s);
    } catch (const std::exception&) {
      fail(key, "must be a number, got '" + s + "'");
    }
    if (!std::isfinite(v)) fail(key, "must be finite, got '" + s + "'");
    return v;
  }
  double get_positive(const YAML::Node& n, const std::string& key) const {
    double v = get_number(n, key);
    if (!(v > 0)) fail(key, "must be > 0, got " + n.Scalar());
    return v;
  }
  // A list (or one value) of positive numbers / integers >= 1, non-empty.
  std::vector<double> positive_list(const YAML::Node& n, const std::string& key) const {
    std::vector<double> out;
    if (n.IsSequence()) {
      for (size_t i = 0; i < n.size(); ++i) out.push_back(get_positive(n[i], str_cat(key, "[", i, "]")));
    } else {
      out.push_back(get_positive(n, key));
    }
    if (out.empty()) fail(key, "must not be empty");
    return out;
  }
  std::vector<int64_t> size_list(const YAML::Node& n, const std::string& key) const {
    std::vector<int64_t> out;
    if (n.IsSequence()) {
      for (size_t i = 0; i < n.size(); ++i) out.push_back(get_int(n[i], str_cat(key, "[", i, "]"), 1));
    } else {
      out.push_back(get_int(n, key, 1));
    }
    if (out.empty()) fail(key, "must not be empty");
    return out;
  }

  const std::string& source() const { return source_; }

 private:
  std::string source_;
};

// One side of a distillation protocol (or the supervised grid): IsoFLOP or fixed ratio.
RunGrid read_grid(const Reader& r, const YAML::Node& n, const std::string& key, bool isoflop) {
  if (!n) r.fail(key, isoflop ? "is required (a map with budgets and sizes)"
                              : "is required (a map with sizes and tokens_per_param)");
  r.check_keys(n, key, {"budgets", "sizes", "tokens_per_param"});
  RunGrid g;
  const char* need = isoflop ? "budgets" : "tokens_per_param";
  const char* other = isoflop ? "tokens_per_param" : "budgets";
  if (!n["sizes"]) r.fail(key + ".sizes", "is required (a list of family sizes, n_layers)");
  if (!n[need]) r.fail(key + "." + need, "is required here");
  if (n[other])
    r.fail(key + "." + other, str_cat("does not apply: this side is ",
                                      isoflop ? "IsoFLOP (budgets × sizes)"
                                              : "fixed-ratio (sizes × tokens_per_param)"));
  g.sizes = r.size_list(n["sizes"], key + ".sizes");
  if (isoflop)
    g.budgets = r.positive_list(n["budgets"], key + ".budgets");
  else
    g.tokens_per_param = r.positive_list(n["tokens_per_param"], key + ".tokens_per_param");
  return g;
}

std::string override_value(const YAML::Node& v) {
  if (!v.IsSequence()) return v.Scalar();
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i].Scalar();
  return s + "]";
}

// `seeded`: the sweep has seeds:, so train.seed is the planner's too.
void apply_override(Config& cfg, const std::string& key, const std::string& value,
                    const std::string& origin, bool seeded) {
  if (kPlannerKeys.count(key))
    throw ConfigError(origin + ": '" + key +
                      "' is set per run by the planner (shapes come from family.*, steps and "
                      "schedule from the budgets); leave it out");
  if (kSweepMapKeys.count(key))
    throw ConfigError(str_cat(origin, ": '", key, "' is the sweep file's own key (", key.substr(0, key.find('.')),
                              ": {", key.substr(key.find('.') + 1), ": …} beside set:); set it there"));
  if (seeded && (key == "train.seed" || key == "generate.seed"))
    throw ConfigError(origin + ": '" + key + "' is set per replicate from the sweep's seeds: list; leave it out");
  try {
    cfg.set(key, value);
  } catch (const ConfigError& e) {
    throw ConfigError(origin + ": " + e.what());
  }
}

std::string absolute_from_cwd(const std::string& p) {
  if (p.empty() || stdfs::path(p).is_absolute()) return p;
  return stdfs::absolute(p).lexically_normal().string();
}

}  // namespace

const char* protocol_name(Protocol p) {
  switch (p) {
    case Protocol::Isoflop: return "isoflop";
    case Protocol::FixedTeacherIsoflopStudent: return "fixed_teacher_isoflop_students";
    case Protocol::IsoflopTeacherFixedStudent: return "isoflop_teacher_fixed_students";
    case Protocol::FixedTeacherFixedStudent: return "fixed_teacher_fixed_students";
  }
  return "?";
}

const char* stage_name(Stage s) {
  return s == Stage::Train ? "train" : s == Stage::Corpus ? "corpus" : "student";
}
const char* stage_command(Stage s) {
  return s == Stage::Train ? "train" : s == Stage::Corpus ? "generate" : "distill";
}

const char* PlannedRun::stage_list() const {
  if (branch_of.empty()) return stage_name(stage);
  return stage == Stage::Train ? "train_branch" : "student_branch";
}

std::string PlannedRun::waits_for() const {
  if (!branch_of.empty()) return branch_of;
  if (stage == Stage::Corpus) return teacher;
  if (stage == Stage::Student) return corpus;
  return "";
}

std::string format_flops(double c) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", c);
  std::string s = buf;
  size_t e = s.find('e');
  if (e == std::string::npos) return s;
  std::string mant = s.substr(0, e), exp = s.substr(e + 1);
  bool neg = !exp.empty() && exp[0] == '-';
  if (!exp.empty() && (exp[0] == '+' || exp[0] == '-')) exp = exp.substr(1);
  exp.erase(0, std::min(exp.find_first_not_of('0'), exp.size() - 1));
  return mant + "e" + (neg ? "-" : "") + exp;
}

SweepSpec read_sweep(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot read sweep file (missing or unreadable)");
  std::ostringstream text;
  text << in.rdbuf();
  std::string dir = stdfs::path(path).parent_path().string();
  SweepSpec spec = read_sweep_text(text.str(), path, dir.empty() ? "." : dir, overrides);
  if (spec.name.empty()) spec.name = stdfs::path(path).stem().string();
  return spec;
}

SweepSpec read_sweep_text(const std::string& yaml_text, const std::string& source,
                          const std::string& base_dir, const std::vector<std::string>& overrides) {
  const Reader r(source);
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    throw ConfigError(str_cat(source, ": malformed YAML at line ", e.mark.line + 1, ": ", e.msg));
  }
  if (!root.IsMap()) throw ConfigError(source + ": a sweep file must be a YAML map of keys (see docs/SWEEPS.md)");
  r.check_keys(root, "",
               {"name", "base", "set", "flops", "tolerance", "ranks", "warmup_fraction", "warmup_steps",
                "evals_per_run", "checkpoints_per_run", "family", "supervised", "distillation",
                "generate", "distill", "cooldown_branches", "seeds", "student_seeds", "slurm"});
  SweepSpec s;
  s.source = source;
  if (root["name"]) s.name = r.get_string(root["name"], "name");

  // Base config: `base:` (relative to the sweep file), then `set:`, then the command's --set.
  std::string base_path;
  if (root["base"]) {
    base_path = r.get_string(root["base"], "base");
    if (!stdfs::path(base_path).is_absolute()) base_path = (stdfs::path(base_dir) / base_path).string();
    if (!stdfs::exists(base_path)) r.fail("base", "config file '" + base_path + "' does not exist");
  }
  s.base = Config::load(base_path);
  const bool seeded = bool(root["seeds"]);
  if (const YAML::Node set = root["set"]) {
    if (!set.IsMap()) r.fail("set", "must be a map of dotted config keys to values (train.lr: 1e-3)");
    for (const auto& kv : set) {
      const std::string k = kv.first.as<std::string>();
      if (kv.second.IsMap()) r.fail("set." + k, "must be a value or a list, not a map (use dotted keys)");
      apply_override(s.base, k, override_value(kv.second), source + ": key 'set." + k + "'", seeded);
    }
  }
  for (const std::string& o : overrides) {
    size_t eq = o.find('=');
    if (eq == std::string::npos || eq == 0)
      throw ConfigError("--set " + o + ": expected dotted.key=value");
    apply_override(s.base, o.substr(0, eq), o.substr(eq + 1), "--set " + o, seeded);
  }
  for (const char* k : {"data.train", "data.val", "data.tokenizer"})
    if (s.base.was_set(k)) s.base.set(k, absolute_from_cwd(s.base.get_string(k)));

  if (root["flops"]) {
    std::string f = r.get_string(root["flops"], "flops");
    if (f == "exact") s.flops = FlopsMode::Exact;
    else if (f == "6N" || f == "6n") s.flops = FlopsMode::SixN;
    else r.fail("flops", "must be 'exact' or '6N', got '" + f + "'");
  }
  if (root["tolerance"]) {
    s.tolerance = r.get_positive(root["tolerance"], "tolerance");
    if (s.tolerance >= 1) r.fail("tolerance", "is a fraction (0.01 = 1%) and must be < 1");
  }
  if (root["ranks"]) s.ranks = r.get_int(root["ranks"], "ranks", 1);
  if (root["warmup_fraction"] && root["warmup_steps"])
    r.fail("warmup_steps", "give warmup_fraction (per run) or warmup_steps (every run), not both");
  if (root["warmup_steps"]) s.warmup_steps = r.get_int(root["warmup_steps"], "warmup_steps", 0);
  if (root["warmup_fraction"]) {
    s.warmup_fraction = r.get_number(root["warmup_fraction"], "warmup_fraction");
    if (s.warmup_fraction < 0 || s.warmup_fraction >= 1) r.fail("warmup_fraction", "must be in [0, 1)");
  }
  if (root["evals_per_run"]) s.evals_per_run = r.get_int(root["evals_per_run"], "evals_per_run", 0);
  if (root["checkpoints_per_run"])
    s.checkpoints_per_run = r.get_int(root["checkpoints_per_run"], "checkpoints_per_run", 0);

  const int64_t mesh = s.base.get_int("parallel.dp") * s.base.get_int("parallel.fsdp") *
                       s.base.get_int("parallel.tp");
  if (mesh != s.ranks)
    r.fail("ranks", str_cat(s.ranks, " processes per run, but the base config's mesh parallel.dp·fsdp·tp = ",
                            mesh, "; make them equal"));

  // Family: shape rules; vocab and seq_len default to the base config's.
  s.family.base = ModelConfig::from_config(s.base);
  if (const YAML::Node f = root["family"]) {
    r.check_keys(f, "family", {"aspect", "head_dim", "gqa_group", "vocab_size", "seq_len"});
    if (f["aspect"]) s.family.aspect = r.get_int(f["aspect"], "family.aspect", 1);
    if (f["head_dim"]) s.family.head_dim = r.get_int(f["head_dim"], "family.head_dim", 2);
    if (s.family.head_dim % 2) r.fail("family.head_dim", "must be even (RoPE rotates pairs)");
    if (f["gqa_group"]) s.family.gqa_group = r.get_int(f["gqa_group"], "family.gqa_group", 1);
    if (f["vocab_size"]) s.family.base.vocab_size = r.get_int(f["vocab_size"], "family.vocab_size", 1);
    if (f["seq_len"]) s.family.base.seq_len = r.get_int(f["seq_len"], "family.seq_len", 1);
  }
  try {  // the learning-rate schedule's keys, checked now rather than when a run starts
    lr_schedule_from(s.base, 1000, 0);
  } catch (const ConfigError& e) {
    throw ConfigError(str_cat(source, ": the base config (with set: and --set): ", e.what()));
  }
  if (root["cooldown_branches"]) {
    const std::string v = r.get_string(root["cooldown_branches"], "cooldown_branches");
    if (v != "true" && v != "false") r.fail("cooldown_branches", "must be true or false, got '" + v + "'");
    s.cooldown_branches = v == "true";
    if (s.cooldown_branches && s.base.get_string("train.lr_schedule") != "wsd")
      r.fail("cooldown_branches",
             str_cat("needs train.lr_schedule: wsd (the base config has ", s.base.get_string("train.lr_schedule"),
                     "; add it under set:): only wsd's rate before the decay is the same for every run length"));
  }
  for (auto [key, out] : {std::pair{"seeds", &s.seeds}, std::pair{"student_seeds", &s.student_seeds}}) {
    const YAML::Node seeds = root[key];
    if (!seeds) continue;
    if (!seeds.IsSequence() || seeds.size() == 0)
      r.fail(key, "must be a non-empty list of integers (train.seed of each replicate), e.g. [1, 2, 3]");
    for (size_t i = 0; i < seeds.size(); ++i) {
      const int64_t seed = r.get_int(seeds[i], str_cat(key, "[", i, "]"), 0);
      if (std::find(out->begin(), out->end(), seed) != out->end())
        r.fail(str_cat(key, "[", i, "]"), str_cat("seed ", seed, " is listed twice"));
      out->push_back(seed);
    }
  }
  const int64_t batch = s.base.get_int("train.batch_tokens");
  if (batch < 1 || batch % s.family.base.seq_len != 0)
    r.fail("set.train.batch_tokens",
           str_cat("train.batch_tokens (", batch, ") must be a positive multiple of the family's seq_len (",
                   s.family.base.seq_len, ")"));

  auto check_sizes = [&](const RunGrid& g, const std::string& key) {
    for (size_t i = 0; i < g.sizes.size(); ++i)
      if (std::string why = s.family.problem(g.sizes[i]); !why.empty())
        r.fail(str_cat(key, ".sizes[", i, "]"), why);
  };
  if (const YAML::Node sup = root["supervised"]) {
    s.supervised = read_grid(r, sup, "supervised", true);
    check_sizes(*s.supervised, "supervised");
  }
  if (const YAML::Node dist = root["distillation"]) {
    if (!dist.IsSequence()) r.fail("distillation", "must be a list of protocols ({protocol: ..., teachers: ..., students: ...})");
    for (size_t i = 0; i < dist.size(); ++i) {
      const std::string key = str_cat("distillation[", i, "]");
      const YAML::Node d = dist[i];
      r.check_keys(d, key, {"protocol", "teachers", "students"});
      if (!d["protocol"]) r.fail(key + ".protocol", "is required");
      const std::string name = r.get_string(d["protocol"], key + ".protocol");
      DistillProtocol p;
      bool found = false;
      for (Protocol q : {Protocol::FixedTeacherIsoflopStudent, Protocol::IsoflopTeacherFixedStudent,
                         Protocol::FixedTeacherFixedStudent})
        if (name == protocol_name(q)) p.protocol = q, found = true;
      if (!found)
        r.fail(key + ".protocol", "unknown protocol '" + name +
                                      "' (fixed_teacher_isoflop_students, isoflop_teacher_fixed_students "
                                      "or fixed_teacher_fixed_students)");
      const bool teacher_iso = p.protocol == Protocol::IsoflopTeacherFixedStudent;
      const bool student_iso = p.protocol == Protocol::FixedTeacherIsoflopStudent;
      p.teachers = read_grid(r, d["teachers"], key + ".teachers", teacher_iso);
      p.students = read_grid(r, d["students"], key + ".students", student_iso);
      check_sizes(p.teachers, key + ".teachers");
      check_sizes(p.students, key + ".students");
      s.distillation.push_back(p);
    }
  }
  if (!s.supervised && s.distillation.empty())
    r.fail("supervised", "nothing to plan: give `supervised:` and/or `distillation:`");

  if (const YAML::Node g = root["generate"]) {
    r.check_keys(g, "generate", {"mode", "k"});
    if (g["mode"]) {
      s.generate_mode = r.get_string(g["mode"], "generate.mode");
      if (s.generate_mode != "score" && s.generate_mode != "sample")
        r.fail("generate.mode", "must be 'score' or 'sample', got '" + s.generate_mode + "'");
    }
    if (g["k"]) s.generate_k = r.get_int(g["k"], "generate.k", 1);
  }
  if (const YAML::Node d = root["distill"]) {
    r.check_keys(d, "distill", {"lambda", "temperature", "tail"});
    if (d["lambda"]) {
      s.distill_lambda = r.get_number(d["lambda"], "distill.lambda");
      if (s.distill_lambda < 0 || s.distill_lambda > 1) r.fail("distill.lambda", "must be in [0, 1]");
    }
    if (d["temperature"]) s.distill_temperature = r.get_positive(d["temperature"], "distill.temperature");
    if (d["tail"]) s.distill_tail = r.get_string(d["tail"], "distill.tail");
    if (s.distill_tail != "renormalize" && s.distill_tail != "bucket")
      r.fail("distill.tail", "must be 'renormalize' or 'bucket', got '" + s.distill_tail + "'");
  }
  if (const YAML::Node sl = root["slurm"]) {
    r.check_keys(sl, "slurm", {"nodes", "ntasks_per_node", "gpus_per_node", "cpus_per_task", "time",
                               "partition", "account"});
    if (sl["nodes"]) s.slurm.nodes = r.get_int(sl["nodes"], "slurm.nodes", 1);
    if (sl["ntasks_per_node"]) s.slurm.ntasks_per_node = r.get_int(sl["ntasks_per_node"], "slurm.ntasks_per_node", 1);
    if (sl["gpus_per_node"]) s.slurm.gpus_per_node = r.get_int(sl["gpus_per_node"], "slurm.gpus_per_node", 0);
    if (sl["cpus_per_task"]) s.slurm.cpus_per_task = r.get_int(sl["cpus_per_task"], "slurm.cpus_per_task", 0);
    if (sl["time"]) s.slurm.time = r.get_string(sl["time"], "slurm.time");
    if (sl["partition"]) s.slurm.partition = r.get_string(sl["partition"], "slurm.partition");
    if (sl["account"]) s.slurm.account = r.get_string(sl["account"], "slurm.account");
    for (const char* k : {"time", "partition", "account"}) {
      const std::string& v = k[0] == 't' ? s.slurm.time : k[0] == 'p' ? s.slurm.partition : s.slurm.account;
      if (v.find_first_of(" \t\n'\"$`\\") != std::string::npos)
        r.fail(std::string("slurm.") + k, "must not contain spaces, quotes or shell characters");
    }
  }
  if (s.ranks % s.slurm.nodes != 0)
    r.fail("slurm.nodes", str_cat("ranks (", s.ranks, ") must be a multiple of slurm.nodes (", s.slurm.nodes, ")"));
  if (s.slurm.ntasks_per_node == 0) s.slurm.ntasks_per_node = s.ranks / s.slurm.nodes;
  if (s.slurm.nodes * s.slurm.ntasks_per_node != s.ranks)
    r.fail("slurm.ntasks_per_node", str_cat("slurm.nodes·ntasks_per_node = ", s.slurm.nodes * s.slurm.ntasks_per_node,
                                            " must equal ranks (", s.ranks, ")"));
  if (!s.student_seeds.empty() && s.distillation.empty())
    r.fail("student_seeds", "the sweep plans no students (no distillation:); seeds: replicates supervised runs");
  return s;
}

const PlannedRun* SweepPlan::find(const std::string& name) const {
  for (const PlannedRun& r : runs)
    if (r.name == name) return &r;
  return nullptr;
}

namespace {

class Planner {
 public:
  Planner(const SweepSpec& spec, const std::string& out_dir)
      : s_(spec), r_(spec.source), batch_(spec.base.get_int("train.batch_tokens")) {
    plan_.out_dir = stdfs::absolute(out_dir).lexically_normal().string();
  }

  SweepPlan run() {
    const std::vector<int64_t> seeds = s_.seeds.empty() ? std::vector<int64_t>{s_.base.get_int("train.seed")} : s_.seeds;
    for (int64_t seed : seeds) {  // each seed a replicate of the whole plan
      seed_ = seed;
      suffix_ = s_.seeds.empty() ? "" : str_cat("-s", seed);
      if (s_.supervised) {
        std::vector<std::string> used;
        for (double c : s_.supervised->budgets)
          for (int64_t L : s_.supervised->sizes)
            used.push_back(train_run(iso_name(c, L), "isoflop", L, c, 0, "supervised.budgets"));
        total("isoflop", used);
      }
      for (size_t i = 0; i < s_.distillation.size(); ++i) plan_protocol(i);
    }
    if (s_.cooldown_branches) {
      plan_branches(train_);
      plan_branches(students_);
    }
    add_corpora();
    for (auto& [name, used] : protocol_runs_) finish_total(name, used);
    for (const char* list : kStageLists)
      for (auto* runs : {&train_, &corpora_, &students_})
        for (const PlannedRun& r : *runs)
          if (std::string(r.stage_list()) == list) plan_.runs.push_back(r);
    return std::move(plan_);
  }

 private:
  static std::string iso_name(double c, int64_t L) { return str_cat("sup-", format_flops(c), "-L", L); }
  static std::string fixed_name(const char* prefix, int64_t L, double m) {
    return str_cat(prefix, "-L", L, "-M", format_flops(m));
  }

  // Steps for a target token count, with the budget (or ratio) error checked against tolerance.
  void size_run(PlannedRun& run, double target_tokens, const std::string& key) {
    run.steps = std::max<int64_t>(1, std::llround(target_tokens / batch_));
    run.tokens = run.steps * batch_;
    run.compute = run.flops_per_token * run.tokens;
    const double err = run.tokens / target_tokens - 1;
    if (std::abs(err) > s_.tolerance)
      r_.fail(key, str_cat(run.name, ": ", format_flops(target_tokens), " tokens round to ", run.steps,
                           " steps of ", batch_, " tokens, ", format_flops(100 * err),
                           "% off the target (tolerance ", 100 * s_.tolerance,
                           "%); use larger budgets/ratios or a smaller train.batch_tokens"));
    const bool fixed = s_.warmup_steps >= 0;
    const char* warmup_key = fixed ? "warmup_steps" : "warmup_fraction";
    run.warmup_steps = fixed ? s_.warmup_steps : std::llround(s_.warmup_fraction * run.steps);
    if (s_.base.get_string("train.lr_schedule") == "wsd") {
      const int64_t decay = wsd_decay_steps(run.steps, s_.base.get_float("train.wsd_decay_fraction"));
      if (run.warmup_steps > run.steps - decay)
        r_.fail(warmup_key, str_cat(run.name, ": ", run.warmup_steps, " warmup steps of ", run.steps,
                                    " run into wsd's decay (the last ", decay, "); lower ", warmup_key,
                                    " or train.wsd_decay_fraction"));
    } else if (fixed && run.warmup_steps >= run.steps) {
      r_.fail(warmup_key, str_cat(run.name, ": ", run.warmup_steps, " warmup steps, but the run has ", run.steps,
                                  " steps; lower warmup_steps"));
    }
    auto every = [&](int64_t n) { return n > 0 ? (run.steps + n - 1) / n : 0; };
    run.eval_every = every(s_.evals_per_run);
    run.checkpoint_every = every(s_.checkpoints_per_run);
  }

  PlannedRun base_run(const std::string& name, const std::string& point, const std::string& protocol, Stage stage,
                      int64_t L) {
    PlannedRun run;
    run.name = name;
    run.point = point;
    run.seed = seed_;
    run.protocol = protocol;
    run.stage = stage;
    run.size = L;
    run.model = s_.family.shape(L);
    run.flops_per_token = train_flops_per_token(run.model, s_.flops);
    run.config_path = plan_.out_dir + "/configs/" + name + ".yaml";
    run.run_dir = plan_.out_dir + "/runs/" + name;
    return run;
  }

  // A supervised training run (IsoFLOP when budget > 0, else D = M·N_nonemb) of the current seed,
  // named point + the seed's suffix; deduplicated by name.
  std::string train_run(const std::string& point, const std::string& protocol, int64_t L, double budget,
                        double ratio, const std::string& key) {
    const std::string name = point + suffix_;
    if (index_.count(name)) return name;
    PlannedRun run = base_run(name, point, protocol, Stage::Train, L);
    run.budget = budget;
    run.tokens_per_param = ratio;
    size_run(run, budget > 0 ? budget / run.flops_per_token : ratio * run.model.n_params_nonemb(), key);
    run.c_student = run.compute;
    index_[name] = &train_.emplace_back(std::move(run));  // deque: stable addresses
    return name;
  }

  // A student of `teacher`, once per student seed (name + "-sK", train.seed K) or, without
  // student_seeds, once with the replicate's seed; named after its teacher, whose name carries
  // the replicate's seed.
  void student_run(const std::string& protocol, const std::string& tag, const std::string& teacher,
                   int64_t L, double budget, double ratio, const std::string& key) {
    auto student_name = [&](const std::string& t) {
      return budget > 0 ? str_cat("student-", tag, "-", t, "-", format_flops(budget), "-L", L)
                        : str_cat("student-", tag, "-", t, "-L", L, "-M", format_flops(ratio));
    };
    std::vector<std::pair<int64_t, std::string>> replicates;  // (train.seed, name suffix)
    for (int64_t k : s_.student_seeds) replicates.emplace_back(k, str_cat("-s", k));
    if (replicates.empty()) replicates.emplace_back(seed_, "");
    const PlannedRun& t = *index_.at(teacher);
    for (const auto& [seed, suffix] : replicates) {
      const std::string name = student_name(teacher) + suffix;
      runs_of(protocol).push_back(name);
      if (index_.count(name)) continue;
      PlannedRun run = base_run(name, student_name(t.point), protocol, Stage::Student, L);
      run.seed = seed;
      run.budget = budget;
      run.tokens_per_param = ratio;
      size_run(run, budget > 0 ? budget / run.flops_per_token : ratio * run.model.n_params_nonemb(), key);
      run.teacher = teacher;
      run.corpus = "corpus-" + teacher;
      // Eq. 9 with δ_Lgt = δ_Pre = 1: student training, teacher logits on D_S, teacher pretraining.
      run.c_student = run.compute;
      run.c_teacher_logits = forward_flops_per_token(t.model, s_.flops) * run.tokens;
      run.c_teacher_pretrain = t.compute;
      index_[name] = &students_.emplace_back(std::move(run));
    }
  }

  void plan_protocol(size_t i) {
    const DistillProtocol& p = s_.distillation[i];
    const std::string proto = protocol_name(p.protocol);
    const std::string key = str_cat("distillation[", i, "]");
    const char* tag = p.protocol == Protocol::FixedTeacherIsoflopStudent   ? "ftis"
                      : p.protocol == Protocol::IsoflopTeacherFixedStudent ? "itfs"
                                                                           : "ftfs";
    std::vector<std::string> teachers;
    if (p.protocol == Protocol::IsoflopTeacherFixedStudent) {
      for (double c : p.teachers.budgets)
        for (int64_t L : p.teachers.sizes)
          teachers.push_back(train_run(iso_name(c, L), proto, L, c, 0, key + ".teachers.budgets"));
    } else {
      for (int64_t L : p.teachers.sizes)
        for (double m : p.teachers.tokens_per_param)
          teachers.push_back(train_run(fixed_name("teacher", L, m), proto, L, 0, m,
                                       key + ".teachers.tokens_per_param"));
    }
    for (const std::string& t : teachers) {
      runs_of(proto).push_back(t);
      runs_of(proto).push_back("corpus-" + t);
      teachers_.push_back(t);
      if (p.protocol == Protocol::FixedTeacherIsoflopStudent) {
        for (double c : p.students.budgets)
          for (int64_t L : p.students.sizes) student_run(proto, tag, t, L, c, 0, key + ".students.budgets");
      } else {
        for (int64_t L : p.students.sizes)
          for (double m : p.students.tokens_per_param)
            student_run(proto, tag, t, L, 0, m, key + ".students.tokens_per_param");
      }
    }
  }

  // Cooldown branches: among runs of one size, seed (and corpus), all on the warmup of the
  // shortest (warmup_steps: the same anyway), the longest is the trunk; every other run starts from the trunk's checkpoint at
  // its own decay's first step b = steps − wsd_decay_steps(steps). Before b its rate is the
  // peak, as the trunk's is up to its own (longer) decay, and data order does not depend on
  // train.steps, so the branch is the run trained from step 0 (tests/e2e/sweep_branches.sh).
  void plan_branches(std::deque<PlannedRun>& runs) {
    std::map<std::tuple<int64_t, std::string, int64_t>, std::vector<PlannedRun*>> groups;
    for (PlannedRun& r : runs) groups[{r.size, r.corpus, r.seed}].push_back(&r);
    const double fraction = s_.base.get_float("train.wsd_decay_fraction");
    for (auto& [key, group] : groups) {
      if (group.size() < 2) continue;
      PlannedRun* trunk = group.front();
      int64_t warmup = trunk->warmup_steps;
      for (PlannedRun* r : group) {
        if (r->steps > trunk->steps) trunk = r;
        warmup = std::min(warmup, r->warmup_steps);
      }
      for (PlannedRun* r : group) {
        r->warmup_steps = warmup;
        const int64_t b = r->steps - wsd_decay_steps(r->steps, fraction);
        if (r == trunk || b < 1) continue;  // b = 0: the run is all decay, nothing to share
        r->branch_of = trunk->name;
        r->branch_step = b;
        trunk->keep_steps.push_back(b);
      }
      std::sort(trunk->keep_steps.begin(), trunk->keep_steps.end());
      trunk->keep_steps.erase(std::unique(trunk->keep_steps.begin(), trunk->keep_steps.end()),
                              trunk->keep_steps.end());
    }
  }

  // One corpus per teacher, long enough for its hungriest student (students read a prefix).
  void add_corpora() {
    for (const std::string& t : teachers_) {
      const std::string name = "corpus-" + t;
      if (index_.count(name)) continue;
      int64_t tokens = 0;
      std::string protocol;
      for (const PlannedRun& st : students_)
        if (st.teacher == t) tokens = std::max(tokens, st.tokens), protocol = protocol.empty() ? st.protocol : protocol;
      const PlannedRun& teacher = *index_.at(t);
      PlannedRun run = base_run(name, "corpus-" + teacher.point, protocol, Stage::Corpus, teacher.size);
      run.seed = teacher.seed;
      const int64_t T = run.model.seq_len;
      run.num_sequences = (tokens + T - 1) / T;
      run.tokens = run.num_sequences * T;
      run.flops_per_token = forward_flops_per_token(run.model, s_.flops);
      run.compute = run.flops_per_token * run.tokens;
      run.c_teacher_logits = run.compute;
      run.teacher = t;
      index_[name] = &corpora_.emplace_back(std::move(run));
    }
  }

  void total(const std::string& protocol, const std::vector<std::string>& used) {
    auto& v = runs_of(protocol);
    v.insert(v.end(), used.begin(), used.end());
  }

  // A protocol's compute: its students (or supervised runs), its corpora, its teachers' training.
  void finish_total(const std::string& protocol, const std::vector<std::string>& used) {
    ProtocolTotal t;
    t.protocol = protocol;
    std::set<std::string> seen;
    std::set<std::string> teachers;
    for (const std::string& n : used) {
      const PlannedRun& r = *index_.at(n);
      if (r.stage == Stage::Student) teachers.insert(r.teacher);
    }
    for (const std::string& n : used) {
      if (!seen.insert(n).second) continue;
      const PlannedRun& r = *index_.at(n);
      ++t.runs;
      if (r.stage == Stage::Corpus) t.c_teacher_logits += r.compute;
      else if (r.stage == Stage::Train && teachers.count(n)) t.c_teacher_pretrain += r.compute;
      else t.c_student += r.compute;
    }
    plan_.totals.push_back(t);
  }

  const SweepSpec& s_;
  Reader r_;
  const int64_t batch_;
  int64_t seed_ = 0;    // the replicate being planned
  std::string suffix_;  // its name suffix: "-sK", or "" without SweepSpec::seeds
  SweepPlan plan_;
  std::deque<PlannedRun> train_, corpora_, students_;
  std::map<std::string, PlannedRun*> index_;
  std::vector<std::string> teachers_;
  std::vector<std::pair<std::string, std::vector<std::string>>> protocol_runs_;  // in plan order

  std::vector<std::string>& runs_of(const std::string& protocol) {
    for (auto& [name, v] : protocol_runs_)
      if (name == protocol) return v;
    return protocol_runs_.emplace_back(protocol, std::vector<std::string>{}).second;
  }
};

}  // namespace

SweepPlan plan_sweep(const SweepSpec& spec, const std::string& out_dir) {
  return Planner(spec, out_dir).run();
}

void plan_data_epochs(const SweepSpec& spec, SweepPlan& plan, int64_t train_tokens) {
  const int64_t batch = spec.base.get_int("train.batch_tokens");
  const int64_t prompt_len = spec.base.get_int("generate.prompt_len");
  const bool sample = spec.generate_mode == "sample";
  for (PlannedRun& r : plan.runs) {
    const int64_t T = r.model.seq_len, Ls = T + 1;
    if (r.stage == Stage::Train) {
      const int64_t windows = (train_tokens - 1) / T;
      if (windows < 1)
        throw ConfigError(str_cat(spec.source, ": data.train (", spec.base.get_string("data.train"),
                                  ") has ", train_tokens, " tokens, fewer than one window of ", T + 1));
      r.data_epochs = double(r.steps * (batch / T)) / double(windows);
    } else if (r.stage == Stage::Student) {
      r.data_epochs = double(r.steps * (batch / T)) / double(plan.find(r.corpus)->num_sequences);
    } else if (sample && prompt_len == 0) {
      r.data_epochs = 0;
    } else {
      const int64_t windows = !sample ? train_tokens / Ls
                              : train_tokens >= prompt_len ? (train_tokens - prompt_len) / Ls + 1 : 0;
      if (r.num_sequences > windows)
        throw ConfigError(str_cat(spec.source, ": ", r.name, " needs ", r.num_sequences, " ",
                                  sample ? "prompts" : "windows", " of ", Ls, " tokens from data.train (",
                                  spec.base.get_string("data.train"), "), which has ", train_tokens,
                                  " tokens, ", windows, sample ? " prompts" : " windows",
                                  "; tokenize more text or plan fewer student tokens"));
      r.data_epochs = double(r.num_sequences) / double(windows);
    }
  }
}

std::string planned_config_yaml(const SweepSpec& spec, const SweepPlan& plan, const PlannedRun& run) {
  Config c = spec.base;
  const ModelConfig& m = run.model;
  c.set("run.dir", run.run_dir);
  c.set("model.vocab_size", std::to_string(m.vocab_size));
  c.set("model.seq_len", std::to_string(m.seq_len));
  c.set("model.d_model", std::to_string(m.d_model));
  c.set("model.n_layers", std::to_string(m.n_layers));
  c.set("model.n_heads", std::to_string(m.n_heads));
  c.set("model.n_kv_heads", std::to_string(m.n_kv_heads));
  c.set("model.head_dim", std::to_string(m.head_dim));
  c.set("model.d_ff", std::to_string(m.d_ff));
  if (!spec.seeds.empty() || (run.stage == Stage::Student && !spec.student_seeds.empty()))
    c.set("train.seed", std::to_string(run.seed));
  if (run.stage != Stage::Corpus) {
    c.set("train.steps", std::to_string(run.steps));
    c.set("train.warmup_steps", std::to_string(run.warmup_steps));
    c.set("eval.every", std::to_string(run.eval_every));
    c.set("checkpoint.every", std::to_string(run.checkpoint_every));
    if (!run.branch_of.empty())
      c.set("train.branch_from", checkpoint_step_dir(plan.find(run.branch_of)->run_dir + "/checkpoints", run.branch_step));
    std::string keep;
    for (int64_t k : run.keep_steps) keep += (keep.empty() ? "" : ", ") + std::to_string(k);
    if (!keep.empty()) c.set("checkpoint.keep_steps", "[" + keep + "]");
  }
  YAML::Node root = YAML::Load(c.to_yaml());
  // generate.* and distill.* are the plan for `retort generate` / `retort distill` (SPEC §6).
  if (run.stage == Stage::Corpus) {
    YAML::Node g = root["generate"];
    g["teacher"] = plan.find(run.teacher)->run_dir;
    g["data"] = c.get_string("data.train");
    g["out"] = run.run_dir;
    g["mode"] = spec.generate_mode;
    g["k"] = spec.generate_k;
    g["num_sequences"] = run.num_sequences;
    g["seq_len"] = m.seq_len + 1;  // seq_len targets per sequence, as the students train on
    if (!spec.seeds.empty()) g["seed"] = run.seed;  // sample mode's draws
  }
  if (run.stage == Stage::Student) {
    YAML::Node d = root["distill"];
    d["corpus"] = plan.find(run.corpus)->run_dir;
    d["lambda"] = spec.distill_lambda;
    d["temperature"] = spec.distill_temperature;
    d["tail"] = spec.distill_tail;
  }
  YAML::Emitter out;
  out << root;
  return str_cat("# ", run.name, ": planned by `retort sweep ", spec.source, "` (", run.protocol, ", ",
                 stage_name(run.stage), ")\n", out.c_str(), "\n");
}

}  // namespace retort
