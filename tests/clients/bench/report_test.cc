// The result JSON carries vllm bench serve's key names; files land where asked.
#include "clients/bench/report.h"

#include <filesystem>
#include <fstream>
#include <limits>

#include "gtest/gtest.h"

namespace moeserve::bench {
namespace {

namespace fs = std::filesystem;

BenchmarkMetrics SomeMetrics() {
  RequestRecord ok;
  ok.success = true;
  ok.ttft = 0.01;
  ok.itl = {0.02};
  ok.latency = 0.03;
  ok.output_tokens = 2;
  ok.server_completion_tokens = 2;
  ok.prompt_len = 5;
  ok.token_message_times = {0.01, 0.03};
  ok.token_message_counts = {1, 1};
  RequestRecord failed;
  failed.status_code = "UNAVAILABLE";
  return ComputeMetrics({ok, failed}, 1.0, {90, 99, 99.9}, *ParseGoodput({"ttft:100"}));
}

TEST(ReportTest, PercentileNamesFollowVllm) {
  EXPECT_EQ(PercentileName(99), "99");
  EXPECT_EQ(PercentileName(99.9), "99.9");
  EXPECT_EQ(PercentileName(50), "50");
}

TEST(ReportTest, ResultJsonHasVllmsKeys) {
  RunInfo info{.date = "20260101-000000",
               .label = "moeserve",
               .model_id = "tiny",
               .num_prompts = 2,
               .request_rate = std::numeric_limits<double>::infinity(),
               .max_concurrency = 4};
  const nlohmann::ordered_json j = ResultJson(
      info, SomeMetrics(), ReportSelection{.percentiles = {90, 99, 99.9}}, std::nullopt, nullptr);
  for (const char* key : {"date",
                          "backend",
                          "label",
                          "model_id",
                          "num_prompts",
                          "request_rate",
                          "burstiness",
                          "max_concurrency",
                          "duration",
                          "completed",
                          "failed",
                          "total_input_tokens",
                          "total_output_tokens",
                          "request_throughput",
                          "request_goodput",
                          "output_throughput",
                          "total_token_throughput",
                          "max_output_tokens_per_s",
                          "max_concurrent_requests",
                          "mean_ttft_ms",
                          "median_ttft_ms",
                          "std_ttft_ms",
                          "p99_ttft_ms",
                          "p90_ttft_ms",
                          "p99.9_ttft_ms",
                          "mean_tpot_ms",
                          "p99_tpot_ms",
                          "mean_itl_ms",
                          "p99_itl_ms",
                          "mean_e2el_ms",
                          "p99_e2el_ms"}) {
    EXPECT_TRUE(j.contains(key)) << key;
  }
  EXPECT_EQ(j["request_rate"], "inf");  // as vLLM writes an infinite rate
  EXPECT_EQ(j["max_concurrency"], 4);
  EXPECT_EQ(j["completed"], 1);
  EXPECT_EQ(j["failed"], 1);
  EXPECT_NEAR(j["mean_ttft_ms"].get<double>(), 10.0, 1e-9);
  EXPECT_EQ(j["errors_by_code"]["UNAVAILABLE"], 1);
  EXPECT_FALSE(j.contains("ttfts"));  // per-request arrays only with --save-detailed
}

TEST(ReportTest, DetailedResultCarriesVllmsPerRequestArrays) {
  RequestRecord r;
  r.success = true;
  r.ttft = 0.5;
  r.itl = {0.1, 0.2};
  r.prompt_len = 3;
  const std::vector<RequestRecord> records = {r};
  const nlohmann::ordered_json j = ResultJson(RunInfo{}, ComputeMetrics(records, 1.0, {99}, {}),
                                              ReportSelection{}, std::nullopt, &records);
  EXPECT_EQ(j["input_lens"], nlohmann::ordered_json::array({3}));
  EXPECT_EQ(j["ttfts"], nlohmann::ordered_json::array({0.5}));
  EXPECT_EQ(j["itls"][0], nlohmann::ordered_json::array({0.1, 0.2}));
  EXPECT_EQ(j["errors"][0], "");
}

TEST(ReportTest, DetailedJsonlHasOneObjectPerRequest) {
  RequestRecord a;
  a.request_id = "a";
  a.success = true;
  a.output_tokens = 3;
  a.ttft = 0.1;
  a.latency = 0.3;
  RequestRecord b;
  b.request_id = "b";
  b.status_code = "DEADLINE_EXCEEDED";
  const std::string path = (fs::path(::testing::TempDir()) / "detail" / "requests.jsonl").string();
  ASSERT_TRUE(WriteDetailedJsonl(path, {a, b}).ok());
  std::ifstream in(path);
  std::string line;
  std::vector<nlohmann::json> lines;
  while (std::getline(in, line)) lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0]["request_id"], "a");
  EXPECT_NEAR(lines[0]["tpot"].get<double>(), 0.1, 1e-12);
  EXPECT_EQ(lines[1]["status_code"], "DEADLINE_EXCEEDED");
  EXPECT_EQ(lines[1]["success"], false);
}

TEST(ReportTest, SweepFilesGetTheirPointAsSuffix) {
  EXPECT_EQ(WithSuffix("out/result.json", "rate4"), "out/result-rate4.json");
  EXPECT_EQ(WithSuffix("r.jsonl", "concurrency8"), "r-concurrency8.jsonl");
}

TEST(ReportTest, SummaryPrintsVllmsLines) {
  char* buffer = nullptr;
  size_t size = 0;
  std::FILE* out = open_memstream(&buffer, &size);
  PrintSummary(out, RunInfo{.request_rate = 2.0}, SomeMetrics(), ReportSelection{}, std::nullopt);
  std::fclose(out);
  const std::string text(buffer, size);
  std::free(buffer);
  for (const char* expected :
       {"Serving Benchmark Result", "Successful requests:", "Request rate configured (RPS):",
        "Request goodput (req/s):", "Mean TTFT (ms):", "P99 TPOT (ms):", "Median ITL (ms):",
        "Errors by status code", "UNAVAILABLE:"}) {
    EXPECT_NE(text.find(expected), std::string::npos) << expected << "\n" << text;
  }
}

TEST(ReportTest, SweepRowAlignsWithItsHeader) {
  const std::string header = SweepHeader("request-rate");
  const std::string row = SweepRow("4", SomeMetrics(), std::nullopt);
  EXPECT_EQ(header.size(), row.size()) << header << "\n" << row;
}

}  // namespace
}  // namespace moeserve::bench
