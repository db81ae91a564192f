// Results table for scaling-law fits: one row per training run, read from a CSV with
// configurable column names. Tokens come from the D column, or from compute as D = C/(6N)
// when only C is present. Errors name file:line and the column.
#pragma once
#include <istream>
#include <string>
#include <utility>
#include <vector>

namespace retort::scaling {

struct ColumnNames {
  std::string n = "N";                        // parameters (student parameters N_S for distillation)
  std::string d = "D";                        // training tokens (D_S)
  std::string c = "C";                        // training FLOPs; used for D = C/(6N) when D is absent
  std::string loss = "loss";                  // final loss (student loss L_S); "loss" falls
                                              // back to final_val_loss (retort collect's name)
  std::string teacher_loss = "teacher_loss";  // teacher loss L_T (distillation law only)
  std::string data_epochs = "data_epochs";    // optional: times each run read its data (collect)
  // Keep only rows whose column equals the value (all must hold), e.g. {"status", "complete"}.
  // Rows filtered out are not parsed further.
  std::vector<std::pair<std::string, std::string>> where;
};

struct ResultsTable {
  std::string source;  // file name, for messages
  std::vector<double> N, D, C, loss;
  std::vector<double> teacher_loss;  // empty unless requested
  std::vector<double> data_epochs;   // empty without the column; NaN where a row's field is empty
  std::vector<int> line;             // 1-based line of each row in the source
  bool c_from_column = false;        // C read from the file (else C = 6·N·D)
  size_t size() const { return N.size(); }
};

// Parses CSV text (header line + rows; double-quoted fields allowed; blank lines skipped).
// Throws ConfigError for a missing column (usage), Error for malformed rows: wrong field count,
// non-numeric or non-finite values, N, D, C or loss <= 0.
ResultsTable parse_results_csv(std::istream& in, const std::string& source, const ColumnNames& cols,
                               bool need_teacher_loss);
// Reads a file; an unreadable file is an Error.
ResultsTable read_results_csv(const std::string& path, const ColumnNames& cols, bool need_teacher_loss);

// The table without its k highest-loss rows (ties broken by row order). k >= size() is a ConfigError.
ResultsTable drop_highest_loss(const ResultsTable& t, int k);

// The rows i of t with keep[i] (keep has t.size() entries), in order.
ResultsTable select_rows(const ResultsTable& t, const std::vector<bool>& keep);

}  // namespace retort::scaling
