// --plot FILE.png: the latency-vs-throughput chart of a --sweep, drawn by gnuplot.
//
// gnuplot is optional at runtime (Debian's gnuplot-nox, installed by scripts/setup): when it is
// not on PATH, PlotSweep says so and the run goes on without a chart. Called by main.cc once
// after the sweep.
#pragma once

#include <string>
#include <vector>

#include "absl/status/status.h"

namespace moeserve::bench {

struct SweepPoint {
  std::string label;               // the swept value, e.g. "4" or "inf"
  double output_throughput = 0.0;  // tok/s
  double mean_ttft_ms = 0.0;
  double p99_ttft_ms = 0.0;
  double mean_tpot_ms = 0.0;
  double mean_itl_ms = 0.0;
  double mean_e2el_ms = 0.0;
};

// Whether a `gnuplot` executable is on PATH.
bool GnuplotAvailable();

// The gnuplot script that draws `points` from `data_path` into `png_path` (pure, tested).
std::string GnuplotScript(const std::string& data_path, const std::string& png_path,
                          const std::string& title);

// Writes the data and script next to `png_path` (FILE.dat, FILE.gp) and runs gnuplot.
// NotFound when gnuplot is missing.
absl::Status PlotSweep(const std::vector<SweepPoint>& points, const std::string& png_path,
                       const std::string& title);

}  // namespace moeserve::bench
