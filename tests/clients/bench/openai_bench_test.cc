// moeserve-bench's openai backends against a fake OpenAI-compatible streaming server
// (fake_openai_server.py, Python's http.server, started here): the run's JSON counts requests,
// takes output tokens from the usage chunk (chunks carry one or two tokens), keeps TTFT below
// E2EL, counts each failure (HTTP 429, a streamed error, a malformed event) by its code, sends
// the bodies vLLM's client sends with the API key, and still scrapes --scrape-metrics. The
// OpenAiBackend under the runner: deadlines expire and Ctrl-C cancels streams in flight.
// The same flags against our own server's HTTP port: tests/integration/bench_integration_test.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "clients/bench/openai_backend.h"
#include "clients/bench/runner.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/files.h"

namespace moeserve::bench {
namespace {

namespace fs = std::filesystem;

constexpr char kApiKey[] = "secret-key";

using moeserve::testing::ReadFile;
using moeserve::testing::ReadJsonLinesFile;

// The Python server as a child process, stopped with SIGTERM.
class FakeOpenAiServer {
 public:
  bool Start(const fs::path& dir) {
    port_file_ = dir / "port.json";
    log_ = dir / "server_requests.jsonl";
    const std::string script =
        std::string(MOESERVE_SOURCE_DIR) + "/tests/clients/bench/fake_openai_server.py";
    pid_ = fork();
    if (pid_ == 0) {
      execl("/usr/bin/python3", "python3", script.c_str(), "--port-file", port_file_.c_str(),
            "--log", log_.c_str(), "--api-key", kApiKey, static_cast<char*>(nullptr));
      _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return false;
      }
      const nlohmann::json ports = nlohmann::json::parse(ReadFile(port_file_), nullptr, false);
      if (ports.is_object() && ports.contains("port")) {
        port_ = ports["port"];
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return false;
  }
  ~FakeOpenAiServer() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      waitpid(pid_, nullptr, 0);
    }
  }
  std::string BaseUrl() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<nlohmann::json> Requests() const { return ReadJsonLinesFile(log_); }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  fs::path port_file_;
  fs::path log_;
};

struct CommandResult {
  int exit_status = -1;
  std::string out;
  std::string err;
};

class OpenAiBenchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("moeserve_openai_bench_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    ASSERT_TRUE(server_.Start(dir_)) << "the fake server did not start (python3?)";
  }

  CommandResult RunBench(const std::string& args) const {
    const std::string command = std::string(MOESERVE_BENCH_BINARY) + " --disable-progress " + args +
                                " > " + (dir_ / "out.txt").string() + " 2> " +
                                (dir_ / "err.txt").string();
    const int status = std::system(command.c_str());
    return CommandResult{.exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                         .out = ReadFile(dir_ / "out.txt"),
                         .err = ReadFile(dir_ / "err.txt")};
  }

  static std::string Describe(const CommandResult& r) {
    return "exit " + std::to_string(r.exit_status) + "\nstdout:\n" + r.out + "\nstderr:\n" + r.err;
  }

  fs::path dir_;
  FakeOpenAiServer server_;
};

