// Flag checks: the sweep syntax and the combinations FinishBenchOptions refuses.
#include "clients/bench/bench_options.h"

#include "gtest/gtest.h"

namespace moeserve::bench {
namespace {

absl::Status Parse(std::vector<std::string> args, BenchOptions& options) {
  CLI::App app;
  AddBenchFlags(app, options);
  std::vector<const char*> argv = {"moeserve-bench"};
  for (const std::string& a : args) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(e.what());
  }
  return FinishBenchOptions(options);
}

TEST(BenchOptionsTest, SweepParsesRatesIncludingInfAndConcurrencies) {
  absl::StatusOr<SweepSpec> rates = ParseSweep("request-rate=1, 2.5,inf");
  ASSERT_TRUE(rates.ok()) << rates.status();
  EXPECT_EQ(rates->parameter, "request-rate");
  ASSERT_EQ(rates->values.size(), 3u);
  EXPECT_TRUE(std::isinf(rates->values[2]));
  EXPECT_TRUE(ParseSweep("max-concurrency=1,4,16").ok());
  EXPECT_FALSE(ParseSweep("max-concurrency=1.5").ok());
  EXPECT_FALSE(ParseSweep("request-rate=0").ok());
  EXPECT_FALSE(ParseSweep("batch=1,2").ok());
  EXPECT_FALSE(ParseSweep("1,2").ok());
}

TEST(BenchOptionsTest, DefaultsAreVllmsAndParseCleanly) {
  BenchOptions o;
  ASSERT_TRUE(Parse({}, o).ok());
  EXPECT_TRUE(std::isinf(o.arrival.request_rate));
  EXPECT_EQ(o.arrival.burstiness, 1.0);
  EXPECT_EQ(o.selection.percentiles, (std::vector<double>{90, 99}));
  EXPECT_EQ(o.selection.metrics, (std::vector<std::string>{"ttft", "tpot", "itl", "e2el"}));
  EXPECT_TRUE(o.slo.empty());
}

TEST(BenchOptionsTest, TypedValuesAreFilledFromTheFlags) {
  BenchOptions o;
  ASSERT_TRUE(Parse({"--request-rate", "4", "--burstiness", "0.5", "--goodput", "ttft:200",
                     "tpot:50", "--metadata", "gpu=none", "--metric-percentiles", "50,99.9",
                     "--temperature", "0", "--sweep", "max-concurrency=1,2"},
                    o)
                  .ok());
  EXPECT_EQ(o.arrival.request_rate, 4.0);
  EXPECT_EQ(o.arrival.burstiness, 0.5);
  EXPECT_EQ(*o.slo.ttft_ms, 200.0);
  EXPECT_EQ(*o.slo.tpot_ms, 50.0);
  EXPECT_EQ(o.metadata_map.at("gpu"), "none");
  EXPECT_EQ(o.selection.percentiles, (std::vector<double>{50, 99.9}));
  EXPECT_EQ(*o.sampling.temperature, 0.0);
  ASSERT_TRUE(o.sweep_spec.has_value());
  EXPECT_EQ(o.sweep_spec->values.size(), 2u);
}

TEST(BenchOptionsTest, ContradictionsAreRefused) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"--dataset-name", "sharegpt"},  // needs a path
           {"--dataset-path", "x.jsonl"},   // random takes none
           {"--duration", "10"},            // rate inf, no concurrency
           {"--request-rate", "2", "--ramp-up-strategy", "linear", "--ramp-up-start-rps", "1",
            "--ramp-up-end-rps", "4"},  // ramp-up owns the rate
           {"--plot", "x.png"},         // plot needs a sweep
           {"--goodput", "itl:5"},
           {"--percentile-metrics", "ttft,latency"},
           {"--metric-percentiles", "101"},
           {"--max-concurrency", "0"},
           {"--request-rate", "fast"},
           {"--metadata", "novalue"},
       }) {
    BenchOptions o;
    EXPECT_FALSE(Parse(args, o).ok()) << args[0];
  }
  BenchOptions ok;
  EXPECT_TRUE(Parse({"--duration", "10", "--max-concurrency", "4"}, ok).ok());
}

TEST(BenchOptionsTest, OpenAiBackendsNormalizeTheBaseUrlAndGrpcStaysTheDefault) {
  BenchOptions grpc;
  ASSERT_TRUE(Parse({}, grpc).ok());
  EXPECT_EQ(grpc.backend, "grpc");

  BenchOptions chat;
  ASSERT_TRUE(Parse({"--backend", "openai-chat", "--base-url", "http://h:8000/v1/", "--model", "m",
                     "--api-key", "k"},
                    chat)
                  .ok());
  EXPECT_EQ(chat.backend, "openai-chat");
  EXPECT_EQ(chat.base_url, "http://h:8000");
  EXPECT_EQ(chat.model, "m");
  EXPECT_EQ(chat.api_key, "k");

  BenchOptions bad_url;
  EXPECT_FALSE(Parse({"--backend", "openai", "--base-url", "h:8000"}, bad_url).ok());
  BenchOptions bad_backend;
  EXPECT_FALSE(Parse({"--backend", "tgi"}, bad_backend).ok());
}

}  // namespace
}  // namespace moeserve::bench
