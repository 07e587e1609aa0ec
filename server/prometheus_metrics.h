// The server's Prometheus metrics: implements engine::MetricsRecorder with vLLM's metric
// semantics and buckets under the moeserve_ prefix (ecosystem.md §2.1, §2.5), plus the gRPC
// call counter and the MoE expert-load series.
//
// main.cc creates one, hands it to engine::Engine::Create as the MetricsRecorder, reports every
// finished RPC through OnGrpcCall, and serves Serialize() at /metrics (server/http/metrics_port.h).
// The engine thread calls the recorder hooks, gRPC threads call OnGrpcCall and the HTTP thread
// calls Serialize, all concurrently: every public method is thread-safe.
//
// Request-level series (prompt and generation tokens, finished requests by reason, the latency
// histograms) come from the per-request hooks, so a caller that filters those (the server's
// warmup gate) keeps them consistent with each other. Engine-level counters the engine keeps
// cumulatively (preemptions, prefix-cache tokens, per-expert routed tokens) come from the step
// snapshots, by adding the growth since the last one seen. Every family carries the constant
// label model_name.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "engine/engine_stats.h"
#include "engine/metrics_recorder.h"
#include "engine/request.h"
#include "engine/stop_checker.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace moeserve::server {

class PrometheusMetrics : public engine::MetricsRecorder {
 public:
  struct Options {
    std::string model_name;  // the served model name (label model_name)
    int64_t num_layers = 0;  // decoder layers; rows of EngineStats::expert_token_counts
    int64_t num_routed_experts = 0;
    // moe_layers[l] is true for MoE layers (ModelConfig::IsMoeLayer); only those get expert
    // series. Empty means every layer is MoE when num_routed_experts > 0.
    std::vector<bool> moe_layers;
    int64_t block_size = 64;    // KV block size in tokens (cache_config_info)
    int64_t num_kv_blocks = 0;  // KV pool size in blocks (cache_config_info)
    // Export moeserve_moe_expert_tokens_total{layer,expert}: num_moe_layers x num_experts
    // series (14,848 for DeepSeek-V3), so opt-in (--per-expert-metrics).
    bool per_expert_counters = false;
    // Prompt + output tokens of one request: the top of the token-count histograms' 1-2-5
    // buckets (request_prompt_tokens, request_generation_tokens, request_params_max_tokens).
    int64_t max_model_len = 4096;
    // --speculative-tokens: the spec_decode series exist when > 0, with one per-position
    // counter for each draft position.
    int64_t speculative_tokens = 0;
  };

  explicit PrometheusMetrics(const Options& options);
  PrometheusMetrics(const PrometheusMetrics&) = delete;
  PrometheusMetrics& operator=(const PrometheusMetrics&) = delete;
  ~PrometheusMetrics() override;

  // One finished RPC; `code` is the gRPC status code name ("OK", "INVALID_ARGUMENT", ...).
  void OnGrpcCall(const std::string& method, const std::string& code);
  // One answered HTTP request; `endpoint` is a fixed route label ("/v1/completions", "other").
  void OnHttpRequest(const std::string& endpoint, int status);

  // Optional: where Serialize reads a fresh engine snapshot before each scrape (typically
  // [&engine] { return engine->Stats(); }). The engine calls OnStep only after a step that ran,
  // so without this the gauges would keep their last value when a cancel or abort frees the
  // last running request and the engine goes idle. Pass {} to detach (before the engine dies).
  void SetStatsSource(std::function<engine::EngineStats()> source);

  // Takes `stats`' cumulative values (tokens, preemptions, prefix-cache and expert counts) as
  // the baseline without counting them: what the engine did before (the warmup) is not
  // exported.
  void StartCountingFrom(const engine::EngineStats& stats);

  // The registry in Prometheus text exposition format 0.0.4.
  std::string Serialize() const;

  // engine::MetricsRecorder (engine thread).
  void OnFirstToken(double ttft_seconds) override;
  void OnInterTokenLatency(double seconds) override;
  void OnRequestFinished(engine::FinishReason reason, const engine::Usage& usage,
                         const engine::RequestTimestamps& timestamps, int64_t max_tokens) override;
  void OnStep(const engine::EngineStats& stats) override;

 private:
  // Last cumulative values seen, so each snapshot adds only its growth to the counters.
  struct Cumulative {
    int64_t total_steps = -1;  // orders snapshots: an older one never overwrites the gauges
    int64_t preemptions = 0;
    int64_t prefix_query_tokens = 0;
    int64_t prefix_hit_tokens = 0;
    int64_t generated_tokens = 0;
    std::vector<int64_t> expert_token_counts;
    engine::SpeculativeStats speculation;
  };

  // Sets the gauges and advances the counters from a snapshot (OnStep or a scrape).
  void ApplySnapshot(const engine::EngineStats& stats) const;
  void ApplyExpertCounts(const std::vector<int64_t>& counts) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ApplySpeculation(const engine::SpeculativeStats& stats) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool IsMoeLayer(int64_t layer) const;

  const Options options_;
  std::shared_ptr<prometheus::Registry> registry_;

  // Metric objects are owned by registry_ and updated lock-free (prometheus-cpp is thread-safe).
  prometheus::Gauge* num_requests_running_;
  prometheus::Gauge* num_requests_waiting_;
  prometheus::Gauge* kv_cache_usage_perc_;
  prometheus::Counter* prompt_tokens_;
  prometheus::Counter* generation_tokens_;
  prometheus::Family<prometheus::Counter>* request_success_;
  prometheus::Counter* num_preemptions_;
  prometheus::Counter* prefix_cache_queries_;
  prometheus::Counter* prefix_cache_hits_;
  prometheus::Histogram* time_to_first_token_;
  prometheus::Histogram* inter_token_latency_;
  prometheus::Histogram* e2e_request_latency_;
  prometheus::Histogram* request_queue_time_;
  prometheus::Histogram* request_prefill_time_;
  prometheus::Histogram* request_decode_time_;
  prometheus::Histogram* time_per_output_token_;
  prometheus::Histogram* request_prompt_tokens_;
  prometheus::Histogram* request_generation_tokens_;
  prometheus::Histogram* request_params_max_tokens_;
  prometheus::Histogram* iteration_tokens_;
  prometheus::Histogram* engine_step_time_;
  prometheus::Family<prometheus::Counter>* grpc_requests_;
  prometheus::Family<prometheus::Counter>* http_requests_;
  // Speculative decoding (vLLM's spec_decode series); null / empty when it is off.
  prometheus::Counter* spec_num_drafts_ = nullptr;
  prometheus::Counter* spec_num_draft_tokens_ = nullptr;
  prometheus::Counter* spec_num_accepted_tokens_ = nullptr;
  std::vector<prometheus::Counter*> spec_accepted_per_position_;
  // Indexed by layer; null for dense layers.
  std::vector<prometheus::Counter*> moe_routed_tokens_;
  std::vector<prometheus::Gauge*> moe_balancedness_;
  // [layer * num_routed_experts + expert]; empty unless per_expert_counters.
  std::vector<prometheus::Counter*> moe_expert_tokens_;

  // Serialize is const but refreshes from the stats source, hence mutable.
  mutable std::mutex mu_;
  mutable Cumulative last_ ABSL_GUARDED_BY(mu_);
  // Held while the source runs, so SetStatsSource({}) waits out a scrape still calling it.
  mutable std::mutex source_mu_;
  std::function<engine::EngineStats()> stats_source_ ABSL_GUARDED_BY(source_mu_);
};

}  // namespace moeserve::server