TEST_F(OpenAiBenchTest, CompletionsRunTakesTokensFromUsageAndCountsFailuresByCode) {
  const fs::path prompts = dir_ / "prompts.jsonl";
  {
    std::ofstream out(prompts);
    for (int i = 0; i < 5; ++i) out << "{\"prompt\": \"three word prompt\"}\n";
    out << "{\"prompt\": \"please refuse it\"}\n"
        << "{\"prompt\": \"a stream-error here\"}\n"
        << "{\"prompt\": \"some garbage now\"}\n"
        << "{\"prompt\": \"answer no-usage please\"}\n";
  }
  const fs::path result = dir_ / "result.json";
  const fs::path detail = dir_ / "requests.jsonl";
  const CommandResult r = RunBench(
      "--backend openai --base-url " + server_.BaseUrl() + "/v1 --api-key " + kApiKey +
      " --dataset-name jsonl --dataset-path " + prompts.string() +
      " --num-prompts 9 --output-len 7 --max-concurrency 3 --scrape-metrics " + server_.BaseUrl() +
      "/metrics --save-result " + result.string() + " --save-detailed " + detail.string());
  ASSERT_EQ(r.exit_status, 0) << Describe(r);
  EXPECT_NE(r.out.find("Serving Benchmark Result"), std::string::npos) << r.out;

  const nlohmann::json j = nlohmann::json::parse(ReadFile(result));
  EXPECT_EQ(j["backend"], "openai");
  EXPECT_EQ(j["model_id"], "fake-model");
  EXPECT_EQ(j["target"], server_.BaseUrl());
  EXPECT_EQ(j["completed"], 6);
  EXPECT_EQ(j["failed"], 3);
  EXPECT_EQ(j["errors_by_code"],
            (nlohmann::json{{"HTTP_429", 1}, {"HTTP_500", 1}, {"PROTOCOL_ERROR", 1}}));
  // 7 tokens in chunks of 1, 1, 2, 1, 1, 1: usage says 7; without usage the 6 chunks count.
  EXPECT_EQ(j["total_output_tokens"], 5 * 7 + 6);
  EXPECT_EQ(j["total_input_tokens"], 6 * 3);
  EXPECT_LE(j["max_concurrent_requests"].get<int>(), 3);
  EXPECT_LT(j["mean_ttft_ms"].get<double>(), j["mean_e2el_ms"].get<double>());
  ASSERT_TRUE(j.contains("server_metrics")) << j.dump(2);
  EXPECT_GT(j["server_metrics"]["generation_tokens"].get<double>(), 0.0) << j.dump(2);

  int successes = 0;
  for (const nlohmann::json& line : ReadJsonLinesFile(detail)) {
    if (!line["success"].get<bool>()) {
      EXPECT_FALSE(line["error"].get<std::string>().empty()) << line;
      continue;
    }
    ++successes;
    EXPECT_GT(line["ttft"].get<double>(), 0.0) << line;
    EXPECT_LT(line["ttft"].get<double>(), line["latency"].get<double>()) << line;
    EXPECT_EQ(line["itl"].size(), 5u) << line;  // six content chunks
    EXPECT_EQ(line["finish_reason"], "length") << line;
    EXPECT_EQ(line["prompt_len"], 3) << line;
  }
  EXPECT_EQ(successes, 6);
  const std::string details = ReadFile(detail);
  EXPECT_NE(details.find("fake server is full"), std::string::npos);
  EXPECT_NE(details.find("fake engine failure"), std::string::npos);
  EXPECT_NE(details.find("malformed JSON in a stream event"), std::string::npos);

  // What went over the wire: vLLM's body, the key, one /tokenize per text prompt.
  int completions = 0;
  int tokenizes = 0;
  for (const nlohmann::json& request : server_.Requests()) {
    EXPECT_EQ(request["authorization"], std::string("Bearer ") + kApiKey);
    if (request["path"] == "/tokenize") ++tokenizes;
    if (request["path"] != "/v1/completions") continue;
    ++completions;
    const nlohmann::json& body = request["body"];
    EXPECT_EQ(body["model"], "fake-model");
    EXPECT_EQ(body["max_tokens"], 7);
    EXPECT_EQ(body["stream"], true);
    EXPECT_EQ(body["stream_options"]["include_usage"], true);
    EXPECT_FALSE(body.contains("ignore_eos")) << body;  // a file dataset, no --ignore-eos
  }
  EXPECT_EQ(completions, 9);
  EXPECT_EQ(tokenizes, 9);
}

