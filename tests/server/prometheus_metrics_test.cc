// PrometheusMetrics fed synthetic engine events: the exposition text is parsed back and checked
// for names, types, labels, vLLM buckets, interval arithmetic, counters derived from cumulative
// snapshots, and the MoE balancedness math; promtool validates the output when installed.
#include "server/prometheus_metrics.h"

#include <sys/wait.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace moeserve::server {
namespace {

using engine::Clock;
using engine::EngineStats;
using engine::FinishReason;
using engine::RequestTimestamps;
using engine::Usage;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::Not;

// One sample line of the text format.
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Parses `name{k="v",...} value` lines (label values may contain escaped quotes); comments
// are collected separately as "# TYPE name type" -> type.
struct Exposition {
  std::vector<Sample> samples;
  std::map<std::string, std::string> types;

  explicit Exposition(const std::string& text) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      if (line.starts_with("# TYPE ")) {
        std::istringstream t(line.substr(7));
        std::string name, type;
        t >> name >> type;
        types[name] = type;
        continue;
      }
      if (line[0] == '#') continue;
      Sample s;
      size_t i = line.find_first_of("{ ");
      s.name = line.substr(0, i);
      if (line[i] == '{') {
        ++i;
        while (line[i] != '}') {
          const size_t eq = line.find('=', i);
          const std::string key = line.substr(i, eq - i);
          std::string value;
          size_t j = eq + 2;  // past ="
          for (; line[j] != '"'; ++j) {
            if (line[j] == '\\') ++j;
            value += line[j];
          }
          s.labels[key] = value;
          i = j + 1;
          if (line[i] == ',') ++i;
        }
        ++i;
      }
      s.value = std::stod(line.substr(i + 1));
      samples.push_back(std::move(s));
    }
  }

  // The value of the one sample with this name whose labels include `labels`; fails otherwise.
  double Value(const std::string& name,
               const std::map<std::string, std::string>& labels = {}) const {
    const Sample* found = nullptr;
    int matches = 0;
    for (const Sample& s : samples) {
      if (s.name != name || !Includes(s, labels)) continue;
      found = &s;
      ++matches;
    }
    EXPECT_EQ(matches, 1) << name << " with " << labels.size() << " labels";
    return found == nullptr ? -1 : found->value;
  }

  bool Has(const std::string& name, const std::map<std::string, std::string>& labels = {}) const {
    for (const Sample& s : samples) {
      if (s.name == name && Includes(s, labels)) return true;
    }
    return false;
  }

  // (le, cumulative count) of a histogram's buckets in exposition order.
  std::vector<std::pair<double, double>> Buckets(const std::string& name) const {
    std::vector<std::pair<double, double>> out;
    for (const Sample& s : samples) {
      if (s.name != name + "_bucket") continue;
      const std::string& le = s.labels.at("le");
      out.emplace_back(le == "+Inf" ? std::numeric_limits<double>::infinity() : std::stod(le),
                       s.value);
    }
    return out;
  }

  std::vector<double> BucketBounds(const std::string& name) const {
    std::vector<double> out;
    for (const auto& [le, count] : Buckets(name)) out.push_back(le);
    return out;
  }

  static bool Includes(const Sample& s, const std::map<std::string, std::string>& labels) {
    for (const auto& [k, v] : labels) {
      auto it = s.labels.find(k);
      if (it == s.labels.end() || it->second != v) return false;
    }
    return true;
  }
};

constexpr double kInf = std::numeric_limits<double>::infinity();

PrometheusMetrics::Options TestOptions() {
  return PrometheusMetrics::Options{.model_name = "tiny-v3",
                                    .num_layers = 3,
                                    .num_routed_experts = 4,
                                    .moe_layers = {false, true, true},
                                    .block_size = 64,
                                    .num_kv_blocks = 128};
}

EngineStats Snapshot(int64_t steps) {
  EngineStats s;
  s.total_steps = steps;
  s.expert_token_counts.assign(3 * 4, 0);
  return s;
}

