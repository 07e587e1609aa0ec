// Summary statistics of latency samples, defined exactly as numpy computes them, because
// `vllm bench serve` reports np.mean / np.median / np.std / np.percentile and our numbers must
// be comparable with its (ecosystem.md §3).
//
// Called by bench_metrics.cc on seconds; pure functions, no state. An empty sample set yields
// 0 for every statistic, which is what vLLM's `np.mean(values or 0)` idiom produces.
#pragma once

#include <utility>
#include <vector>

namespace moeserve::bench {

double Mean(const std::vector<double>& values);
// Population standard deviation (numpy's default ddof=0).
double StdDev(const std::vector<double>& values);
double Median(const std::vector<double>& values);
// numpy's default "linear" method: the value at rank p/100 * (n - 1) of the sorted samples,
// interpolated between neighbours. `p` in [0, 100].
double Percentile(std::vector<double> values, double p);

struct MetricSummary {
  double mean = 0.0;
  double median = 0.0;
  double std = 0.0;
  std::vector<std::pair<double, double>> percentiles;  // (p, value), in the order asked
};

// Summarises `values` scaled by `scale` (1000 turns seconds into milliseconds).
MetricSummary Summarize(const std::vector<double>& values, const std::vector<double>& percentiles,
                        double scale = 1.0);

}  // namespace moeserve::bench
