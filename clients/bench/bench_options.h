// moeserve-bench's command line: the flags (named as `vllm bench serve` names them, where it
// has them) and their checks.
//
// main.cc registers the flags on a CLI11 app with AddBenchFlags, parses, then calls
// FinishBenchOptions, which checks the combinations and turns strings into typed values.
#pragma once

#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "clients/bench/arrival_process.h"
#include "clients/bench/bench_metrics.h"
#include "clients/bench/report.h"
#include "clients/bench/sampling_flags.h"

namespace moeserve::bench {

struct SweepSpec {
  std::string parameter;  // "request-rate" | "max-concurrency"
  std::vector<double> values;
};

struct BenchOptions {
  // Server. --backend grpc reaches --target; openai and openai-chat reach --base-url.
  std::string backend = "grpc";  // grpc | openai | openai-chat
  std::string target = "127.0.0.1:50051";
  int num_channels = 1;
  std::string base_url = "http://127.0.0.1:8000";  // normalized by FinishBenchOptions
  std::string model;                               // openai: empty = the first of /v1/models
  std::string api_key;                             // Bearer token, both backends
  double ready_timeout_s = 60.0;

  // Dataset.
  std::string dataset_name = "random";  // random | jsonl | sharegpt
  std::string dataset_path;
  int64_t num_prompts = 1000;
  std::optional<double> duration_s;
  int64_t input_len = 1024;
  int64_t output_len = 128;
  bool output_len_set = false;  // an explicit --output-len overrides file datasets
  double range_ratio = 0.0;
  int64_t prefix_len = 0;

  // Load.
  double request_rate = std::numeric_limits<double>::infinity();
  double burstiness = 1.0;
  std::optional<int64_t> max_concurrency;
  std::string ramp_up_strategy;  // "" | linear | exponential
  double ramp_up_start_rps = 0.0;
  double ramp_up_end_rps = 0.0;
  int64_t num_warmups = 0;
  uint64_t seed = 0;
  std::optional<double> request_timeout_s;
  SamplingFlags sampling;
  bool ignore_eos = false;

  // Report.
  std::string percentile_metrics = "ttft,tpot,itl,e2el";
  std::string metric_percentiles = "90,99";
  std::vector<std::string> goodput;
  std::string save_result;
  std::string save_detailed;
  std::string label = "moeserve";
  std::vector<std::string> metadata;
  std::string sweep;
  std::string plot;
  std::string scrape_metrics;
  double scrape_interval_s = 1.0;
  bool disable_progress = false;

  // Filled by FinishBenchOptions.
  ArrivalOptions arrival;
  GoodputSlo slo;
  ReportSelection selection;
  std::map<std::string, std::string> metadata_map;
  std::optional<SweepSpec> sweep_spec;
};

void AddBenchFlags(CLI::App& app, BenchOptions& options);

// Checks the parsed flags and fills the typed fields.
absl::Status FinishBenchOptions(BenchOptions& options);

// "request-rate=1,2,inf" or "max-concurrency=1,4,16".
absl::StatusOr<SweepSpec> ParseSweep(const std::string& text);

}  // namespace moeserve::bench