TEST(PrometheusMetricsTest, ExportsEveryFamilyWithTypeAndModelName) {
  PrometheusMetrics metrics(TestOptions());
  metrics.OnGrpcCall("Generate", "OK");
  const Exposition e(metrics.Serialize());
  const std::map<std::string, std::string> expected_types = {
      {"moeserve_num_requests_running", "gauge"},
      {"moeserve_num_requests_waiting", "gauge"},
      {"moeserve_kv_cache_usage_perc", "gauge"},
      {"moeserve_prompt_tokens_total", "counter"},
      {"moeserve_generation_tokens_total", "counter"},
      {"moeserve_request_success_total", "counter"},
      {"moeserve_num_preemptions_total", "counter"},
      {"moeserve_prefix_cache_queries_total", "counter"},
      {"moeserve_prefix_cache_hits_total", "counter"},
      {"moeserve_time_to_first_token_seconds", "histogram"},
      {"moeserve_inter_token_latency_seconds", "histogram"},
      {"moeserve_e2e_request_latency_seconds", "histogram"},
      {"moeserve_request_queue_time_seconds", "histogram"},
      {"moeserve_request_prefill_time_seconds", "histogram"},
      {"moeserve_request_decode_time_seconds", "histogram"},
      {"moeserve_time_per_output_token_seconds", "histogram"},
      {"moeserve_request_prompt_tokens", "histogram"},
      {"moeserve_request_generation_tokens", "histogram"},
      {"moeserve_request_params_max_tokens", "histogram"},
      {"moeserve_iteration_tokens", "histogram"},
      {"moeserve_engine_step_seconds", "histogram"},
      {"moeserve_cache_config_info", "gauge"},
      {"moeserve_grpc_requests_total", "counter"},
      {"moeserve_moe_routed_tokens_total", "counter"},
      {"moeserve_moe_expert_balancedness", "gauge"},
  };
  EXPECT_EQ(e.types, expected_types);
  ASSERT_FALSE(e.samples.empty());
  for (const Sample& s : e.samples) {
    EXPECT_TRUE(s.name.starts_with("moeserve_")) << s.name;
    EXPECT_EQ(s.labels.count("model_name"), 1u) << s.name;
    EXPECT_EQ(s.labels.at("model_name"), "tiny-v3") << s.name;
  }
  // Every finish reason is there from the start, at 0.
  for (const char* reason : {"stop", "length", "abort", "error"}) {
    EXPECT_EQ(e.Value("moeserve_request_success_total", {{"finished_reason", reason}}), 0)
        << reason;
  }
  EXPECT_EQ(e.Value("moeserve_cache_config_info", {{"block_size", "64"}, {"num_blocks", "128"}}),
            1);
}

TEST(PrometheusMetricsTest, HistogramsUseVllmBuckets) {
  PrometheusMetrics metrics(TestOptions());
  const Exposition e(metrics.Serialize());
  const std::vector<double> ttft = {0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1,
                                    0.25,  0.5,   0.75, 1,    2.5,  5,    7.5,  10,
                                    20,    40,    80,   160,  640,  2560, kInf};
  // vLLM's, with millisecond buckets in front (issue 22: CPU-scale latencies all fell in the
  // first bucket).
  const std::vector<double> itl = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1,
                                   0.15,  0.2,    0.3,   0.4,  0.5,   0.75, 1,     2.5,
                                   5,     7.5,    10,    20,   40,    80,   kInf};
  const std::vector<double> request = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8, 1,   1.5,  2,    2.5,
      5,     10,     15,    20,   30,    40,   50,  60,  120, 240, 480, 960, 1920, 7680, kInf};
  const std::vector<double> iteration = {1,    8,    16,   32,   64,    128,   256,   512,
                                         1024, 2048, 4096, 8192, 16384, 32768, 65536, kInf};
  // 1-2-5 up to max_model_len (TestOptions: 4096), as vLLM's build_1_2_5_buckets.
  const std::vector<double> tokens = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, kInf};
  EXPECT_THAT(e.BucketBounds("moeserve_time_to_first_token_seconds"), ElementsAreArray(ttft));
  EXPECT_THAT(e.BucketBounds("moeserve_inter_token_latency_seconds"), ElementsAreArray(itl));
  for (const char* name :
       {"moeserve_e2e_request_latency_seconds", "moeserve_request_queue_time_seconds",
        "moeserve_request_prefill_time_seconds", "moeserve_request_decode_time_seconds"}) {
    EXPECT_THAT(e.BucketBounds(name), ElementsAreArray(request)) << name;
  }
  EXPECT_THAT(e.BucketBounds("moeserve_time_per_output_token_seconds"), ElementsAreArray(itl));
  EXPECT_THAT(e.BucketBounds("moeserve_iteration_tokens"), ElementsAreArray(iteration));
  for (const char* name : {"moeserve_request_prompt_tokens", "moeserve_request_generation_tokens",
                           "moeserve_request_params_max_tokens"}) {
    EXPECT_THAT(e.BucketBounds(name), ElementsAreArray(tokens)) << name;
  }
}

