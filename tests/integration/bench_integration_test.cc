// moeserve-bench against the real server on a tiny random model: a short run is internally
// consistent (completed + failed = sent; ids streamed = output tokens = the server's usage and
// its generation counter; TTFT <= E2EL) and agrees with the server's own TTFT histogram; a
// refused workload is counted by status code; a sweep writes a row and a result per point; a
// text prompt file is counted with the server's tokenizer; --backend openai and openai-chat
// over the server's HTTP port agree with its usage and counters.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"
#include "tests/testing/files.h"
#include "tests/testing/server_process.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve {
namespace {

namespace fs = std::filesystem;

struct CommandResult {
  int exit_status = -1;
  std::string out;
  std::string err;
};

using moeserve::testing::ReadFile;
using moeserve::testing::ReadJsonLinesFile;

class BenchIntegrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    server_ = new testing::ServerProcess();
    if (!server_->Start(testing::ServerBinary(),
                        {"--model", testing::TestCheckpointDir("tiny-v3", false),
                         "--served-model-name", "bench-test-model", "--device", "cpu"})) {
      start_error_ = server_->error();
    }
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(start_error_.empty()) << start_error_;
    dir_ = fs::path(::testing::TempDir()) /
           ("moeserve_bench_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }

  // Our OpenAI-compatible HTTP API (ServerProcess starts the server with --http-port -1).
  std::string BaseUrl() const { return "http://127.0.0.1:" + std::to_string(server_->http_port()); }

  std::string MetricsUrl() const {
    return "http://127.0.0.1:" + std::to_string(server_->metrics_port()) + "/metrics";
  }

  // Runs moeserve-bench against the server with `args` appended.
  CommandResult RunBench(const std::string& args) const {
    const std::string command = std::string(MOESERVE_BENCH_BINARY) + " --target " +
                                server_->target() + " --disable-progress " + args + " > " +
                                (dir_ / "out.txt").string() + " 2> " + (dir_ / "err.txt").string();
    const int status = std::system(command.c_str());
    CommandResult result;
    result.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    result.out = ReadFile(dir_ / "out.txt");
    result.err = ReadFile(dir_ / "err.txt");
    return result;
  }

  static std::string Describe(const CommandResult& r) {
    return "exit " + std::to_string(r.exit_status) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
  }

  static inline testing::ServerProcess* server_ = nullptr;
  static inline std::string start_error_;
  fs::path dir_;
};

TEST_F(BenchIntegrationTest, ClosedLoopRunIsConsistentWithTheServersOwnAccounts) {
  constexpr int kPrompts = 24;
  const fs::path result = dir_ / "result.json";
  const fs::path detail = dir_ / "requests.jsonl";
  const CommandResult r = RunBench(
      "--num-prompts " + std::to_string(kPrompts) +
      " --input-len 16 --output-len 8 --range-ratio 0.5 --max-concurrency 6 --seed 7"
      " --num-warmups 2 --goodput ttft:60000 --scrape-metrics " +
      MetricsUrl() + " --save-result " + result.string() + " --save-detailed " + detail.string());
  ASSERT_EQ(r.exit_status, 0) << Describe(r);
  EXPECT_NE(r.out.find("Serving Benchmark Result"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("Server mean TTFT (ms):"), std::string::npos) << r.out;

  const nlohmann::json j = nlohmann::json::parse(ReadFile(result));
  EXPECT_EQ(j["model_id"], "bench-test-model");
  EXPECT_EQ(j["completed"].get<int>() + j["failed"].get<int>(), kPrompts);
  EXPECT_EQ(j["failed"], 0) << j["errors_by_code"];
  EXPECT_EQ(j["usage_mismatches"], 0);
  EXPECT_LE(j["max_concurrent_requests"].get<int>(), 6);
  EXPECT_DOUBLE_EQ(j["request_goodput"].get<double>(), j["request_throughput"].get<double>());

  // Per request: the ids streamed are what was asked for (ignore_eos) and what the server
  // reports in its usage; the first token never comes after the last.
  const std::vector<nlohmann::json> lines = ReadJsonLinesFile(detail);
  ASSERT_EQ(lines.size(), static_cast<size_t>(kPrompts));
  int64_t streamed = 0;
  int64_t prompt_tokens = 0;
  for (const nlohmann::json& line : lines) {
    ASSERT_TRUE(line["success"].get<bool>()) << line;
    EXPECT_EQ(line["output_tokens"], line["max_tokens"]) << line;
    EXPECT_EQ(line["output_tokens"], line["server_completion_tokens"]) << line;
    EXPECT_EQ(line["prompt_len"], line["server_prompt_tokens"]) << line;
    EXPECT_GE(line["max_tokens"].get<int>(), 4);  // floor(8 * 0.5)
    EXPECT_LE(line["max_tokens"].get<int>(), 12);
    EXPECT_LE(line["ttft"].get<double>(), line["latency"].get<double>()) << line;
    // The server's timing starts at its arrival, after the client's send, and its first and
    // last tokens reach the client later still (one monotonic clock on one machine).
    EXPECT_GT(line["server_ttft_s"].get<double>(), 0.0) << line;
    EXPECT_LE(line["server_ttft_s"].get<double>(), line["ttft"].get<double>()) << line;
    EXPECT_LE(line["server_e2e_s"].get<double>(), line["latency"].get<double>()) << line;
    EXPECT_EQ(line["itl"].size() + 1, line["output_tokens"].get<size_t>()) << line;
    streamed += line["output_tokens"].get<int64_t>();
    prompt_tokens += line["prompt_len"].get<int64_t>();
  }
  EXPECT_EQ(j["total_output_tokens"].get<int64_t>(), streamed);
  EXPECT_EQ(j["total_input_tokens"].get<int64_t>(), prompt_tokens);

  // The server's counters over the run (warmups happen before the first scrape).
  const nlohmann::json& server = j["server_metrics"];
  ASSERT_TRUE(server.is_object()) << j.dump(2);
  EXPECT_DOUBLE_EQ(server["generation_tokens"].get<double>(), static_cast<double>(streamed));
  EXPECT_DOUBLE_EQ(server["prompt_tokens"].get<double>(), static_cast<double>(prompt_tokens));
  EXPECT_DOUBLE_EQ(server["finished_by_reason"]["length"].get<double>(), kPrompts);
  ASSERT_TRUE(server["ttft_ms"].is_object()) << server.dump(2);
  EXPECT_DOUBLE_EQ(server["ttft_ms"]["count"].get<double>(), kPrompts);
  // The server measures from its arrival, the client from its send: the client's mean is the
  // server's plus the request path (client, gRPC, validation). Generous bounds: 2 shared cores.
  const double client_ttft = j["mean_ttft_ms"].get<double>();
  const double server_ttft = server["ttft_ms"]["mean"].get<double>();
  EXPECT_LE(server_ttft, client_ttft + 1.0);
  EXPECT_NEAR(client_ttft, server_ttft, std::max(50.0, 0.5 * client_ttft))
      << "client " << client_ttft << " ms, server " << server_ttft << " ms";
  ASSERT_TRUE(server["itl_ms"].is_object());
  EXPECT_DOUBLE_EQ(server["itl_ms"]["count"].get<double>(),
                   static_cast<double>(streamed - kPrompts));
}

TEST_F(BenchIntegrationTest, RefusedRequestsAreCountedByStatusCode) {
  // Longer than the server's context (4096): every request is INVALID_ARGUMENT.
  const fs::path result = dir_ / "refused.json";
  const CommandResult r =
      RunBench("--num-prompts 4 --input-len 5000 --output-len 4 --save-result " + result.string());
  EXPECT_EQ(r.exit_status, 1) << Describe(r);  // nothing completed: a broken setup
  const nlohmann::json j = nlohmann::json::parse(ReadFile(result));
  EXPECT_EQ(j["completed"], 0);
  EXPECT_EQ(j["failed"], 4);
  EXPECT_EQ(j["errors_by_code"]["INVALID_ARGUMENT"], 4) << j["errors_by_code"];
  EXPECT_NE(r.out.find("INVALID_ARGUMENT:"), std::string::npos) << r.out;
}

TEST_F(BenchIntegrationTest, PoissonRateSweepPrintsARowAndWritesAResultPerPoint) {
  const fs::path result = dir_ / "sweep.json";
  const CommandResult r = RunBench(
      "--num-prompts 6 --input-len 8 --output-len 4 --sweep "
      "request-rate=50,inf --save-result " +
      result.string() + " --plot " + (dir_ / "sweep.png").string());
  ASSERT_EQ(r.exit_status, 0) << Describe(r);
  EXPECT_NE(r.out.find("request-rate"), std::string::npos) << r.out;
  for (const char* point : {"rate50", "rateinf"}) {
    const fs::path file = dir_ / ("sweep-" + std::string(point) + ".json");
    ASSERT_TRUE(fs::exists(file)) << file << "\n" << r.out;
    const nlohmann::json j = nlohmann::json::parse(ReadFile(file));
    EXPECT_EQ(j["completed"], 6) << Describe(r);
  }
  EXPECT_EQ(nlohmann::json::parse(ReadFile(dir_ / "sweep-rate50.json"))["request_rate"], 50.0);
  EXPECT_EQ(nlohmann::json::parse(ReadFile(dir_ / "sweep-rateinf.json"))["request_rate"], "inf");
  // The chart needs gnuplot (scripts/setup installs it); without it the run says so and goes on.
  if (std::system("command -v gnuplot > /dev/null 2>&1") == 0) {
    EXPECT_TRUE(fs::exists(dir_ / "sweep.png")) << r.out;
  } else {
    EXPECT_NE(r.out.find("Skipping --plot"), std::string::npos) << r.out;
  }
}

TEST_F(BenchIntegrationTest, TextPromptFileIsCountedWithTheServersTokenizer) {
  const fs::path prompts = dir_ / "prompts.jsonl";
  std::ofstream(prompts) << "{\"prompt\": \"Hello world, this is a benchmark.\"}\n"
                            "{\"prompt\": \"Another prompt\", \"output_len\": 3}\n";
  const fs::path detail = dir_ / "text.jsonl";
  const CommandResult r =
      RunBench("--dataset-name jsonl --dataset-path " + prompts.string() +
               " --num-prompts 4 --output-len 5 --ignore-eos --save-detailed " + detail.string());
  ASSERT_EQ(r.exit_status, 0) << Describe(r);
  const std::vector<nlohmann::json> lines = ReadJsonLinesFile(detail);
  ASSERT_EQ(lines.size(), 4u);
  for (const nlohmann::json& line : lines) {
    ASSERT_TRUE(line["success"].get<bool>()) << line;
    EXPECT_EQ(line["output_tokens"], 5);  // --output-len overrides the file
    EXPECT_EQ(line["prompt_len"], line["server_prompt_tokens"]);
  }
}

TEST_F(BenchIntegrationTest, OpenAiBackendsOverOurHttpPortAgreeWithTheServersAccounts) {
  if (server_->http_port() == 0) GTEST_SKIP() << "this server wrote no http_port";
  constexpr int kPrompts = 8;
  for (const std::string backend : {"openai", "openai-chat"}) {
    SCOPED_TRACE(backend);
    const fs::path result = dir_ / (backend + ".json");
    const fs::path detail = dir_ / (backend + ".jsonl");
    const CommandResult r = RunBench(
        "--backend " + backend + " --base-url " + BaseUrl() + " --num-prompts " +
        std::to_string(kPrompts) +
        " --input-len 8 --output-len 6 --max-concurrency 4 --seed 3 --num-warmups 1"
        " --scrape-metrics " +
        MetricsUrl() + " --save-result " + result.string() + " --save-detailed " + detail.string());
    ASSERT_EQ(r.exit_status, 0) << Describe(r);
    const nlohmann::json j = nlohmann::json::parse(ReadFile(result));
    EXPECT_EQ(j["backend"], backend);
    EXPECT_EQ(j["model_id"], "bench-test-model");  // the first id of /v1/models
    EXPECT_EQ(j["completed"], kPrompts);
    EXPECT_EQ(j["failed"], 0) << j["errors_by_code"];
    EXPECT_EQ(j["usage_mismatches"], 0);

    // Random prompts are words over HTTP; ignore_eos still makes the output length exact, and
    // the lengths in the report are the server's usage.
    int64_t streamed = 0;
    int64_t prompt_tokens = 0;
    for (const nlohmann::json& line : ReadJsonLinesFile(detail)) {
      ASSERT_TRUE(line["success"].get<bool>()) << line;
      EXPECT_EQ(line["output_tokens"], line["max_tokens"]) << line;
      EXPECT_EQ(line["output_tokens"], line["server_completion_tokens"]) << line;
      EXPECT_EQ(line["prompt_len"], line["server_prompt_tokens"]) << line;
      EXPECT_GT(line["ttft"].get<double>(), 0.0) << line;
      EXPECT_LE(line["ttft"].get<double>(), line["latency"].get<double>()) << line;
      streamed += line["output_tokens"].get<int64_t>();
      prompt_tokens += line["prompt_len"].get<int64_t>();
    }
    EXPECT_EQ(j["total_output_tokens"].get<int64_t>(), streamed);
    EXPECT_EQ(j["total_input_tokens"].get<int64_t>(), prompt_tokens);
    // The server's own counters over the run (the warmup came before the first scrape).
    const nlohmann::json& server = j["server_metrics"];
    ASSERT_TRUE(server.is_object()) << j.dump(2);
    EXPECT_DOUBLE_EQ(server["generation_tokens"].get<double>(), static_cast<double>(streamed));
    EXPECT_DOUBLE_EQ(server["prompt_tokens"].get<double>(), static_cast<double>(prompt_tokens));
  }

  // Over-long prompts: refused with HTTP 400 and counted by that code.
  const fs::path refused = dir_ / "refused.json";
  const CommandResult r = RunBench("--backend openai --base-url " + BaseUrl() +
                                   " --num-prompts 3 --input-len 5000 --output-len 4"
                                   " --save-result " +
                                   refused.string());
  EXPECT_EQ(r.exit_status, 1) << Describe(r);
  const nlohmann::json j = nlohmann::json::parse(ReadFile(refused));
  EXPECT_EQ(j["failed"], 3);
  EXPECT_EQ(j["errors_by_code"]["HTTP_400"], 3) << j["errors_by_code"];
}

}  // namespace
}  // namespace moeserve
