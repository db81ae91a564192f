// retort fit RESULTS.csv: scaling-law fits (docs/SCALING.md). Reads a results table, fits the
// supervised law (Approach 2 or 3) or the distillation law, optionally bootstraps, and writes
// fit.json (+ PNG plots next to it).
#include <CLI/CLI.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/fs.h"
#include "core/json_fields.h"
#include "launch/commands.h"
#include "scaling/bootstrap.h"
#include "scaling/chinchilla_fit.h"
#include "scaling/distillation_fit.h"
#include "scaling/isoflop_fit.h"
#include "scaling/plot_runner.h"
#include "scaling/results_table.h"

namespace retort {
namespace {

using json = nlohmann::json;
using namespace retort::scaling;

std::string fmt(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", x);
  return buf;
}

json table_json(const ResultsTable& t) {
  json j = {{"N", t.N}, {"D", t.D}, {"C", t.C}, {"loss", t.loss}, {"line", t.line}};
  if (!t.teacher_loss.empty()) j["teacher_loss"] = t.teacher_loss;
  if (!t.data_epochs.empty()) {  // NaN (an empty field) as null
    json e = json::array();
    for (double x : t.data_epochs) e.push_back(std::isnan(x) ? json() : json(x));
    j["data_epochs"] = e;
  }
  return j;
}

// The rows that read their data at most `max` times (rows of unknown epochs kept), or, with
// max = 0, all of them and a warning naming those that read it more than once: scaling laws
// assume every token is seen once.
ResultsTable rows_within_data_epochs(const ResultsTable& t, double max) {
  if (t.data_epochs.empty()) {
    if (max > 0) throw ConfigError(str_cat("--max-data-epochs: ", t.source, " has no data_epochs column"));
    return t;
  }
  const double limit = max > 0 ? max : 1;
  std::vector<bool> keep(t.size(), true);
  std::vector<size_t> rows_over;
  for (size_t i = 0; i < t.size(); ++i)
    if (t.data_epochs[i] > limit) keep[i] = false, rows_over.push_back(i);
  const int count = int(rows_over.size());
  std::stable_sort(rows_over.begin(), rows_over.end(),
                   [&](size_t a, size_t b) { return t.data_epochs[a] > t.data_epochs[b]; });
  std::string over;  // the three rows furthest over the limit
  for (int k = 0; k < count && k < 3; ++k)
    over += str_cat(k ? ", " : "", "line ", t.line[rows_over[k]], ": ", fmt(t.data_epochs[rows_over[k]]), "x");
  if (count > 3) over += ", ...";
  if (max == 0) {
    if (count > 0)
      std::fprintf(stderr, "retort fit: warning: %d of %zu rows read their data more than once (%s); the "
                   "laws assume each token seen once (--max-data-epochs 1 leaves them out)\n",
                   count, t.size(), over.c_str());
    return t;
  }
  if (count == int(t.size()))
    throw ConfigError(str_cat("--max-data-epochs ", max, " leaves out all ", t.size(), " rows of ", t.source));
  if (count > 0)
    std::fprintf(stderr, "retort fit: --max-data-epochs %g leaves out %d rows (%s)\n", max, count, over.c_str());
  return select_rows(t, keep);
}

// The rows of `all` that were left out (by source line).
ResultsTable dropped_rows(const ResultsTable& all, const ResultsTable& kept) {
  std::vector<bool> dropped(all.size(), true);
  for (size_t i = 0, k = 0; i < all.size(); ++i)
    if (k < kept.size() && kept.line[k] == all.line[i]) dropped[i] = false, ++k;
  return select_rows(all, dropped);
}

json law_json(const SupervisedLaw& l) {
  return {{"E", l.E},         {"A", l.A},         {"B", l.B}, {"alpha", l.alpha}, {"beta", l.beta},
          {"gamma", l.gamma}, {"a", l.exponent_a()}, {"b", l.exponent_b()}, {"G", l.G()}};
}

std::map<std::string, double> law_values(const SupervisedLaw& l, const std::vector<double>& budgets) {
  std::map<std::string, double> v{{"E", l.E},         {"A", l.A},         {"B", l.B},
                                  {"alpha", l.alpha}, {"beta", l.beta},   {"gamma", l.gamma},
                                  {"a", l.exponent_a()}, {"b", l.exponent_b()}, {"G", l.G()}};
  for (double C : budgets) {
    std::string c = str_cat(C);
    v["N_opt@" + c] = l.n_opt(C);
    v["D_opt@" + c] = l.d_opt(C);
    v["L_opt@" + c] = l.loss_opt(C);
  }
  return v;
}

json interval_json(const Interval& i) { return {{"lo", i.lo}, {"hi", i.hi}, {"std", i.stddev}}; }

// Adds "intervals" and "bootstrap"; intervals of per-budget values go into "compute_optimal".
void add_bootstrap(json& j, const BootstrapResult& b) {
  j["bootstrap"] = {{"replicates", b.replicates}, {"failed", b.failed}, {"level", b.level}, {"seed", b.seed}};
  json iv = json::object();
  for (const auto& [k, i] : b.intervals)
    if (k.find('@') == std::string::npos) iv[k] = interval_json(i);
  j["intervals"] = iv;
  for (auto& e : j["compute_optimal"]) {
    std::string c = str_cat(e["C"].get<double>());
    for (const char* q : {"N_opt", "D_opt", "L_opt"}) {
      auto it = b.intervals.find(std::string(q) + "@" + c);
      if (it != b.intervals.end()) e[std::string(q) + "_interval"] = interval_json(it->second);
    }
  }
  if (b.failed > 0)
    std::fprintf(stderr, "retort fit: %d of %d bootstrap replicates failed and were left out\n", b.failed,
                 b.replicates);
}

double rms(const std::vector<double>& r) {
  double s = 0;
  for (double x : r) s += x * x;
  return r.empty() ? 0 : std::sqrt(s / r.size());
}

SupervisedLaw read_supervised_fit(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ConfigError(str_cat(path, ": cannot read the supervised fit (--supervised)"));
  json j;
  try {
    j = json::parse(in);
  } catch (const std::exception& e) {
    throw ConfigError(str_cat(path, ": not valid JSON: ", e.what()));
  }
  if (!j.is_object() || !j.contains("law") || j["law"] != "supervised" || !j.contains("E"))
    throw ConfigError(str_cat(path, ": --supervised needs the fit.json of a supervised Approach 3 fit (keys E, A, B, "
                              "alpha, beta, gamma)"));
  SupervisedLaw l;
  try {
    l.E = json_number(j, "E", path);
    l.A = json_number(j, "A", path);
    l.B = json_number(j, "B", path);
    l.alpha = json_number(j, "alpha", path);
    l.beta = json_number(j, "beta", path);
    l.gamma = json_number(j, "gamma", path);
  } catch (const Error& e) {
    throw ConfigError(e.what());
  }
  return l;
}

}  // namespace

CLI::App* add_fit_command(CLI::App& app, FitArgs& a) {
  auto* fit = app.add_subcommand("fit", "scaling-law fits on a results CSV; fit.json + plots (docs/SCALING.md)");
  fit->add_option("results", a.csv, "results CSV (one row per run)")->required();
  fit->add_option("--law", a.law, "supervised | distillation");
  fit->add_option("--form", a.form, "chinchilla (gamma = 1) | busbridge (free gamma)");
  fit->add_option("--method", a.method, "approach3 (law fit) | approach2 (IsoFLOP parabolas)");
  fit->add_option_function<double>(
      "--delta", [&a](const double& v) { a.delta = v, a.delta_given = true; },
      "Huber delta on log loss (default 1e-3 chinchilla, 1e-4 busbridge)");
  fit->add_option("--drop-highest", a.drop_highest, "drop the K highest-loss rows before fitting");
  fit->add_option("--bootstrap", a.bootstrap, "R bootstrap replicates for 95% intervals (0: none)");
  fit->add_option("--seed", a.seed, "bootstrap seed");
  fit->add_option_function<std::vector<double>>(
         "--budgets", [&a](const std::vector<double>& v) { a.budgets = v, a.budgets_given = true; },
         "FLOP budgets to report N_opt, D_opt, L_opt for: 1e18,1e19")
      ->delimiter(',')
      ->allow_extra_args(false);
  fit->add_option("--budget-tolerance", a.budget_tolerance, "approach2: decades of C grouped into one budget");
  fit->add_option("--supervised", a.supervised_json, "distillation: fit.json of the supervised law for L~_S");
  fit->add_option("--out", a.out, "output JSON (plots go next to it)");
  fit->add_option("--col-n", a.col_n, "column of parameters N (N_S)");
  fit->add_option("--col-d", a.col_d, "column of tokens D (D_S)");
  fit->add_option("--col-c", a.col_c, "column of FLOPs C (D = C/(6N) when there is no D column)");
  fit->add_option("--col-loss", a.col_loss, "column of the loss (student loss L_S)");
  fit->add_option("--col-teacher-loss", a.col_teacher_loss, "column of the teacher loss L_T");
  fit->add_option("--max-data-epochs", a.max_data_epochs,
                  "leave out rows whose data_epochs (retort collect) exceed E, e.g. 1");
  fit->add_option("--where", a.where, "keep rows with COLUMN=VALUE (repeatable)")
      ->take_all()
      ->allow_extra_args(false);
  fit->add_flag("!--no-plot", a.plot, "skip the PNG plots");
  return fit;
}

int run_fit(const FitArgs& args) {
  // ---- validate flags (usage errors, exit 2) ----
  if (args.law != "supervised" && args.law != "distillation")
    throw ConfigError(str_cat("--law must be supervised or distillation, got '", args.law, "'"));
  if (args.form != "chinchilla" && args.form != "busbridge")
    throw ConfigError(str_cat("--form must be chinchilla or busbridge, got '", args.form, "'"));
  if (args.method != "approach2" && args.method != "approach3")
    throw ConfigError(str_cat("--method must be approach2 or approach3, got '", args.method, "'"));
  if (args.law == "distillation" && args.method == "approach2")
    throw ConfigError("--method approach2 (IsoFLOP parabolas) applies to --law supervised only");
  if (args.law == "distillation" && args.supervised_json.empty())
    throw ConfigError("--law distillation needs --supervised FIT.json (a supervised fit giving L̃_S(N_S, D_S))");
  if (args.delta < 0 || (args.delta == 0 && args.delta_given))
    throw ConfigError(str_cat("--delta must be positive, got ", args.delta));
  if (args.drop_highest < 0) throw ConfigError("--drop-highest must be >= 0");
  if (args.max_data_epochs < 0) throw ConfigError("--max-data-epochs must be positive (0: keep every row)");
  if (args.bootstrap < 0) throw ConfigError("--bootstrap must be >= 0");
  if (args.budget_tolerance <= 0) throw ConfigError("--budget-tolerance must be positive");
  if (args.budgets_given && args.budgets.empty()) throw ConfigError("--budgets is empty; give e.g. --budgets 1e18,1e19");
  for (double C : args.budgets)
    if (!(C > 0) || !std::isfinite(C)) throw ConfigError(str_cat("--budgets: ", C, " is not a positive FLOP count"));
  const LawForm form = args.form == "busbridge" ? LawForm::busbridge : LawForm::chinchilla;
  const double delta = args.delta > 0 ? args.delta : (form == LawForm::busbridge ? 1e-4 : 1e-3);

  ColumnNames cols;
  cols.n = args.col_n;
  cols.d = args.col_d;
  cols.c = args.col_c;
  cols.loss = args.col_loss;
  cols.teacher_loss = args.col_teacher_loss;
  for (const auto& w : args.where) {
    auto eq = w.find('=');
    if (eq == std::string::npos || eq == 0)
      throw ConfigError(str_cat("--where expects COLUMN=VALUE, got '", w, "'"));
    cols.where.emplace_back(w.substr(0, eq), w.substr(eq + 1));
  }
  const bool distill = args.law == "distillation";
  SupervisedLaw supervised;
  if (distill) supervised = read_supervised_fit(args.supervised_json);

  // ---- data (runtime errors, exit 1; unknown columns exit 2) ----
  const ResultsTable all = read_results_csv(args.csv, cols, distill);
  const ResultsTable t = drop_highest_loss(rows_within_data_epochs(all, args.max_data_epochs), args.drop_highest);

  json j;
  j["retort_fit"] = 1;
  j["law"] = args.law;
  j["form"] = args.form;
  j["method"] = args.method;
  j["input"] = args.csv;
  j["columns"] = {{"N", cols.n}, {"D", cols.d}, {"C", cols.c}, {"loss", cols.loss}};
  if (distill) j["columns"]["teacher_loss"] = cols.teacher_loss;
  j["where"] = args.where;
  j["C_from"] = t.c_from_column ? "column" : "6*N*D";
  j["rows_read"] = all.size();
  j["drop_highest"] = args.drop_highest;
  if (args.max_data_epochs > 0) j["max_data_epochs"] = args.max_data_epochs;
  j["n_points"] = t.size();
  j["data"] = table_json(t);
  j["dropped"] = table_json(dropped_rows(all, t));
  j["compute_optimal"] = json::array();
  std::string summary;

  if (args.method == "approach2") {
    auto fit = fit_isoflop(t.N, t.C, t.loss, args.budget_tolerance, {}, t.line);
    j["budget_tolerance_decades"] = args.budget_tolerance;
    j["a"] = fit.n_opt.exponent;
    j["b"] = fit.d_opt.exponent;
    auto pl = [](const PowerLawFit& p) {
      return json{{"exponent", p.exponent}, {"coefficient", p.coefficient}, {"residuals", p.residuals},
                  {"rms_residual", p.rms_residual}};
    };
    j["N_opt_fit"] = pl(fit.n_opt);
    j["D_opt_fit"] = pl(fit.d_opt);
    json budgets = json::array();
    for (const auto& b : fit.budgets) {
      std::vector<int> lines;
      for (int r : b.rows) lines.push_back(t.line[r]);
      budgets.push_back({{"C", b.C}, {"points", b.points}, {"parabola", {{"c0", b.c0}, {"c1", b.c1}, {"c2", b.c2}}},
                         {"N_opt", b.N_opt}, {"D_opt", b.D_opt}, {"L_opt", b.L_opt},
                         {"rms_residual", b.rms_residual}, {"extrapolated", b.extrapolated}, {"lines", lines}});
      if (b.extrapolated)
        std::fprintf(stderr, "retort fit: budget C=%s: the parabola's minimum lies outside its model sizes\n",
                     fmt(b.C).c_str());
    }
    j["isoflop_budgets"] = budgets;
    for (double C : args.budgets)
      j["compute_optimal"].push_back({{"C", C},
                                      {"N_opt", fit.n_opt.coefficient * std::pow(C, fit.n_opt.exponent)},
                                      {"D_opt", fit.d_opt.coefficient * std::pow(C, fit.d_opt.exponent)}});
    if (args.bootstrap > 0) {
      auto b = bootstrap(int(t.size()), args.bootstrap, uint64_t(args.seed), 0.95, [&](const std::vector<double>& w) {
        auto f = fit_isoflop(t.N, t.C, t.loss, args.budget_tolerance, w, t.line);
        std::map<std::string, double> v{{"a", f.n_opt.exponent}, {"b", f.d_opt.exponent}};
        for (double C : args.budgets) {
          v["N_opt@" + str_cat(C)] = f.n_opt.coefficient * std::pow(C, f.n_opt.exponent);
          v["D_opt@" + str_cat(C)] = f.d_opt.coefficient * std::pow(C, f.d_opt.exponent);
        }
        return v;
      });
      add_bootstrap(j, b);
    }
    summary = str_cat("Approach 2 on ", t.size(), " points in ", fit.budgets.size(), " budgets: a=",
                      fmt(fit.n_opt.exponent), " b=", fmt(fit.d_opt.exponent));
  } else if (!distill) {
    auto fit = fit_supervised(t.N, t.D, t.loss, form, delta);
    j["delta"] = delta;
    j.update(law_json(fit.law));
    j["objective"] = fit.objective;
    j["starts"] = fit.starts;
    j["starts_converged"] = fit.converged;
    j["residuals"] = fit.residuals;
    j["rms_log_residual"] = rms(fit.residuals);
    for (double C : args.budgets)
      j["compute_optimal"].push_back(
          {{"C", C}, {"N_opt", fit.law.n_opt(C)}, {"D_opt", fit.law.d_opt(C)}, {"L_opt", fit.law.loss_opt(C)}});
    if (args.bootstrap > 0) {
      // Each replicate restarts L-BFGS-B from the full-data optimum (not the whole grid).
      const std::vector<Eigen::VectorXd> start{fit.theta};
      auto b = bootstrap(int(t.size()), args.bootstrap, uint64_t(args.seed), 0.95, [&](const std::vector<double>& w) {
        return law_values(fit_supervised(t.N, t.D, t.loss, form, delta, w, start).law, args.budgets);
      });
      add_bootstrap(j, b);
    }
    const auto& l = fit.law;
    summary = str_cat("Approach 3 (", args.form, ", δ=", delta, ") on ", t.size(), " points, ", fit.starts,
                      " starts: E=", fmt(l.E), " A=", fmt(l.A), " B=", fmt(l.B), " alpha=", fmt(l.alpha),
                      " beta=", fmt(l.beta), " gamma=", fmt(l.gamma), " -> a=", fmt(l.exponent_a()),
                      " b=", fmt(l.exponent_b()));
  } else {
    auto fit = fit_distillation(t.N, t.D, t.teacher_loss, t.loss, supervised, delta);
    const auto& l = fit.law;
    j["delta"] = delta;
    j.update(json{{"c0", l.c0}, {"c1", l.c1}, {"d1", l.d1}, {"f1", l.f1}, {"A", l.A}, {"B", l.B},
                  {"alpha", l.alpha}, {"beta", l.beta}, {"gamma", l.gamma}});
    j["supervised"] = law_json(supervised);
    j["supervised"]["source"] = args.supervised_json;
    std::vector<double> sup_loss;
    for (size_t i = 0; i < t.size(); ++i) sup_loss.push_back(supervised.loss(t.N[i], t.D[i]));
    j["data"]["supervised_loss"] = sup_loss;
    j["objective"] = fit.objective;
    j["starts"] = fit.starts;
    j["starts_converged"] = fit.converged;
    j["residuals"] = fit.residuals;
    j["rms_log_residual"] = rms(fit.residuals);
    if (args.bootstrap > 0) {
      const std::vector<Eigen::VectorXd> start{fit.theta};
      auto b = bootstrap(int(t.size()), args.bootstrap, uint64_t(args.seed), 0.95, [&](const std::vector<double>& w) {
        auto f = fit_distillation(t.N, t.D, t.teacher_loss, t.loss, supervised, delta, w, start).law;
        return std::map<std::string, double>{{"c0", f.c0},       {"c1", f.c1},     {"d1", f.d1},
                                             {"f1", f.f1},       {"A", f.A},       {"B", f.B},
                                             {"alpha", f.alpha}, {"beta", f.beta}, {"gamma", f.gamma}};
      });
      add_bootstrap(j, b);
    }
    summary = str_cat("distillation law (δ=", delta, ") on ", t.size(), " points, ", fit.starts, " starts: c0=",
                      fmt(l.c0), " c1=", fmt(l.c1), " d1=", fmt(l.d1), " f1=", fmt(l.f1), " A'=", fmt(l.A),
                      " B'=", fmt(l.B), " alpha'=", fmt(l.alpha), " beta'=", fmt(l.beta), " gamma'=", fmt(l.gamma));
  }

  // ---- outputs ----
  std::filesystem::path out(args.out);
  if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path());
  fs::write_file_atomic(args.out, j.dump(2) + "\n");
  std::cout << "retort fit: " << summary << "\n";
  for (const auto& e : j["compute_optimal"]) {
    std::cout << "  C=" << fmt(e["C"]) << ": N_opt=" << fmt(e["N_opt"]) << " D_opt=" << fmt(e["D_opt"]);
    if (e.contains("L_opt")) std::cout << " L_opt=" << fmt(e["L_opt"]);
    std::cout << "\n";
  }
  std::cout << "  wrote " << args.out << "\n";
  if (args.plot) {
    std::cout << std::flush;
    std::string why;
    if (run_plot_script(args.out, &why))
      std::cout << "  plots next to " << args.out << "\n";
    else
      std::cout << "  plots skipped: " << why << "\n";
  }
  return 0;
}

}  // namespace retort