TEST(PrometheusMetricsTest, TokenLatenciesFillCumulativeBuckets) {
  PrometheusMetrics metrics(TestOptions());
  metrics.OnFirstToken(0.003);  // le 0.005
  metrics.OnFirstToken(0.5);    // le 0.5 (bounds are inclusive)
  metrics.OnFirstToken(3000);   // only +Inf
  metrics.OnInterTokenLatency(0.02);
  const Exposition e(metrics.Serialize());
  EXPECT_EQ(e.Value("moeserve_time_to_first_token_seconds_count"), 3);
  EXPECT_DOUBLE_EQ(e.Value("moeserve_time_to_first_token_seconds_sum"), 3000.503);
  std::map<double, double> ttft;
  for (const auto& [le, count] : e.Buckets("moeserve_time_to_first_token_seconds")) {
    ttft[le] = count;
  }
  EXPECT_EQ(ttft[0.001], 0);
  EXPECT_EQ(ttft[0.005], 1);
  EXPECT_EQ(ttft[0.25], 1);
  EXPECT_EQ(ttft[0.5], 2);
  EXPECT_EQ(ttft[2560], 2);
  EXPECT_EQ(ttft[kInf], 3);
  EXPECT_EQ(e.Value("moeserve_inter_token_latency_seconds_count"), 1);
  EXPECT_EQ(e.Value("moeserve_inter_token_latency_seconds_bucket", {{"le", "0.025"}}), 1);
  EXPECT_EQ(e.Value("moeserve_inter_token_latency_seconds_bucket", {{"le", "0.01"}}), 0);
  // Millisecond resolution: a 3 ms inter-token gap is not lumped with a 10 ms one.
  metrics.OnInterTokenLatency(0.003);
  const Exposition fine(metrics.Serialize());
  EXPECT_EQ(fine.Value("moeserve_inter_token_latency_seconds_bucket", {{"le", "0.0025"}}), 0);
  EXPECT_EQ(fine.Value("moeserve_inter_token_latency_seconds_bucket", {{"le", "0.005"}}), 1);
}

TEST(PrometheusMetricsTest, FinishedRequestsGiveIntervalsTokensAndReasons) {
  PrometheusMetrics metrics(TestOptions());
  const Clock::time_point t0 = Clock::now();
  using std::chrono::milliseconds;
  RequestTimestamps full{.queued = t0,
                         .scheduled = t0 + milliseconds(400),
                         .first_token = t0 + milliseconds(1400),
                         .finished = t0 + milliseconds(3400)};
  metrics.OnRequestFinished(FinishReason::kStop, Usage{.prompt_tokens = 7, .completion_tokens = 5},
                            full, /*max_tokens=*/16);
  // Aborted while queued: only e2e exists.
  RequestTimestamps queued_only{.queued = t0, .finished = t0 + milliseconds(200)};
  metrics.OnRequestFinished(FinishReason::kAbort, Usage{.prompt_tokens = 3}, queued_only, 100);
  // Aborted after scheduling, before a token: queue, e2e; no prefill or decode.
  RequestTimestamps no_token{
      .queued = t0, .scheduled = t0 + milliseconds(100), .finished = t0 + milliseconds(900)};
  metrics.OnRequestFinished(FinishReason::kAbort, Usage{.prompt_tokens = 2}, no_token, 3000);

  const Exposition e(metrics.Serialize());
  EXPECT_EQ(e.Value("moeserve_request_success_total", {{"finished_reason", "stop"}}), 1);
  EXPECT_EQ(e.Value("moeserve_request_success_total", {{"finished_reason", "abort"}}), 2);
  EXPECT_EQ(e.Value("moeserve_request_success_total", {{"finished_reason", "length"}}), 0);
  EXPECT_EQ(e.Value("moeserve_prompt_tokens_total"), 12);
  // Generated tokens are counted from the engine's steps as they are produced, not here.
  EXPECT_EQ(e.Value("moeserve_generation_tokens_total"), 0);
  // Per-request token counts, vLLM's request_prompt_tokens / request_generation_tokens /
  // request_params_max_tokens.
  EXPECT_EQ(e.Value("moeserve_request_prompt_tokens_count"), 3);
  EXPECT_EQ(e.Value("moeserve_request_prompt_tokens_sum"), 12);
  EXPECT_EQ(e.Value("moeserve_request_prompt_tokens_bucket", {{"le", "5"}}), 2);
  EXPECT_EQ(e.Value("moeserve_request_generation_tokens_sum"), 5);
  EXPECT_EQ(e.Value("moeserve_request_params_max_tokens_sum"), 16 + 100 + 3000);
  EXPECT_EQ(e.Value("moeserve_request_params_max_tokens_bucket", {{"le", "20"}}), 1);
  EXPECT_EQ(e.Value("moeserve_request_params_max_tokens_bucket", {{"le", "2000"}}), 2);
  // Time per output token: decode 2 s over the 4 tokens after the first.
  EXPECT_EQ(e.Value("moeserve_time_per_output_token_seconds_count"), 1);
  EXPECT_NEAR(e.Value("moeserve_time_per_output_token_seconds_sum"), 0.5, 1e-9);

  EXPECT_EQ(e.Value("moeserve_e2e_request_latency_seconds_count"), 3);
  EXPECT_NEAR(e.Value("moeserve_e2e_request_latency_seconds_sum"), 3.4 + 0.2 + 0.9, 1e-9);
  EXPECT_EQ(e.Value("moeserve_request_queue_time_seconds_count"), 2);
  EXPECT_NEAR(e.Value("moeserve_request_queue_time_seconds_sum"), 0.4 + 0.1, 1e-9);
  EXPECT_EQ(e.Value("moeserve_request_prefill_time_seconds_count"), 1);
  EXPECT_NEAR(e.Value("moeserve_request_prefill_time_seconds_sum"), 1.0, 1e-9);
  EXPECT_EQ(e.Value("moeserve_request_decode_time_seconds_count"), 1);
  EXPECT_NEAR(e.Value("moeserve_request_decode_time_seconds_sum"), 2.0, 1e-9);
  // 3.4 s lands in le=5 but not le=2.5; 0.2 s in le=0.3.
  EXPECT_EQ(e.Value("moeserve_e2e_request_latency_seconds_bucket", {{"le", "0.3"}}), 1);
  EXPECT_EQ(e.Value("moeserve_e2e_request_latency_seconds_bucket", {{"le", "2.5"}}), 2);
  EXPECT_EQ(e.Value("moeserve_e2e_request_latency_seconds_bucket", {{"le", "5"}}), 3);
}

