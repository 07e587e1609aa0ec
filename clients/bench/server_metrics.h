// --scrape-metrics: the server's own view of a run, from its Prometheus /metrics page read
// before and after the run (and polled during it for the KV-cache gauge), to print beside the
// client's numbers.
//
// Server-side means come from histogram growth: (sum_after - sum_before) / (count_after -
// count_before), so earlier traffic on the server does not leak in. The metric names are the
// server's (server/prometheus_metrics.cc: moeserve_* with vLLM's semantics); a series the
// server does not export is reported as missing rather than as 0. Used by main.cc; MetricsText
// is immutable, MetricsWatcher owns one polling thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace moeserve::bench {

// The server series the report reads (ecosystem.md §2.1 names under our prefix).
inline constexpr char kTtftSeries[] = "moeserve_time_to_first_token_seconds";
inline constexpr char kItlSeries[] = "moeserve_inter_token_latency_seconds";
inline constexpr char kE2eSeries[] = "moeserve_e2e_request_latency_seconds";
inline constexpr char kQueueSeries[] = "moeserve_request_queue_time_seconds";
inline constexpr char kPrefillSeries[] = "moeserve_request_prefill_time_seconds";
inline constexpr char kDecodeSeries[] = "moeserve_request_decode_time_seconds";
inline constexpr char kKvUsageSeries[] = "moeserve_kv_cache_usage_perc";
inline constexpr char kRunningSeries[] = "moeserve_num_requests_running";

// One parsed exposition page (text format 0.0.4). Comment and malformed lines are skipped.
class MetricsText {
 public:
  struct Sample {
    std::string name;
    std::map<std::string, std::string> labels;
    double value = 0.0;
  };

  static MetricsText Parse(const std::string& text);

  bool Has(const std::string& name) const;
  // Sum over every label set of `name` (0 if absent).
  double Sum(const std::string& name) const;
  // Sums of `name` grouped by the value of `label`.
  std::map<std::string, double> SumBy(const std::string& name, const std::string& label) const;
  // Histogram base names (from their _count series) that start with `prefix` and contain `part`.
  std::vector<std::string> HistogramsMatching(const std::string& prefix,
                                              const std::string& part) const;
  const std::vector<Sample>& samples() const { return samples_; }

 private:
  std::vector<Sample> samples_;
};

// Growth of one histogram between two scrapes.
struct HistogramGrowth {
  double sum = 0.0;
  double count = 0.0;
  double Mean() const { return count > 0.0 ? sum / count : 0.0; }
};

struct ServerMetricsReport {
  std::optional<HistogramGrowth> ttft, itl, e2e, queue, prefill, decode;
  // Engine step duration, if the server exports a *step*_seconds histogram (name below).
  std::optional<HistogramGrowth> step;
  std::string step_series;
  std::optional<HistogramGrowth> iteration_tokens;  // tokens per engine step
  double generation_tokens = 0.0;
  double prompt_tokens = 0.0;
  double preemptions = 0.0;
  double prefix_cache_queries = 0.0;
  double prefix_cache_hits = 0.0;
  std::map<std::string, double> finished_by_reason;
  // Speculative decoding (moeserve_spec_decode_*, only when the server exports them):
  // mean acceptance length = 1 + accepted / drafts, acceptance rate = accepted / draft tokens.
  std::optional<double> spec_drafts, spec_draft_tokens, spec_accepted_tokens;
  std::map<std::string, double> spec_accepted_per_position;  // by the position label
  std::optional<double> MeanAcceptanceLength() const {
    if (!spec_drafts || *spec_drafts <= 0.0) return std::nullopt;
    return 1.0 + spec_accepted_tokens.value_or(0.0) / *spec_drafts;
  }
  std::optional<double> kv_usage_after;
  std::optional<double> kv_usage_peak;  // over the polls during the run
  std::optional<double> kv_usage_mean;
  std::optional<double> running_peak;
  std::vector<std::string> missing;  // series the report wanted but the server lacks
};

// The gauges read during the run: only they change meaning between two scrapes.
struct GaugePoll {
  std::optional<double> kv_usage;
  std::optional<double> num_running;
};
GaugePoll ReadGauges(const MetricsText& page);

// `polls` were read during the run (may be empty).
ServerMetricsReport CompareMetrics(const MetricsText& before, const MetricsText& after,
                                   const std::vector<GaugePoll>& polls);

// The report as JSON (seconds turned into ms), for the result file and the summary.
nlohmann::json ServerMetricsJson(const ServerMetricsReport& report);

// Reads `url` every `period_s` on its own thread until Stop().
class MetricsWatcher {
 public:
  MetricsWatcher(std::string url, double period_s);
  ~MetricsWatcher();
  MetricsWatcher(const MetricsWatcher&) = delete;
  MetricsWatcher& operator=(const MetricsWatcher&) = delete;

  void Start();
  std::vector<GaugePoll> Stop();  // one per page read (failed reads are skipped)

 private:
  const std::string url_;
  const double period_s_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<GaugePoll> polls_;  // guarded by mu_
  std::thread thread_;
};

// Fetches and parses `url` once.
absl::StatusOr<MetricsText> ScrapeMetrics(const std::string& url);

}  // namespace moeserve::bench
