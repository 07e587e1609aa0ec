// Reading the server's /metrics: exposition parsing, histogram growth between two scrapes and
// the report that names what the server does not export.
#include "clients/bench/server_metrics.h"

#include "gtest/gtest.h"

namespace moeserve::bench {
namespace {

constexpr char kBefore[] = R"(# HELP moeserve_time_to_first_token_seconds Time to first token.
# TYPE moeserve_time_to_first_token_seconds histogram
moeserve_time_to_first_token_seconds_count{model_name="tiny"} 2
moeserve_time_to_first_token_seconds_sum{model_name="tiny"} 0.5
moeserve_time_to_first_token_seconds_bucket{model_name="tiny",le="+Inf"} 2
moeserve_inter_token_latency_seconds_count{model_name="tiny"} 10
moeserve_inter_token_latency_seconds_sum{model_name="tiny"} 1
moeserve_iteration_tokens_count{model_name="tiny"} 4
moeserve_iteration_tokens_sum{model_name="tiny"} 40
moeserve_kv_cache_usage_perc{model_name="tiny"} 0
moeserve_generation_tokens_total{model_name="tiny"} 100
moeserve_request_success_total{model_name="tiny",finished_reason="length"} 2
moeserve_request_success_total{model_name="tiny",finished_reason="stop"} 0
)";

constexpr char kAfter[] = R"(moeserve_time_to_first_token_seconds_count{model_name="tiny"} 6
moeserve_time_to_first_token_seconds_sum{model_name="tiny"} 0.9
moeserve_inter_token_latency_seconds_count{model_name="tiny"} 30
moeserve_inter_token_latency_seconds_sum{model_name="tiny"} 2.0
moeserve_iteration_tokens_count{model_name="tiny"} 14
moeserve_iteration_tokens_sum{model_name="tiny"} 80
moeserve_kv_cache_usage_perc{model_name="tiny"} 0.125
moeserve_generation_tokens_total{model_name="tiny"} 132
moeserve_request_success_total{model_name="tiny",finished_reason="length"} 6
moeserve_request_success_total{model_name="tiny",finished_reason="stop"} 0
moeserve_weird{a="x \"quoted\", y",b="z"} +Inf
)";

TEST(MetricsTextTest, ParsesNamesLabelsWithEscapesAndSpecialValues) {
  const MetricsText page = MetricsText::Parse(kAfter);
  EXPECT_TRUE(page.Has("moeserve_kv_cache_usage_perc"));
  EXPECT_FALSE(page.Has("moeserve_kv_cache"));
  EXPECT_DOUBLE_EQ(page.Sum("moeserve_request_success_total"), 6.0);
  EXPECT_DOUBLE_EQ(page.SumBy("moeserve_request_success_total", "finished_reason").at("length"),
                   6.0);
  const MetricsText::Sample& weird = page.samples().back();
  EXPECT_EQ(weird.name, "moeserve_weird");
  EXPECT_EQ(weird.labels.at("a"), "x \"quoted\", y");
  EXPECT_EQ(weird.labels.at("b"), "z");
  EXPECT_TRUE(std::isinf(weird.value));
}

TEST(MetricsTextTest, SkipsCommentsAndMalformedLines) {
  const MetricsText page = MetricsText::Parse("# comment\nbroken{a=\"1\" 3\nok 2\nnovalue\n");
  ASSERT_EQ(page.samples().size(), 1u);
  EXPECT_EQ(page.samples()[0].name, "ok");
}