TEST(PrometheusMetricsTest, StepSetsGaugesAndTurnsCumulativeValuesIntoCounters) {
  PrometheusMetrics metrics(TestOptions());
  EngineStats s = Snapshot(1);
  s.num_running = 3;
  s.num_waiting = 2;
  s.kv_usage = 0.25;
  s.total_preemptions = 1;
  s.prefix_query_tokens = 100;
  s.prefix_hit_tokens = 64;
  s.total_generated_tokens = 3;
  s.last_step = {.batch_size = 3, .num_prefill_tokens = 90, .num_decode_tokens = 0};
  metrics.OnStep(s);
  Exposition e(metrics.Serialize());
  EXPECT_EQ(e.Value("moeserve_num_requests_running"), 3);
  EXPECT_EQ(e.Value("moeserve_num_requests_waiting"), 2);
  EXPECT_EQ(e.Value("moeserve_kv_cache_usage_perc"), 0.25);
  EXPECT_EQ(e.Value("moeserve_num_preemptions_total"), 1);
  EXPECT_EQ(e.Value("moeserve_prefix_cache_queries_total"), 100);
  EXPECT_EQ(e.Value("moeserve_prefix_cache_hits_total"), 64);
  // Generated tokens are counted as the engine produces them (issue 22: the rate no longer
  // jumps when a long request ends).
  EXPECT_EQ(e.Value("moeserve_generation_tokens_total"), 3);

  s.total_steps = 2;
  s.num_running = 0;
  s.num_waiting = 0;
  s.kv_usage = 0;
  s.total_preemptions = 4;
  s.total_generated_tokens = 6;
  s.last_step = {.batch_size = 3, .num_prefill_tokens = 0, .num_decode_tokens = 3, .step_ms = 4.0};
  metrics.OnStep(s);
  // A step with the same cumulative values adds nothing; an empty step is not a sample.
  s.total_steps = 3;
  s.last_step = {};
  metrics.OnStep(s);
  e = Exposition(metrics.Serialize());
  EXPECT_EQ(e.Value("moeserve_num_requests_running"), 0);
  EXPECT_EQ(e.Value("moeserve_kv_cache_usage_perc"), 0);
  EXPECT_EQ(e.Value("moeserve_num_preemptions_total"), 4);
  EXPECT_EQ(e.Value("moeserve_prefix_cache_queries_total"), 100);
  EXPECT_EQ(e.Value("moeserve_generation_tokens_total"), 6);
  EXPECT_EQ(e.Value("moeserve_iteration_tokens_count"), 2);
  EXPECT_EQ(e.Value("moeserve_iteration_tokens_sum"), 93);
  EXPECT_EQ(e.Value("moeserve_iteration_tokens_bucket", {{"le", "8"}}), 1);
  EXPECT_EQ(e.Value("moeserve_iteration_tokens_bucket", {{"le", "128"}}), 2);
  // Step time: one sample per non-empty step; the 4 ms decode step lands in le=0.005.
  EXPECT_EQ(e.Value("moeserve_engine_step_seconds_count"), 2);
  EXPECT_EQ(e.Value("moeserve_engine_step_seconds_bucket", {{"le", "0.005"}}),
            e.Value("moeserve_engine_step_seconds_bucket", {{"le", "0.002"}}) + 1);
}

