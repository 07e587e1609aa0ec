#include "server/prometheus_metrics.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <utility>

#include "prometheus/text_serializer.h"

namespace moeserve::server {
namespace {

using prometheus::Histogram;

// vLLM's buckets (vllm/v1/metrics/loggers.py, ecosystem.md §2.1), so dashboards and SLO
// queries written for vLLM work unchanged.
const Histogram::BucketBoundaries& TtftBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{
      0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,  0.25,  0.5,   0.75,
      1.0,   2.5,   5.0,  7.5,  10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0};
  return *b;
}

// Inter-token latency and time per output token: vLLM's buckets with 1, 2.5 and 5 ms in front,
// since a CPU decode step of a small model takes a few milliseconds (all of them would otherwise
// fall in the first bucket). A superset of vLLM's, so its quantile queries work unchanged.
const Histogram::BucketBoundaries& InterTokenBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1,  0.15, 0.2,  0.3,
      0.4,   0.5,    0.75,  1.0,  2.5,   5.0,  7.5,   10.0, 20.0, 40.0, 80.0};
  return *b;
}

// Shared by the e2e, queue, prefill and decode request histograms: vLLM's from 0.3 s, with
// millisecond buckets in front (a queue or prefill time on a small model is a few ms).
const Histogram::BucketBoundaries& RequestLatencyBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{
      0.001, 0.0025, 0.005, 0.01,  0.025, 0.05,  0.1,   0.2,    0.3,   0.5,
      0.8,   1.0,    1.5,   2.0,   2.5,   5.0,   10.0,  15.0,   20.0,  30.0,
      40.0,  50.0,   60.0,  120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0};
  return *b;
}

// Token counts of one request: 1, 2, 5, 10, 20, 50, ... up to max_model_len, as vLLM's
// build_1_2_5_buckets.
Histogram::BucketBoundaries TokenCountBuckets(int64_t max_model_len) {
  Histogram::BucketBoundaries buckets;
  for (int64_t exponent = 1;; exponent *= 10) {
    for (int64_t mantissa : {1, 2, 5}) {
      const int64_t value = mantissa * exponent;
      if (value > max_model_len) return buckets;
      buckets.push_back(static_cast<double>(value));
    }
  }
}

// Tokens per engine step (vLLM uses its CUDA-graph batch sizes; we have none, so powers of two
// up to the largest plausible --max-num-batched-tokens).
// Engine step durations: 1-2-5 from 1 ms to 10 s (a CPU decode step is a few ms, a long
// prefill chunk hundreds).
const Histogram::BucketBoundaries& StepTimeBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
                                                         0.2,   0.5,   1.0,   2.0,  5.0,  10.0};
  return *b;
}

const Histogram::BucketBoundaries& IterationTokenBuckets() {
  static const auto* b = new Histogram::BucketBoundaries{
      1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536};
  return *b;
}

constexpr engine::FinishReason kFinishReasons[] = {
    engine::FinishReason::kStop, engine::FinishReason::kLength, engine::FinishReason::kAbort,
    engine::FinishReason::kError};

// Seconds from `from` to `to`, or nothing when either end was never reached (a request aborted
// while queued has no `scheduled`). Clamped at 0 so a histogram never gets a negative sample even
// if a caller fills the timestamps from different clocks' readings.
std::optional<double> Interval(const std::optional<engine::Clock::time_point>& from,
                               const std::optional<engine::Clock::time_point>& to) {
  if (!from || !to) return std::nullopt;
  return std::max(0.0, std::chrono::duration<double>(*to - *from).count());
}

// Adds the growth of a cumulative engine counter; a value that went down (never expected)
// just becomes the new baseline rather than a negative increment.
void Advance(prometheus::Counter& counter, int64_t current, int64_t& last) {
  if (current > last) counter.Increment(static_cast<double>(current - last));
  last = current;
}

}  // namespace

