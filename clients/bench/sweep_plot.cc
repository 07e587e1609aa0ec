#include "clients/bench/sweep_plot.h"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"

namespace moeserve::bench {
namespace {

// Quotes for a POSIX shell word.
std::string ShellQuote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) {
    if (c == '\'') {
      quoted += "'\\''";
    } else {
      quoted += c;
    }
  }
  return quoted + "'";
}

// A gnuplot string literal (single quotes; embedded quotes doubled).
std::string GnuplotQuote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) {
    quoted += c;
    if (c == '\'') quoted += '\'';
  }
  return quoted + "'";
}

}  // namespace

bool GnuplotAvailable() {
  const char* path = std::getenv("PATH");
  if (path == nullptr) return false;
  for (const absl::string_view dir : absl::StrSplit(path, ':')) {
    if (dir.empty()) continue;
    const std::string candidate = absl::StrCat(dir, "/gnuplot");
    if (access(candidate.c_str(), X_OK) == 0) return true;
  }
  return false;
}

std::string GnuplotScript(const std::string& data_path, const std::string& png_path,
                          const std::string& title) {
  return absl::StrCat(
      "set terminal pngcairo size 1000,640 noenhanced\n", "set output ", GnuplotQuote(png_path),
      "\n", "set title ", GnuplotQuote(title), "\n", "set xlabel 'output throughput (tok/s)'\n",
      "set ylabel 'latency (ms)'\n", "set key left top\n", "set grid\n",
      "set logscale y\n",  // TTFT and ITL differ by orders of magnitude
      // Columns: label, out tok/s, mean TTFT, p99 TTFT, mean TPOT, mean ITL, mean E2EL.
      "plot ", GnuplotQuote(data_path), " using 2:3 with linespoints title 'mean TTFT', \\\n",
      "     '' using 2:4 with linespoints title 'p99 TTFT', \\\n",
      "     '' using 2:5 with linespoints title 'mean TPOT', \\\n",
      "     '' using 2:6 with linespoints title 'mean ITL', \\\n",
      "     '' using 2:3:1 with labels offset 0,1 notitle\n");
}

absl::Status PlotSweep(const std::vector<SweepPoint>& points, const std::string& png_path,
                       const std::string& title) {
  if (!GnuplotAvailable()) {
    return absl::NotFoundError("gnuplot is not installed (apt-get install gnuplot-nox)");
  }
  const std::filesystem::path png(png_path);
  const std::string base = (png.parent_path() / png.stem()).string();
  const std::string data_path = base + ".dat";
  const std::string script_path = base + ".gp";
  {
    std::ofstream data(data_path);
    data << "# label out_tok_s mean_ttft_ms p99_ttft_ms mean_tpot_ms mean_itl_ms mean_e2el_ms\n";
    for (const SweepPoint& p : points) {
      data << absl::StrFormat("\"%s\" %.4f %.4f %.4f %.4f %.4f %.4f\n", p.label,
                              p.output_throughput, p.mean_ttft_ms, p.p99_ttft_ms, p.mean_tpot_ms,
                              p.mean_itl_ms, p.mean_e2el_ms);
    }
    std::ofstream script(script_path);
    script << GnuplotScript(data_path, png_path, title);
    if (!data || !script)
      return absl::UnavailableError(absl::StrCat("cannot write ", base, ".{dat,gp}"));
  }
  const std::string command = absl::StrCat("gnuplot ", ShellQuote(script_path), " 2>&1");
  const int rc = std::system(command.c_str());
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("gnuplot failed (exit ", rc, "); script: ", script_path));
  }
  return absl::OkStatus();
}

}  // namespace moeserve::bench