TEST(PrometheusMetricsTest, SpeculativeDecodingSeriesFollowTheEngineCounters) {
  PrometheusMetrics::Options options = TestOptions();
  options.speculative_tokens = 2;
  PrometheusMetrics metrics(options);
  EngineStats s = Snapshot(1);
  s.speculation = {.num_drafts = 5,
                   .num_draft_tokens = 9,
                   .num_accepted_tokens = 6,
                   .accepted_per_position = {4, 2}};
  metrics.OnStep(s);
  s.total_steps = 2;
  s.speculation = {.num_drafts = 7,
                   .num_draft_tokens = 13,
                   .num_accepted_tokens = 7,
                   .accepted_per_position = {5, 2}};
  metrics.OnStep(s);
  Exposition e(metrics.Serialize());
  EXPECT_EQ(e.Value("moeserve_spec_decode_num_drafts_total"), 7);
  EXPECT_EQ(e.Value("moeserve_spec_decode_num_draft_tokens_total"), 13);
  EXPECT_EQ(e.Value("moeserve_spec_decode_num_accepted_tokens_total"), 7);
  EXPECT_EQ(e.Value("moeserve_spec_decode_num_accepted_tokens_per_pos_total", {{"position", "0"}}),
            5);
  EXPECT_EQ(e.Value("moeserve_spec_decode_num_accepted_tokens_per_pos_total", {{"position", "1"}}),
            2);
  // Without speculation the series do not exist.
  PrometheusMetrics plain(TestOptions());
  plain.OnStep(s);
  EXPECT_THAT(plain.Serialize(), Not(HasSubstr("spec_decode")));
}

TEST(PrometheusMetricsTest, CountersNeverDecrease) {
  PrometheusMetrics metrics(TestOptions());
  EngineStats s = Snapshot(1);
  s.total_preemptions = 5;
  s.prefix_query_tokens = 50;
  metrics.OnStep(s);
  // A cumulative value that goes down (it should not) becomes the new baseline.
  s.total_steps = 2;
  s.total_preemptions = 2;
  s.prefix_query_tokens = 10;
  metrics.OnStep(s);
  Exposition e(metrics.Serialize());
  EXPECT_EQ(e.Value("moeserve_num_preemptions_total"), 5);
  EXPECT_EQ(e.Value("moeserve_prefix_cache_queries_total"), 50);
  s.total_steps = 3;
  s.total_preemptions = 3;
  s.prefix_query_tokens = 12;
  metrics.OnStep(s);
  e = Exposition(metrics.Serialize());
  EXPECT_EQ(e.Value("moeserve_num_preemptions_total"), 6);
  EXPECT_EQ(e.Value("moeserve_prefix_cache_queries_total"), 52);
}