PrometheusMetrics::PrometheusMetrics(const Options& options)
    : options_(options), registry_(std::make_shared<prometheus::Registry>()) {
  const prometheus::Labels model = {{"model_name", options_.model_name}};
  auto gauge = [&](const std::string& name, const std::string& help) {
    return &prometheus::BuildGauge()
                .Name(name)
                .Help(help)
                .Labels(model)
                .Register(*registry_)
                .Add({});
  };
  auto counter = [&](const std::string& name, const std::string& help) {
    return &prometheus::BuildCounter()
                .Name(name)
                .Help(help)
                .Labels(model)
                .Register(*registry_)
                .Add({});
  };
  auto histogram = [&](const std::string& name, const std::string& help,
                       const Histogram::BucketBoundaries& buckets) {
    return &prometheus::BuildHistogram()
                .Name(name)
                .Help(help)
                .Labels(model)
                .Register(*registry_)
                .Add({}, buckets);
  };

  num_requests_running_ =
      gauge("moeserve_num_requests_running", "Number of requests in the running batch.");
  num_requests_waiting_ =
      gauge("moeserve_num_requests_waiting", "Number of requests waiting to be scheduled.");
  kv_cache_usage_perc_ = gauge("moeserve_kv_cache_usage_perc",
                               "KV-cache usage: fraction of KV blocks in use (1 = full).");
  prompt_tokens_ = counter("moeserve_prompt_tokens_total",
                           "Prompt tokens of finished requests (counted when they finish).");
  generation_tokens_ = counter("moeserve_generation_tokens_total",
                               "Generated tokens (counted after each engine step, as produced).");
  request_success_ = &prometheus::BuildCounter()
                          .Name("moeserve_request_success_total")
                          .Help("Finished requests by finish reason (stop, length, abort, error).")
                          .Labels(model)
                          .Register(*registry_);
  // Every reason exists from the start, so rate() and absent() work before the first one.
  for (engine::FinishReason reason : kFinishReasons) {
    request_success_->Add({{"finished_reason", std::string(engine::FinishReasonName(reason))}});
  }
  num_preemptions_ =
      counter("moeserve_num_preemptions_total", "Requests preempted to free KV-cache blocks.");
  prefix_cache_queries_ = counter("moeserve_prefix_cache_queries_total",
                                  "Prompt tokens looked up in the prefix cache.");
  prefix_cache_hits_ = counter("moeserve_prefix_cache_hits_total",
                               "Prompt tokens found in the prefix cache (hit rate = "
                               "rate(hits) / rate(queries)).");
  if (options_.speculative_tokens > 0) {
    spec_num_drafts_ = counter("moeserve_spec_decode_num_drafts_total",
                               "Draft proposals verified: one per sequence per step that "
                               "verified at least one draft token.");
    spec_num_draft_tokens_ =
        counter("moeserve_spec_decode_num_draft_tokens_total", "Draft tokens verified.");
    spec_num_accepted_tokens_ =
        counter("moeserve_spec_decode_num_accepted_tokens_total",
                "Draft tokens accepted (mean acceptance length = 1 + accepted / drafts).");
    auto& per_position = prometheus::BuildCounter()
                             .Name("moeserve_spec_decode_num_accepted_tokens_per_pos_total")
                             .Help("Draft tokens accepted at each position of a draft (0 = first).")
                             .Labels(model)
                             .Register(*registry_);
    for (int64_t p = 0; p < options_.speculative_tokens; ++p) {
      spec_accepted_per_position_.push_back(&per_position.Add({{"position", std::to_string(p)}}));
    }
  }
  time_to_first_token_ =
      histogram("moeserve_time_to_first_token_seconds",
                "Time from arrival to the first generated token.", TtftBuckets());
  inter_token_latency_ =
      histogram("moeserve_inter_token_latency_seconds",
                "Time between two consecutive tokens of a request.", InterTokenBuckets());
  e2e_request_latency_ =
      histogram("moeserve_e2e_request_latency_seconds",
                "Time from arrival to the end of a request.", RequestLatencyBuckets());
  request_queue_time_ =
      histogram("moeserve_request_queue_time_seconds",
                "Time from arrival to first being scheduled.", RequestLatencyBuckets());
  request_prefill_time_ =
      histogram("moeserve_request_prefill_time_seconds",
                "Time from first being scheduled to the first token.", RequestLatencyBuckets());
  request_decode_time_ =
      histogram("moeserve_request_decode_time_seconds",
                "Time from the first token to the end of a request.", RequestLatencyBuckets());
  time_per_output_token_ = histogram(
      "moeserve_time_per_output_token_seconds",
      "Mean time per output token of a request after its first (decode time / (tokens - 1)).",
      InterTokenBuckets());
  const Histogram::BucketBoundaries token_buckets = TokenCountBuckets(options_.max_model_len);
  request_prompt_tokens_ = histogram("moeserve_request_prompt_tokens",
                                     "Prompt tokens of a finished request.", token_buckets);
  request_generation_tokens_ = histogram("moeserve_request_generation_tokens",
                                         "Generated tokens of a finished request.", token_buckets);
  request_params_max_tokens_ =
      histogram("moeserve_request_params_max_tokens",
                "The max_tokens a finished request asked for.", token_buckets);
  // vLLM calls this histogram vllm:iteration_tokens_total; a _total suffix marks a counter in
  // Prometheus' conventions (promtool check metrics rejects it on a histogram), so it keeps the
  // conforming name. Buckets as vLLM's, up to 64Ki tokens per step.
  iteration_tokens_ =
      histogram("moeserve_iteration_tokens", "Tokens (prefill + decode) per engine step.",
                IterationTokenBuckets());
  engine_step_time_ = histogram(
      "moeserve_engine_step_seconds",
      "Wall time of one engine step (schedule, forward, sample, emit); the server's inter-token "
      "latency minus this is its own per-token overhead.",
      StepTimeBuckets());
  grpc_requests_ = &prometheus::BuildCounter()
                        .Name("moeserve_grpc_requests_total")
                        .Help("Finished gRPC calls by method and status code.")
                        .Labels(model)
                        .Register(*registry_);
  http_requests_ = &prometheus::BuildCounter()
                        .Name("moeserve_http_requests_total")
                        .Help(
                            "Answered HTTP requests (OpenAI API port) by endpoint and status "
                            "code; 499 = the client left before the answer.")
                        .Labels(model)
                        .Register(*registry_);

  // The "info" pattern: a constant 1 whose labels carry the configuration.
  prometheus::BuildGauge()
      .Name("moeserve_cache_config_info")
      .Help("KV-cache configuration (value 1; see the labels).")
      .Labels(model)
      .Register(*registry_)
      .Add({{"block_size", std::to_string(options_.block_size)},
            {"num_blocks", std::to_string(options_.num_kv_blocks)}})
      .Set(1);

  if (options_.num_routed_experts > 0 && options_.num_layers > 0) {
    auto& routed = prometheus::BuildCounter()
                       .Name("moeserve_moe_routed_tokens_total")
                       .Help(
                           "Token-to-expert assignments in an MoE layer (tokens x experts "
                           "per token).")
                       .Labels(model)
                       .Register(*registry_);
    auto& balancedness =
        prometheus::BuildGauge()
            .Name("moeserve_moe_expert_balancedness")
            .Help(
                "Expert load balance of an MoE layer since start: mean / max tokens per "
                "expert (1 = perfectly balanced; 1 before any token).")
            .Labels(model)
            .Register(*registry_);
    prometheus::Family<prometheus::Counter>* per_expert = nullptr;
    if (options_.per_expert_counters) {
      per_expert = &prometheus::BuildCounter()
                        .Name("moeserve_moe_expert_tokens_total")
                        .Help("Tokens routed to each expert of an MoE layer.")
                        .Labels(model)
                        .Register(*registry_);
      moe_expert_tokens_.assign(options_.num_layers * options_.num_routed_experts, nullptr);
    }
    moe_routed_tokens_.assign(options_.num_layers, nullptr);
    moe_balancedness_.assign(options_.num_layers, nullptr);
    for (int64_t layer = 0; layer < options_.num_layers; ++layer) {
      if (!IsMoeLayer(layer)) continue;
      const std::string layer_label = std::to_string(layer);
      moe_routed_tokens_[layer] = &routed.Add({{"layer", layer_label}});
      moe_balancedness_[layer] = &balancedness.Add({{"layer", layer_label}});
      moe_balancedness_[layer]->Set(1.0);
      if (per_expert == nullptr) continue;
      for (int64_t e = 0; e < options_.num_routed_experts; ++e) {
        moe_expert_tokens_[layer * options_.num_routed_experts + e] =
            &per_expert->Add({{"layer", layer_label}, {"expert", std::to_string(e)}});
      }
    }
  }
}

