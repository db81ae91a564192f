// Runs scaling/plot_fit.py (Debian's /usr/bin/python3 with matplotlib) on a fit.json; the PNGs
// land next to it. Plotting is optional: failure is reported, never thrown.
#pragma once
#include <string>

namespace retort::scaling {

// Returns true when the plots were written; otherwise *why says what was missing.
bool run_plot_script(const std::string& fit_json, std::string* why);

}  // namespace retort::scaling