TEST(PrometheusMetricsTest, ExpertBalancednessAndRoutedTokensMatchHandComputation) {
  PrometheusMetrics metrics(TestOptions());
  EngineStats s = Snapshot(1);
  // Layer 0 is dense (all zero); layers 1 and 2 have 4 experts each.
  s.expert_token_counts = {0, 0, 0, 0,   //
                           4, 2, 0, 2,   // mean 2, max 4 -> 0.5
                           3, 3, 3, 3};  // perfectly balanced -> 1
  metrics.OnStep(s);
  Exposition e(metrics.Serialize());
  EXPECT_FALSE(e.Has("moeserve_moe_expert_balancedness", {{"layer", "0"}}));
  EXPECT_FALSE(e.Has("moeserve_moe_routed_tokens_total", {{"layer", "0"}}));
  EXPECT_DOUBLE_EQ(e.Value("moeserve_moe_expert_balancedness", {{"layer", "1"}}), 0.5);
  EXPECT_DOUBLE_EQ(e.Value("moeserve_moe_expert_balancedness", {{"layer", "2"}}), 1.0);
  EXPECT_EQ(e.Value("moeserve_moe_routed_tokens_total", {{"layer", "1"}}), 8);
  EXPECT_EQ(e.Value("moeserve_moe_routed_tokens_total", {{"layer", "2"}}), 12);
  // Per-expert series are opt-in.
  EXPECT_FALSE(e.Has("moeserve_moe_expert_tokens_total"));

  s.total_steps = 2;
  s.expert_token_counts = {0, 0, 0, 0,   //
                           5, 2, 1, 12,  // mean 5, max 12 -> 5/12
                           3, 3, 3, 3};
  metrics.OnStep(s);
  e = Exposition(metrics.Serialize());
  EXPECT_DOUBLE_EQ(e.Value("moeserve_moe_expert_balancedness", {{"layer", "1"}}), 5.0 / 12.0);
  EXPECT_EQ(e.Value("moeserve_moe_routed_tokens_total", {{"layer", "1"}}), 20);
  EXPECT_EQ(e.Value("moeserve_moe_routed_tokens_total", {{"layer", "2"}}), 12);

  // A snapshot of the wrong shape is ignored rather than mislabelled.
  s.total_steps = 3;
  s.expert_token_counts = {1, 2, 3};
  metrics.OnStep(s);
  e = Exposition(metrics.Serialize());
  EXPECT_EQ(e.Value("moeserve_moe_routed_tokens_total", {{"layer", "1"}}), 20);
}

TEST(PrometheusMetricsTest, BalancednessIsOneBeforeAnyToken) {
  PrometheusMetrics metrics(TestOptions());
  const Exposition e(metrics.Serialize());
  EXPECT_EQ(e.Value("moeserve_moe_expert_balancedness", {{"layer", "1"}}), 1);
  EXPECT_EQ(e.Value("moeserve_moe_routed_tokens_total", {{"layer", "2"}}), 0);
}

TEST(PrometheusMetricsTest, PerExpertCountersWhenEnabled) {
  PrometheusMetrics::Options options = TestOptions();
  options.per_expert_counters = true;
  PrometheusMetrics metrics(options);
  EngineStats s = Snapshot(1);
  s.expert_token_counts = {0, 0, 0, 0, 4, 2, 0, 2, 3, 3, 3, 3};
  metrics.OnStep(s);
  s.total_steps = 2;
  s.expert_token_counts = {0, 0, 0, 0, 5, 2, 1, 12, 3, 3, 3, 3};
  metrics.OnStep(s);
  const Exposition e(metrics.Serialize());
  const std::vector<int64_t> expected = {5, 2, 1, 12, 3, 3, 3, 3};
  for (int layer = 1; layer <= 2; ++layer) {
    for (int expert = 0; expert < 4; ++expert) {
      EXPECT_EQ(e.Value("moeserve_moe_expert_tokens_total",
                        {{"layer", std::to_string(layer)}, {"expert", std::to_string(expert)}}),
                expected[(layer - 1) * 4 + expert])
          << layer << "/" << expert;
    }
  }
  EXPECT_FALSE(e.Has("moeserve_moe_expert_tokens_total", {{"layer", "0"}}));
  EXPECT_EQ(e.types.at("moeserve_moe_expert_tokens_total"), "counter");
}

TEST(PrometheusMetricsTest, EmptyMoeLayersMeansEveryLayerIsMoe) {
  PrometheusMetrics::Options options = TestOptions();
  options.moe_layers.clear();
  PrometheusMetrics metrics(options);
  const Exposition e(metrics.Serialize());
  for (const char* layer : {"0", "1", "2"}) {
    EXPECT_TRUE(e.Has("moeserve_moe_expert_balancedness", {{"layer", layer}})) << layer;
  }
}

TEST(PrometheusMetricsTest, DenseModelHasNoExpertSeries) {
  PrometheusMetrics metrics(PrometheusMetrics::Options{.model_name = "dense", .num_layers = 2});
  EngineStats s;
  s.total_steps = 1;
  metrics.OnStep(s);
  const std::string text = metrics.Serialize();
  EXPECT_THAT(text, Not(HasSubstr("moeserve_moe_")));
  EXPECT_THAT(text, HasSubstr("moeserve_num_requests_running"));
}

