#include "clients/bench/statistics.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace moeserve::bench {

double Mean(const std::vector<double>& values) {
  if (values.empty()) return 0.0;
  return std::accumulate(values.begin(), values.end(), 0.0) / static_cast<double>(values.size());
}

double StdDev(const std::vector<double>& values) {
  if (values.empty()) return 0.0;
  const double mean = Mean(values);
  double sum_squares = 0.0;
  for (double v : values) sum_squares += (v - mean) * (v - mean);
  return std::sqrt(sum_squares / static_cast<double>(values.size()));
}

double Median(const std::vector<double>& values) { return Percentile(values, 50.0); }

double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return 0.0;
  std::sort(values.begin(), values.end());
  const double rank = std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(values.size() - 1);
  const size_t below = static_cast<size_t>(std::floor(rank));
  const size_t above = std::min(below + 1, values.size() - 1);
  const double fraction = rank - static_cast<double>(below);
  return values[below] + (values[above] - values[below]) * fraction;
}

MetricSummary Summarize(const std::vector<double>& values, const std::vector<double>& percentiles,
                        double scale) {
  MetricSummary summary{.mean = Mean(values) * scale,
                        .median = Median(values) * scale,
                        .std = StdDev(values) * scale};
  for (double p : percentiles) summary.percentiles.emplace_back(p, Percentile(values, p) * scale);
  return summary;
}

}  // namespace moeserve::bench