TEST(CompareMetricsTest, MeansComeFromHistogramGrowthOnly) {
  const ServerMetricsReport r =
      CompareMetrics(MetricsText::Parse(kBefore), MetricsText::Parse(kAfter),
                     {{.kv_usage = 0.25, .num_running = 3}, {.kv_usage = 0.75, .num_running = 8}});
  ASSERT_TRUE(r.ttft.has_value());
  EXPECT_DOUBLE_EQ(r.ttft->count, 4.0);
  EXPECT_NEAR(r.ttft->Mean(), 0.1, 1e-12);  // (0.9 - 0.5) / 4
  ASSERT_TRUE(r.itl.has_value());
  EXPECT_NEAR(r.itl->Mean(), 0.05, 1e-12);  // 1.0 / 20
  ASSERT_TRUE(r.iteration_tokens.has_value());
  EXPECT_NEAR(r.iteration_tokens->Mean(), 4.0, 1e-12);  // 40 tokens over 10 steps
  EXPECT_DOUBLE_EQ(r.generation_tokens, 32.0);
  EXPECT_DOUBLE_EQ(r.finished_by_reason.at("length"), 4.0);
  EXPECT_DOUBLE_EQ(*r.kv_usage_after, 0.125);
  EXPECT_DOUBLE_EQ(*r.kv_usage_peak, 0.75);
  EXPECT_DOUBLE_EQ(*r.kv_usage_mean, 0.5);
  EXPECT_DOUBLE_EQ(*r.running_peak, 8.0);
  // Not exported here: e2e, queue, prefill, decode histograms and a step time.
  EXPECT_FALSE(r.e2e.has_value());
  EXPECT_FALSE(r.step.has_value());
  EXPECT_EQ(r.missing.size(), 5u);
  const nlohmann::json j = ServerMetricsJson(r);
  EXPECT_NEAR(j["ttft_ms"]["mean"].get<double>(), 100.0, 1e-9);
  EXPECT_TRUE(j["step_ms"].is_null());
}

TEST(CompareMetricsTest, AStepTimeHistogramIsFoundByName) {
  const MetricsText before = MetricsText::Parse(
      "moeserve_engine_step_seconds_count 10\nmoeserve_engine_step_seconds_sum 1\n");
  const MetricsText after = MetricsText::Parse(
      "moeserve_engine_step_seconds_count 20\nmoeserve_engine_step_seconds_sum 1.5\n");
  const ServerMetricsReport r = CompareMetrics(before, after, {});
  ASSERT_TRUE(r.step.has_value());
  EXPECT_EQ(r.step_series, "moeserve_engine_step_seconds");
  EXPECT_NEAR(r.step->Mean(), 0.05, 1e-12);
}

TEST(CompareMetricsTest, SpeculativeDecodingGivesMeanAcceptanceLengthFromGrowth) {
  const MetricsText before = MetricsText::Parse(
      "moeserve_spec_decode_num_drafts_total{model_name=\"m\"} 10\n"
      "moeserve_spec_decode_num_draft_tokens_total{model_name=\"m\"} 20\n"
      "moeserve_spec_decode_num_accepted_tokens_total{model_name=\"m\"} 12\n"
      "moeserve_spec_decode_num_accepted_tokens_per_pos_total{model_name=\"m\",position=\"0\"} 8\n"
      "moeserve_spec_decode_num_accepted_tokens_per_pos_total{model_name=\"m\",position=\"1\"} "
      "4\n");
  const MetricsText after = MetricsText::Parse(
      "moeserve_spec_decode_num_drafts_total{model_name=\"m\"} 50\n"
      "moeserve_spec_decode_num_draft_tokens_total{model_name=\"m\"} 100\n"
      "moeserve_spec_decode_num_accepted_tokens_total{model_name=\"m\"} 72\n"
      "moeserve_spec_decode_num_accepted_tokens_per_pos_total{model_name=\"m\",position=\"0\"} 43\n"
      "moeserve_spec_decode_num_accepted_tokens_per_pos_total{model_name=\"m\",position=\"1\"} "
      "29\n");
  const ServerMetricsReport r = CompareMetrics(before, after, {});
  ASSERT_TRUE(r.MeanAcceptanceLength().has_value());
  EXPECT_DOUBLE_EQ(*r.MeanAcceptanceLength(), 1.0 + 60.0 / 40.0);
  EXPECT_EQ(r.spec_accepted_per_position.at("0"), 35);
  EXPECT_EQ(r.spec_accepted_per_position.at("1"), 25);
  const nlohmann::json j = ServerMetricsJson(r);
  EXPECT_DOUBLE_EQ(j["speculative_decoding"]["acceptance_rate"].get<double>(), 60.0 / 80.0);
  // A server without speculation reports nothing of it.
  const ServerMetricsReport plain =
      CompareMetrics(MetricsText::Parse(kBefore), MetricsText::Parse(kAfter), {});
  EXPECT_FALSE(plain.MeanAcceptanceLength().has_value());
  EXPECT_FALSE(ServerMetricsJson(plain).contains("speculative_decoding"));
}

}  // namespace
}  // namespace moeserve::bench