TEST(PrometheusMetricsTest, GrpcCallsCountedByMethodAndCode) {
  PrometheusMetrics metrics(TestOptions());
  metrics.OnGrpcCall("Generate", "OK");
  metrics.OnGrpcCall("Generate", "OK");
  metrics.OnGrpcCall("Generate", "INVALID_ARGUMENT");
  metrics.OnGrpcCall("Tokenize", "OK");
  const Exposition e(metrics.Serialize());
  EXPECT_EQ(e.Value("moeserve_grpc_requests_total", {{"method", "Generate"}, {"code", "OK"}}), 2);
  EXPECT_EQ(e.Value("moeserve_grpc_requests_total",
                    {{"method", "Generate"}, {"code", "INVALID_ARGUMENT"}}),
            1);
  EXPECT_EQ(e.Value("moeserve_grpc_requests_total", {{"method", "Tokenize"}, {"code", "OK"}}), 1);
}

TEST(PrometheusMetricsTest, LabelValuesAreEscaped) {
  PrometheusMetrics::Options options = TestOptions();
  options.model_name = "org/model \"v3\"\\x";
  PrometheusMetrics metrics(options);
  const Exposition e(metrics.Serialize());
  EXPECT_EQ(e.Value("moeserve_num_requests_running", {{"model_name", "org/model \"v3\"\\x"}}), 0);
}

TEST(PrometheusMetricsTest, ScrapeRefreshesFromStatsSourceButNeverGoesBack) {
  PrometheusMetrics metrics(TestOptions());
  EngineStats step = Snapshot(5);
  step.num_running = 1;
  step.kv_usage = 0.5;
  step.total_preemptions = 10;
  metrics.OnStep(step);

  // The engine went idle after a cancel: no OnStep, but Engine::Stats() shows the freed blocks.
  EngineStats live = step;
  live.num_running = 0;
  live.kv_usage = 0;
  metrics.SetStatsSource([&live] { return live; });
  Exposition e(metrics.Serialize());
  EXPECT_EQ(e.Value("moeserve_num_requests_running"), 0);
  EXPECT_EQ(e.Value("moeserve_kv_cache_usage_perc"), 0);
  EXPECT_EQ(e.Value("moeserve_num_preemptions_total"), 10);  // not counted twice

  // A source lagging behind OnStep (older total_steps) does not roll the gauges back.
  step.total_steps = 6;
  step.num_running = 2;
  step.kv_usage = 0.75;
  metrics.OnStep(step);
  e = Exposition(metrics.Serialize());
  EXPECT_EQ(e.Value("moeserve_num_requests_running"), 2);
  EXPECT_EQ(e.Value("moeserve_kv_cache_usage_perc"), 0.75);

  metrics.SetStatsSource({});
  e = Exposition(metrics.Serialize());
  EXPECT_EQ(e.Value("moeserve_num_requests_running"), 2);
}

// The warmup's tokens, steps' cumulative counters and routing are not the clients': after
// StartCountingFrom only the growth beyond the baseline is exported.
TEST(PrometheusMetricsTest, CountingStartsFromTheBaseline) {
  PrometheusMetrics metrics(TestOptions());
  EngineStats warm = Snapshot(4);
  warm.total_generated_tokens = 40;
  warm.total_preemptions = 1;
  warm.prefix_query_tokens = 30;
  warm.expert_token_counts = {0, 0, 0, 0, 5, 5, 5, 5, 1, 2, 3, 4};
  metrics.StartCountingFrom(warm);
  EngineStats s = warm;
  s.total_steps = 5;
  s.total_generated_tokens = 43;
  s.expert_token_counts[4] = 7;
  s.last_step.num_decode_tokens = 3;
  metrics.OnStep(s);
  const Exposition e(metrics.Serialize());
  EXPECT_EQ(e.Value("moeserve_generation_tokens_total"), 3);
  EXPECT_EQ(e.Value("moeserve_num_preemptions_total"), 0);
  EXPECT_EQ(e.Value("moeserve_prefix_cache_queries_total"), 0);
  EXPECT_EQ(e.Value("moeserve_moe_routed_tokens_total", {{"layer", "1"}}), 2);
}