PrometheusMetrics::~PrometheusMetrics() = default;

bool PrometheusMetrics::IsMoeLayer(int64_t layer) const {
  if (options_.moe_layers.empty()) return true;
  return layer < static_cast<int64_t>(options_.moe_layers.size()) && options_.moe_layers[layer];
}

void PrometheusMetrics::OnGrpcCall(const std::string& method, const std::string& code) {
  // Family::Add returns the existing series for known labels and is internally locked.
  grpc_requests_->Add({{"method", method}, {"code", code}}).Increment();
}

void PrometheusMetrics::OnHttpRequest(const std::string& endpoint, int status) {
  http_requests_->Add({{"endpoint", endpoint}, {"code", std::to_string(status)}}).Increment();
}

void PrometheusMetrics::SetStatsSource(std::function<engine::EngineStats()> source) {
  std::lock_guard lock(source_mu_);
  stats_source_ = std::move(source);
}

void PrometheusMetrics::StartCountingFrom(const engine::EngineStats& stats) {
  std::lock_guard lock(mu_);
  last_.preemptions = stats.total_preemptions;
  last_.prefix_query_tokens = stats.prefix_query_tokens;
  last_.prefix_hit_tokens = stats.prefix_hit_tokens;
  last_.generated_tokens = stats.total_generated_tokens;
  last_.expert_token_counts = stats.expert_token_counts;
  last_.speculation = stats.speculation;
}

