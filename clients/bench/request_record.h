// What the client observed for one request: the raw material of every metric.
//
// Written by one call of a backend (GenerateCall for gRPC, an OpenAiStreamReader for the
// openai backends) while its stream runs and read by bench_metrics.cc and report.cc after the
// run. Times are seconds on the client's steady clock, relative to the start of the run, so
// the detailed JSONL lines up with the arrival schedule.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace moeserve::bench {

struct RequestRecord {
  int64_t index = 0;  // position in the run (and in the dataset)
  std::string request_id;
  int64_t prompt_len = 0;       // tokens sent (the server's usage when it reports one)
  int64_t max_tokens = 0;       // output length asked for
  double scheduled_time = 0.0;  // when the arrival process released it
  double start_time = 0.0;      // when the call was started (after any --max-concurrency wait)

  bool success = false;
  std::string status_code = "OK";  // gRPC code name, or HTTP_<status> etc.; "OK" when success
  std::string error;               // status message (or protocol error) on failure

  // Response timing, as `vllm bench serve`: ttft = start -> first message carrying token ids;
  // itl = the gap before each later message carrying ids; latency (E2EL) = start -> the
  // stream's `complete` message.
  double ttft = 0.0;
  std::vector<double> itl;
  double latency = 0.0;
  // Arrival time (relative to start) and id count of every message that carried ids: the
  // peak-throughput buckets count tokens, not messages.
  std::vector<double> token_message_times;
  std::vector<int32_t> token_message_counts;

  int64_t output_tokens = 0;             // ids counted in the stream
  int64_t server_completion_tokens = 0;  // GenerateComplete.completion_tokens
  int64_t server_prompt_tokens = 0;      // GenerateComplete.prompt_tokens
  int64_t server_cached_tokens = 0;
  int64_t complete_output_ids = 0;  // size of GenerateComplete.output_ids
  std::string finish_reason;        // "stop" | "length" | "abort"
  double server_ttft = 0.0;         // GenerateComplete.timing (engine's view)
  double server_e2e = 0.0;
  double server_queue = 0.0;
};

}  // namespace moeserve::bench