TEST(PrometheusMetricsTest, ConcurrentUpdatesAndScrapes) {
  PrometheusMetrics metrics(TestOptions());
  constexpr int kCalls = 2000;
  std::thread engine_thread([&] {
    for (int i = 1; i <= kCalls; ++i) {
      EngineStats s = Snapshot(i);
      s.total_preemptions = i;
      s.expert_token_counts = {0, 0, 0, 0, i, i, i, i, i, 0, 0, 0};
      s.last_step.num_decode_tokens = 1;
      s.total_generated_tokens = 2 * i;
      metrics.OnStep(s);
      metrics.OnFirstToken(0.01);
      metrics.OnRequestFinished(FinishReason::kStop, Usage{.completion_tokens = 2},
                                RequestTimestamps{.queued = Clock::now()}, 2);
    }
  });
  std::thread grpc_thread([&] {
    for (int i = 0; i < kCalls; ++i) metrics.OnGrpcCall(i % 2 ? "Generate" : "Tokenize", "OK");
  });
  std::thread scrape_thread([&] {
    double last_preemptions = 0;
    double last_generated = 0;
    for (int i = 0; i < 50; ++i) {
      const Exposition e(metrics.Serialize());
      const double preemptions = e.Value("moeserve_num_preemptions_total");
      const double generated = e.Value("moeserve_generation_tokens_total");
      EXPECT_GE(preemptions, last_preemptions);  // monotonic across scrapes
      EXPECT_GE(generated, last_generated);
      last_preemptions = preemptions;
      last_generated = generated;
    }
  });
  engine_thread.join();
  grpc_thread.join();
  scrape_thread.join();
  const Exposition e(metrics.Serialize());
  EXPECT_EQ(e.Value("moeserve_num_preemptions_total"), kCalls);
  EXPECT_EQ(e.Value("moeserve_generation_tokens_total"), 2.0 * kCalls);
  EXPECT_EQ(e.Value("moeserve_request_success_total", {{"finished_reason", "stop"}}), kCalls);
  EXPECT_EQ(e.Value("moeserve_iteration_tokens_count"), kCalls);
  EXPECT_EQ(e.Value("moeserve_time_to_first_token_seconds_count"), kCalls);
  EXPECT_EQ(e.Value("moeserve_grpc_requests_total", {{"method", "Generate"}}), kCalls / 2);
  EXPECT_EQ(e.Value("moeserve_moe_routed_tokens_total", {{"layer", "1"}}), 4.0 * kCalls);
  EXPECT_DOUBLE_EQ(e.Value("moeserve_moe_expert_balancedness", {{"layer", "2"}}), 0.25);
}

TEST(PrometheusMetricsTest, PromtoolAcceptsTheOutput) {
  constexpr char kPromtool[] = "/usr/bin/promtool";
  if (!std::filesystem::exists(kPromtool)) GTEST_SKIP() << kPromtool << " not installed";
  PrometheusMetrics::Options options = TestOptions();
  options.per_expert_counters = true;
  PrometheusMetrics metrics(options);
  EngineStats s = Snapshot(1);
  s.num_running = 1;
  s.kv_usage = 0.1;
  s.expert_token_counts = {0, 0, 0, 0, 4, 2, 0, 2, 3, 3, 3, 3};
  s.last_step.num_prefill_tokens = 16;
  metrics.OnStep(s);
  metrics.OnFirstToken(0.2);
  metrics.OnInterTokenLatency(0.05);
  const Clock::time_point t0 = Clock::now();
  metrics.OnRequestFinished(FinishReason::kLength, Usage{.prompt_tokens = 16},
                            RequestTimestamps{.queued = t0,
                                              .scheduled = t0,
                                              .first_token = t0 + std::chrono::milliseconds(200),
                                              .finished = t0 + std::chrono::seconds(1)},
                            16);
  metrics.OnGrpcCall("Generate", "OK");

  const std::filesystem::path dir = ::testing::TempDir();
  const std::string input = (dir / "prometheus_metrics_test.prom").string();
  const std::string output = (dir / "prometheus_metrics_test.promtool").string();
  std::ofstream(input) << metrics.Serialize();
  const std::string command =
      std::string(kPromtool) + " check metrics < " + input + " > " + output + " 2>&1";
  const int status = std::system(command.c_str());
  std::ifstream report(output);
  const std::string text((std::istreambuf_iterator<char>(report)),
                         std::istreambuf_iterator<char>());
  ASSERT_TRUE(WIFEXITED(status)) << command;
  EXPECT_EQ(WEXITSTATUS(status), 0) << "promtool check metrics:\n" << text;
}

}  // namespace
}  // namespace moeserve::server
