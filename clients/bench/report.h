// What a run leaves behind: the summary table on stdout, the result JSON with `vllm bench
// serve`'s key names (so its compare and plot scripts read ours), the per-request JSONL, and a
// row per point of a --sweep.
//
// Called by main.cc after each run; pure formatting plus file writes.
#pragma once

#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "clients/bench/bench_metrics.h"
#include "clients/bench/request_record.h"
#include "clients/bench/server_metrics.h"
#include "nlohmann/json.hpp"

namespace moeserve::bench {

// The settings of a run, as vLLM's result JSON names them.
struct RunInfo {
  std::string date;                       // vLLM's "%Y%m%d-%H%M%S" (local time)
  std::string label;                      // --label, default "moeserve"
  std::string backend = "moeserve-grpc";  // or vLLM's names "openai" / "openai-chat"
  std::string model_id;  // the served model name (GetModelInfo, or the model requested)
  std::string target;    // HOST:PORT (grpc) or the base URL (openai backends)
  std::string dataset;   // random | jsonl | sharegpt
  int64_t num_prompts = 0;
  double request_rate = 0.0;  // inf allowed
  double burstiness = 1.0;
  std::optional<int64_t> max_concurrency;
  std::string ramp_up_strategy;  // empty: none
  double ramp_up_start_rps = 0.0;
  double ramp_up_end_rps = 0.0;
  std::optional<double> duration_limit_s;       // --duration
  std::map<std::string, std::string> metadata;  // --metadata KEY=VALUE
  nlohmann::json context;                       // device, commit of the client machine
};

// Which metrics get statistics (--percentile-metrics) and at which percentiles.
struct ReportSelection {
  std::vector<std::string> metrics = {"ttft", "tpot", "itl", "e2el"};
  std::vector<double> percentiles = {90.0, 99.0};
};

// vLLM's name for percentile p: "99" or "99.9".
std::string PercentileName(double p);

// The result JSON, keys in vLLM's order. With `records` (--save-detailed) it also carries
// vLLM's per-request arrays (input_lens, output_lens, ttfts, itls, latencies, start_times,
// errors).
nlohmann::ordered_json ResultJson(const RunInfo& info, const BenchmarkMetrics& metrics,
                                  const ReportSelection& selection,
                                  const std::optional<ServerMetricsReport>& server,
                                  const std::vector<RequestRecord>* records);

void PrintSummary(std::FILE* out, const RunInfo& info, const BenchmarkMetrics& metrics,
                  const ReportSelection& selection,
                  const std::optional<ServerMetricsReport>& server);

// One JSON object per request.
absl::Status WriteDetailedJsonl(const std::string& path, const std::vector<RequestRecord>& records);
// Indented for reading, or on one line like vLLM's when it carries per-request arrays.
absl::Status WriteJson(const std::string& path, const nlohmann::ordered_json& json, bool compact);

// The --sweep table: `parameter` is "request-rate" or "max-concurrency".
std::string SweepHeader(const std::string& parameter);
std::string SweepRow(const std::string& value, const BenchmarkMetrics& metrics,
                     const std::optional<ServerMetricsReport>& server);

// "result.json" + "rate4" -> "result-rate4.json" (one file per sweep point).
std::string WithSuffix(const std::string& path, const std::string& suffix);

}  // namespace moeserve::bench
