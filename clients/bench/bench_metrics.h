// The numbers of a run, computed from the per-request records exactly as `vllm bench serve`
// does (vllm/benchmarks/serve.py, calculate_metrics; ecosystem.md §3):
//   TTFT   start -> first message with token ids, per successful request;
//   TPOT   (E2EL - TTFT) / (output_tokens - 1), per request with more than one token;
//   ITL    every gap between messages with token ids, pooled over all requests;
//   E2EL   start -> end of the response, per successful request;
//   throughputs are totals over the benchmark duration; goodput counts requests meeting every
//   SLO of --goodput (TPOT of a one-token request counts as 0 there, as vLLM);
//   peak output tokens/s is the busiest whole second since the first request started, and
//   peak concurrency is a sweep over the [start, end) intervals of successful requests.
// Output tokens are the ids counted in the stream (a message may carry several); vLLM counts
// one token per streamed chunk in the peak buckets, we count the ids, which is the same on a
// one-token-per-message stream and right on a multi-token one.
//
// Called once per run by main.cc; pure.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "clients/bench/request_record.h"
#include "clients/bench/statistics.h"

namespace moeserve::bench {

// --goodput ttft:MS tpot:MS e2el:MS; absent keys are not checked.
struct GoodputSlo {
  std::optional<double> ttft_ms;
  std::optional<double> tpot_ms;
  std::optional<double> e2el_ms;
  bool empty() const { return !ttft_ms && !tpot_ms && !e2el_ms; }
};

// Parses "KEY:VALUE" pairs (keys ttft, tpot, e2el; values in ms, >= 0).
absl::StatusOr<GoodputSlo> ParseGoodput(const std::vector<std::string>& pairs);

struct BenchmarkMetrics {
  int64_t completed = 0;
  int64_t failed = 0;
  int64_t total_input = 0;
  int64_t total_output = 0;
  double duration_s = 0.0;
  double request_throughput = 0.0;
  std::optional<double> request_goodput;  // only with an SLO
  double output_throughput = 0.0;
  double total_token_throughput = 0.0;
  double max_output_tokens_per_s = 0.0;
  int64_t max_concurrent_requests = 0;
  MetricSummary ttft_ms;
  MetricSummary tpot_ms;
  MetricSummary itl_ms;
  MetricSummary e2el_ms;
  // Client minus server view of each successful request, from GenerateComplete.timing (which
  // starts at the server's arrival): the request path (client, gRPC, validation, tokenizing)
  // plus the delivery of the first token (TTFT gap) or of the end of the stream (E2EL gap).
  MetricSummary ttft_gap_ms;
  MetricSummary e2el_gap_ms;
  int64_t num_server_timed = 0;  // successes whose completion carried the server's timing
  std::map<std::string, int64_t> errors_by_code;  // failed requests by gRPC status code name
  // Successful requests whose streamed id count differs from the server's usage count.
  int64_t usage_mismatches = 0;
  std::vector<int64_t> output_lens;  // per record, 0 for failures (vLLM's actual_output_lens)
};

BenchmarkMetrics ComputeMetrics(const std::vector<RequestRecord>& records, double duration_s,
                                const std::vector<double>& percentiles, const GoodputSlo& slo);

// TPOT of one request in seconds, 0 when it produced at most one token.
double RequestTpot(const RequestRecord& record);

}  // namespace moeserve::bench