TEST_F(OpenAiBenchTest, ChatRandomRunSendsUserMessagesWithFixedLengths) {
  const fs::path result = dir_ / "chat.json";
  const CommandResult r = RunBench("--backend openai-chat --base-url " + server_.BaseUrl() +
                                   " --model fake-model --api-key " + kApiKey +
                                   " --num-prompts 6 --input-len 5 --output-len 4"
                                   " --request-rate 200 --num-warmups 1 --save-result " +
                                   result.string());
  ASSERT_EQ(r.exit_status, 0) << Describe(r);
  const nlohmann::json j = nlohmann::json::parse(ReadFile(result));
  EXPECT_EQ(j["backend"], "openai-chat");
  EXPECT_EQ(j["completed"], 6) << j["errors_by_code"];
  EXPECT_EQ(j["failed"], 0);
  EXPECT_EQ(j["total_output_tokens"], 6 * 4);
  EXPECT_EQ(j["total_input_tokens"], 6 * 5);  // the server's usage: five words
  EXPECT_LT(j["mean_ttft_ms"].get<double>(), j["mean_e2el_ms"].get<double>());
  int chats = 0;
  for (const nlohmann::json& request : server_.Requests()) {
    if (request["path"] != "/v1/chat/completions") continue;
    ++chats;
    const nlohmann::json& body = request["body"];
    ASSERT_EQ(body["messages"].size(), 1u) << body;
    EXPECT_EQ(body["messages"][0]["role"], "user");
    EXPECT_EQ(body["max_completion_tokens"], 4);
    EXPECT_EQ(body["ignore_eos"], true);  // random prompts ask for exact lengths
  }
  EXPECT_EQ(chats, 6 + 1);  // and the warmup
}

TEST_F(OpenAiBenchTest, WrongKeyOrNoServerFailsAtStartWithAClearMessage) {
  const CommandResult wrong =
      RunBench("--backend openai --base-url " + server_.BaseUrl() + " --api-key nope");
  EXPECT_EQ(wrong.exit_status, 1) << Describe(wrong);
  EXPECT_NE(wrong.err.find("check --api-key"), std::string::npos) << wrong.err;

  const CommandResult absent =
      RunBench("--backend openai --base-url http://127.0.0.1:1 --ready-timeout 0.5");
  EXPECT_EQ(absent.exit_status, 1) << Describe(absent);
  EXPECT_NE(absent.err.find("/v1/models did not answer"), std::string::npos) << absent.err;
}

TEST_F(OpenAiBenchTest, BackendDeadlinesExpireAndInterruptCancelsStreamsInFlight) {
  const std::vector<BenchPrompt> slow = {{.text = "slow", .prompt_len = 1, .output_len = 100}};
  OpenAiBackendOptions options{.base_url = server_.BaseUrl(),
                               .api_key = kApiKey,
                               .request = {.model = "fake-model"},
                               .timeout_s = 0.3};
  {
    OpenAiBackend backend(options);
    LoadRunner runner(backend, slow);
    const RunResult run = runner.Run(RunPlan{.num_requests = 2}, nullptr);
    ASSERT_EQ(run.records.size(), 2u);
    for (const RequestRecord& r : run.records) {
      EXPECT_EQ(r.status_code, "DEADLINE_EXCEEDED") << r.error;
      // The deadline applied (not an instant failure); libcurl's clock starts a moment after the
      // record's, so the recorded latency may fall a little short of 0.3 s.
      EXPECT_GE(r.latency, 0.2);
      EXPECT_LT(r.latency, 10.0);
    }
  }
  options.timeout_s.reset();
  OpenAiBackend backend(options);
  LoadRunner runner(backend, slow);
  std::thread interrupter([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    runner.Interrupt();
  });
  const auto begin = std::chrono::steady_clock::now();
  const RunResult run = runner.Run(RunPlan{.num_requests = 1000, .max_concurrency = 2}, nullptr);
  interrupter.join();
  EXPECT_LT(std::chrono::steady_clock::now() - begin, std::chrono::seconds(30));  // not hung
  EXPECT_TRUE(run.interrupted);
  ASSERT_EQ(run.records.size(), 2u);
  for (const RequestRecord& r : run.records) {
    EXPECT_EQ(r.status_code, "CANCELLED");
    EXPECT_GT(r.ttft, 0.0);  // tokens had arrived before the cancel
  }
}

}  // namespace
}  // namespace moeserve::bench