std::string PrometheusMetrics::Serialize() const {
  {
    std::lock_guard lock(source_mu_);
    if (stats_source_) ApplySnapshot(stats_source_());
  }
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

void PrometheusMetrics::OnFirstToken(double ttft_seconds) {
  time_to_first_token_->Observe(ttft_seconds);
}

void PrometheusMetrics::OnInterTokenLatency(double seconds) {
  inter_token_latency_->Observe(seconds);
}

void PrometheusMetrics::OnRequestFinished(engine::FinishReason reason, const engine::Usage& usage,
                                          const engine::RequestTimestamps& timestamps,
                                          int64_t max_tokens) {
  request_success_->Add({{"finished_reason", std::string(engine::FinishReasonName(reason))}})
      .Increment();
  prompt_tokens_->Increment(static_cast<double>(usage.prompt_tokens));
  request_prompt_tokens_->Observe(static_cast<double>(usage.prompt_tokens));
  request_generation_tokens_->Observe(static_cast<double>(usage.completion_tokens));
  request_params_max_tokens_->Observe(static_cast<double>(max_tokens));
  const std::optional<engine::Clock::time_point> queued = timestamps.queued;
  if (auto s = Interval(queued, timestamps.scheduled)) request_queue_time_->Observe(*s);
  if (auto s = Interval(timestamps.scheduled, timestamps.first_token)) {
    request_prefill_time_->Observe(*s);
  }
  if (auto s = Interval(timestamps.first_token, timestamps.finished)) {
    request_decode_time_->Observe(*s);
    if (usage.completion_tokens > 1) {
      time_per_output_token_->Observe(*s / static_cast<double>(usage.completion_tokens - 1));
    }
  }
  if (auto s = Interval(queued, timestamps.finished)) e2e_request_latency_->Observe(*s);
}

void PrometheusMetrics::OnStep(const engine::EngineStats& stats) {
  const int64_t step_tokens =
      stats.last_step.num_prefill_tokens + stats.last_step.num_decode_tokens;
  if (step_tokens > 0) {
    iteration_tokens_->Observe(static_cast<double>(step_tokens));
    engine_step_time_->Observe(stats.last_step.step_ms / 1e3);
  }
  ApplySnapshot(stats);
}

void PrometheusMetrics::ApplySnapshot(const engine::EngineStats& stats) const {
  std::lock_guard lock(mu_);
  // Engine::Stats() is refreshed after the step whose OnStep we may already have seen, so a
  // scrape can read a snapshot older than the last OnStep; it must not roll the gauges back.
  if (stats.total_steps < last_.total_steps) return;
  last_.total_steps = stats.total_steps;
  num_requests_running_->Set(static_cast<double>(stats.num_running));
  num_requests_waiting_->Set(static_cast<double>(stats.num_waiting));
  kv_cache_usage_perc_->Set(stats.kv_usage);
  Advance(*num_preemptions_, stats.total_preemptions, last_.preemptions);
  Advance(*generation_tokens_, stats.total_generated_tokens, last_.generated_tokens);
  Advance(*prefix_cache_queries_, stats.prefix_query_tokens, last_.prefix_query_tokens);
  Advance(*prefix_cache_hits_, stats.prefix_hit_tokens, last_.prefix_hit_tokens);
  ApplyExpertCounts(stats.expert_token_counts);
  ApplySpeculation(stats.speculation);
}

void PrometheusMetrics::ApplySpeculation(const engine::SpeculativeStats& stats) const {
  if (spec_num_drafts_ == nullptr) return;
  engine::SpeculativeStats& last = last_.speculation;
  Advance(*spec_num_drafts_, stats.num_drafts, last.num_drafts);
  Advance(*spec_num_draft_tokens_, stats.num_draft_tokens, last.num_draft_tokens);
  Advance(*spec_num_accepted_tokens_, stats.num_accepted_tokens, last.num_accepted_tokens);
  last.accepted_per_position.resize(spec_accepted_per_position_.size(), 0);
  for (size_t p = 0; p < spec_accepted_per_position_.size(); ++p) {
    const int64_t now = p < stats.accepted_per_position.size() ? stats.accepted_per_position[p] : 0;
    Advance(*spec_accepted_per_position_[p], now, last.accepted_per_position[p]);
  }
}

void PrometheusMetrics::ApplyExpertCounts(const std::vector<int64_t>& counts) const {
  const int64_t n_experts = options_.num_routed_experts;
  // A snapshot of another shape (no MoE, or a model mismatch) carries nothing we can label.
  if (moe_routed_tokens_.empty() ||
      static_cast<int64_t>(counts.size()) != options_.num_layers * n_experts) {
    return;
  }
  if (last_.expert_token_counts.size() != counts.size()) {
    last_.expert_token_counts.assign(counts.size(), 0);
  }
  for (int64_t layer = 0; layer < options_.num_layers; ++layer) {
    if (moe_routed_tokens_[layer] == nullptr) continue;
    int64_t layer_growth = 0;
    int64_t sum = 0;
    int64_t max = 0;
    for (int64_t e = 0; e < n_experts; ++e) {
      const int64_t i = layer * n_experts + e;
      const int64_t growth = std::max<int64_t>(0, counts[i] - last_.expert_token_counts[i]);
      if (growth > 0 && !moe_expert_tokens_.empty()) {
        moe_expert_tokens_[i]->Increment(static_cast<double>(growth));
      }
      layer_growth += growth;
      last_.expert_token_counts[i] = counts[i];
      sum += counts[i];
      max = std::max(max, counts[i]);
    }
    if (layer_growth > 0) moe_routed_tokens_[layer]->Increment(static_cast<double>(layer_growth));
    // Balancedness as vLLM's EPLB logs it: avg / max over the layer's experts.
    const double mean = static_cast<double>(sum) / static_cast<double>(n_experts);
    moe_balancedness_[layer]->Set(max > 0 ? mean / static_cast<double>(max) : 1.0);
  }
}

}  // namespace moeserve::server
