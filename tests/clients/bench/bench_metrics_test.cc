// The metric definitions of vllm bench serve (calculate_metrics) on hand-built records.
#include "clients/bench/bench_metrics.h"

#include "gtest/gtest.h"

namespace moeserve::bench {
namespace {

// A successful request started at `start`, first ids after `ttft`, then messages `itl` apart,
// each message carrying `ids_per_message[i]` ids.
RequestRecord Success(double start, double ttft, std::vector<double> itl,
                      std::vector<int32_t> ids_per_message, int64_t prompt_len = 10) {
  RequestRecord r;
  r.success = true;
  r.start_time = start;
  r.ttft = ttft;
  r.itl = itl;
  r.prompt_len = prompt_len;
  double t = start + ttft;
  r.token_message_times.push_back(t);
  for (double gap : itl) r.token_message_times.push_back(t += gap);
  r.token_message_counts = ids_per_message;
  for (int32_t n : ids_per_message) r.output_tokens += n;
  r.server_completion_tokens = r.output_tokens;
  r.latency = t - start;
  return r;
}

RequestRecord Failure(const std::string& code) {
  RequestRecord r;
  r.success = false;
  r.status_code = code;
  return r;
}

TEST(BenchMetricsTest, TpotIsDecodeTimeOverTokensAfterTheFirst) {
  // 0.1 s to the first token, then 4 more tokens in 0.4 s: TPOT = 0.4 / 4.
  const RequestRecord r = Success(0.0, 0.1, {0.1, 0.1, 0.1, 0.1}, {1, 1, 1, 1, 1});
  EXPECT_NEAR(RequestTpot(r), 0.1, 1e-12);
  // One message carrying several ids: the ids count, not the messages (5 tokens, 2 messages).
  const RequestRecord multi = Success(0.0, 0.1, {0.4}, {1, 4});
  EXPECT_NEAR(RequestTpot(multi), 0.1, 1e-12);
  EXPECT_EQ(RequestTpot(Success(0.0, 0.1, {}, {1})), 0.0);  // one token: no TPOT
}

TEST(BenchMetricsTest, ItlPoolsEveryGapAndTpotSkipsSingleTokenRequests) {
  const std::vector<RequestRecord> records = {
      Success(0.0, 0.010, {0.020, 0.040}, {1, 1, 1}),
      Success(0.5, 0.030, {0.060}, {1, 1}),
      Success(1.0, 0.050, {}, {1}),
  };
  const BenchmarkMetrics m = ComputeMetrics(records, 2.0, {50, 99}, {});
  EXPECT_EQ(m.completed, 3);
  EXPECT_EQ(m.failed, 0);
  EXPECT_EQ(m.total_output, 6);
  EXPECT_EQ(m.total_input, 30);
  // ITL samples 20, 40, 60 ms pooled; TTFT 10, 30, 50 ms.
  EXPECT_NEAR(m.itl_ms.mean, 40.0, 1e-9);
  EXPECT_NEAR(m.itl_ms.median, 40.0, 1e-9);
  EXPECT_NEAR(m.ttft_ms.mean, 30.0, 1e-9);
  // TPOT over the two multi-token requests: 60 / 2 = 30 ms and 60 / 1 = 60 ms.
  EXPECT_NEAR(m.tpot_ms.mean, 45.0, 1e-9);
  // E2EL: 70, 90, 50 ms.
  EXPECT_NEAR(m.e2el_ms.mean, 70.0, 1e-9);
  EXPECT_NEAR(m.request_throughput, 1.5, 1e-12);
  EXPECT_NEAR(m.output_throughput, 3.0, 1e-12);
  EXPECT_NEAR(m.total_token_throughput, 18.0, 1e-12);
  EXPECT_FALSE(m.request_goodput.has_value());  // no SLO, no goodput (vLLM writes null)
}

TEST(BenchMetricsTest, GoodputCountsRequestsMeetingEverySloAndTreatsOneTokenTpotAsZero) {
  const std::vector<RequestRecord> records = {
      Success(0.0, 0.010, {0.010}, {1, 1}),  // TTFT 10 ms, TPOT 10 ms: good
      Success(0.0, 0.200, {0.010}, {1, 1}),  // TTFT 200 ms: misses ttft
      Success(0.0, 0.010, {0.500}, {1, 1}),  // TPOT 500 ms: misses tpot
      Success(0.0, 0.050, {}, {1}),          // one token: TPOT counts as 0, good
      Failure("UNAVAILABLE"),                // never good
  };
  absl::StatusOr<GoodputSlo> slo = ParseGoodput({"ttft:100", "tpot:50"});
  ASSERT_TRUE(slo.ok()) << slo.status();
  const BenchmarkMetrics m = ComputeMetrics(records, 4.0, {99}, *slo);
  ASSERT_TRUE(m.request_goodput.has_value());
  EXPECT_NEAR(*m.request_goodput, 2 / 4.0, 1e-12);
  // An SLO equal to the value is met (vLLM: slo >= value).
  const BenchmarkMetrics exact =
      ComputeMetrics({Success(0.0, 0.1, {}, {1})}, 1.0, {99}, *ParseGoodput({"e2el:100"}));
  EXPECT_NEAR(*exact.request_goodput, 1.0, 1e-12);
}

TEST(BenchMetricsTest, FailuresAreCountedByStatusCodeAndExcludedFromLatencies) {
  const std::vector<RequestRecord> records = {
      Success(0.0, 0.010, {0.010}, {1, 1}), Failure("RESOURCE_EXHAUSTED"),
      Failure("RESOURCE_EXHAUSTED"), Failure("DEADLINE_EXCEEDED")};
  const BenchmarkMetrics m = ComputeMetrics(records, 1.0, {99}, {});
  EXPECT_EQ(m.completed, 1);
  EXPECT_EQ(m.failed, 3);
  EXPECT_EQ(m.errors_by_code.at("RESOURCE_EXHAUSTED"), 2);
  EXPECT_EQ(m.errors_by_code.at("DEADLINE_EXCEEDED"), 1);
  EXPECT_NEAR(m.ttft_ms.mean, 10.0, 1e-9);
  EXPECT_EQ(m.output_lens, (std::vector<int64_t>{2, 0, 0, 0}));
}

TEST(BenchMetricsTest, PeakConcurrencyIsTheMostOverlappingIntervals) {
  // [0, 1), [0.5, 1.5), [1.0, 2.0), [1.2, 1.3): at 1.2 three overlap; at 1.0 one ends first.
  const std::vector<RequestRecord> records = {
      Success(0.0, 1.0, {}, {1}), Success(0.5, 1.0, {}, {1}), Success(1.0, 1.0, {}, {1}),
      Success(1.2, 0.1, {}, {1})};
  EXPECT_EQ(ComputeMetrics(records, 2.0, {99}, {}).max_concurrent_requests, 3);
}

TEST(BenchMetricsTest, PeakOutputTokensPerSecondBucketsIdsByWholeSeconds) {
  // Second 0: 1 + 3 ids; second 1: 1 id; second 2: 2 ids.
  const std::vector<RequestRecord> records = {
      Success(0.0, 0.2, {0.3, 0.9}, {1, 3, 1}),  // 0.2, 0.5, 1.4
      Success(0.0, 2.5, {}, {2}),                // 2.5
  };
  EXPECT_EQ(ComputeMetrics(records, 3.0, {99}, {}).max_output_tokens_per_s, 4.0);
}

TEST(BenchMetricsTest, UsageMismatchesCountRequestsWhoseStreamDisagreesWithTheServer) {
  RequestRecord r = Success(0.0, 0.1, {0.1}, {1, 1});
  r.server_completion_tokens = 3;
  EXPECT_EQ(ComputeMetrics({r}, 1.0, {99}, {}).usage_mismatches, 1);
}

TEST(BenchMetricsTest, GapsAreClientMinusServerTimingOfRequestsThatCarriedIt) {
  RequestRecord a = Success(0.0, 0.030, {0.010}, {1, 1});  // client TTFT 30 ms, E2EL 40 ms
  a.server_ttft = 0.025;
  a.server_e2e = 0.034;
  RequestRecord b = Success(0.0, 0.050, {0.010}, {1, 1});  // no server timing: not counted
  const BenchmarkMetrics m = ComputeMetrics({a, b}, 1.0, {99}, {});
  EXPECT_EQ(m.num_server_timed, 1);
  EXPECT_NEAR(m.ttft_gap_ms.mean, 5.0, 1e-9);
  EXPECT_NEAR(m.e2el_gap_ms.median, 6.0, 1e-9);
}

TEST(BenchMetricsTest, ParseGoodputRejectsUnknownKeysNegativeValuesAndBadSyntax) {
  EXPECT_FALSE(ParseGoodput({"itl:5"}).ok());
  EXPECT_FALSE(ParseGoodput({"ttft:-1"}).ok());
  EXPECT_FALSE(ParseGoodput({"ttft=5"}).ok());
  EXPECT_FALSE(ParseGoodput({"ttft:fast"}).ok());
  absl::StatusOr<GoodputSlo> slo = ParseGoodput({"ttft:1.5", "e2el:2000"});
  ASSERT_TRUE(slo.ok());
  EXPECT_EQ(*slo->ttft_ms, 1.5);
  EXPECT_FALSE(slo->tpot_ms.has_value());
  EXPECT_EQ(*slo->e2el_ms, 2000);
}

TEST(BenchMetricsTest, NoSuccessesGivesZeroStatisticsNotNaN) {
  const BenchmarkMetrics m = ComputeMetrics({Failure("UNAVAILABLE")}, 1.0, {99}, {});
  EXPECT_EQ(m.ttft_ms.mean, 0.0);
  EXPECT_EQ(m.ttft_ms.percentiles[0].second, 0.0);
  EXPECT_EQ(m.max_output_tokens_per_s, 0.0);
  EXPECT_EQ(m.max_concurrent_requests, 0);
}

}  // namespace
}  // namespace moeserve::bench
