// The metrics endpoint end to end: the real `moeserve` binary on a tiny random model serves a
// few Generate calls, its /metrics passes `promtool check metrics`, and Debian's Prometheus,
// started on loopback by the test, scrapes it so the TTFT histogram can be queried with PromQL.
// A second test points Prometheus at the metrics port's HttpServer alone, fed synthetic events.
//
// Skipped when /usr/bin/prometheus is missing (scripts/setup installs it). Prometheus's first
// scrape can take ~13 s after start (build-notes.md §3), so the targets API is polled.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "moeserve/v1/moeserve.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "server/http/http_server.h"
#include "server/http/metrics_port.h"
#include "server/prometheus_metrics.h"
#include "tests/testing/http_get.h"
#include "tests/testing/server_process.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::HttpGet;
using testing::MetricValue;
using testing::UrlEncode;

constexpr char kPrometheus[] = "/usr/bin/prometheus";
constexpr char kPromtool[] = "/usr/bin/promtool";
constexpr char kModelName[] = "tiny-v3";

// A loopback TCP port that was free a moment ago (bound to port 0, then released).
int FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  ::close(fd);
  return port;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Debian's Prometheus on 127.0.0.1 scraping one target every second; killed on destruction.
class PrometheusProcess {
 public:
  // Starts it; false (with error()) if it exits at once, e.g. because the port was taken.
  bool Start(int target_port) {
    dir_ = fs::path(::testing::TempDir()) /
           ("moeserve_prometheus_" + std::to_string(getpid()) + "_" + std::to_string(target_port));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "data");
    const fs::path config = dir_ / "prometheus.yml";
    std::ofstream(config) << "global:\n"
                          << "  scrape_interval: 1s\n"
                          << "  scrape_timeout: 1s\n"
                          << "scrape_configs:\n"
                          << "  - job_name: moeserve\n"
                          << "    static_configs:\n"
                          << "      - targets: ['127.0.0.1:" << target_port << "']\n";
    log_ = dir_ / "prometheus.log";
    // The port is chosen free, but another process may take it before Prometheus binds.
    for (int attempt = 0; attempt < 3; ++attempt) {
      port_ = FreePort();
      std::vector<std::string> args = {
          kPrometheus,
          "--config.file=" + config.string(),
          "--storage.tsdb.path=" + (dir_ / "data").string(),
          "--web.listen-address=127.0.0.1:" + std::to_string(port_),
          "--log.level=warn",
      };
      pid_ = fork();
      if (pid_ == 0) {
        const int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        std::vector<char*> argv;
        for (std::string& a : args) argv.push_back(a.data());
        argv.push_back(nullptr);
        execv(kPrometheus, argv.data());
        _exit(127);
      }
      // Ready once its HTTP API answers; an early exit means try another port.
      const auto deadline = std::chrono::steady_clock::now() + 30s;
      while (std::chrono::steady_clock::now() < deadline) {
        int status;
        if (waitpid(pid_, &status, WNOHANG) == pid_) {
          pid_ = -1;
          break;
        }
        if (HttpGet(port_, "/-/ready", 2s).status == 200) return true;
        std::this_thread::sleep_for(200ms);
      }
      Stop();
    }
    error_ = "prometheus did not start; log:\n" + ReadFile(log_);
    return false;
  }

  // Polls the targets API until the (only) target's health is "up".
  bool WaitForTargetUp(std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      const testing::HttpResponse r = HttpGet(port_, "/api/v1/targets?state=active", 5s);
      const auto json = nlohmann::json::parse(r.body, nullptr, false);
      if (r.status == 200 && json.is_object()) {
        last_targets_ = json.dump();
        for (const auto& target : json["data"]["activeTargets"]) {
          if (target.value("health", "") == "up") return true;
        }
      }
      std::this_thread::sleep_for(250ms);
    }
    error_ = "target not up in time; last /api/v1/targets: " + last_targets_ + "\nlog:\n" +
             ReadFile(log_);
    return false;
  }

  // The value of the first element of an instant query's result vector.
  std::optional<double> Query(const std::string& promql) {
    const testing::HttpResponse r = HttpGet(port_, "/api/v1/query?query=" + UrlEncode(promql), 5s);
    const auto json = nlohmann::json::parse(r.body, nullptr, false);
    if (r.status != 200 || !json.is_object() || json.value("status", "") != "success") {
      return std::nullopt;
    }
    const auto& result = json["data"]["result"];
    if (!result.is_array() || result.empty()) return std::nullopt;
    return std::stod(result[0]["value"][1].get<std::string>());
  }

  // Polls `promql` until its value satisfies `ok` or the timeout passes; the last value seen.
  template <typename Predicate>
  std::optional<double> PollQuery(const std::string& promql, Predicate ok,
                                  std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::optional<double> value;
    while (std::chrono::steady_clock::now() < deadline) {
      value = Query(promql);
      if (value && ok(*value)) return value;
      std::this_thread::sleep_for(250ms);
    }
    return value;
  }

  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + 20s;
    int status;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(50ms);
    }
    pid_ = -1;
  }

  ~PrometheusProcess() {
    Stop();
    if (!dir_.empty()) {
      std::error_code ignored;
      fs::remove_all(dir_, ignored);
    }
  }

  const std::string& error() const { return error_; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
  fs::path dir_;
  fs::path log_;
  std::string last_targets_;
  std::string error_;
};

// Streams one Generate call to the end; returns the gRPC status.
grpc::Status Generate(v1::Moeserve::Stub& stub, const std::string& prompt, int max_tokens,
                      int* completion_tokens) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + 60s);
  v1::GenerateRequest request;
  request.set_text(prompt);
  request.mutable_sampling_params()->set_max_tokens(max_tokens);
  request.mutable_sampling_params()->set_temperature(0);
  request.mutable_sampling_params()->set_ignore_eos(true);
  auto reader = stub.Generate(&context, request);
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    if (response.has_complete()) *completion_tokens = response.complete().completion_tokens();
  }
  return reader->Finish();
}

// Our HTTP server and exposition against a real Prometheus, without the model: isolates a
// scrape problem from a server-startup one.
TEST(PrometheusScrapeTest, PrometheusScrapesTheMetricsPort) {
  if (!fs::exists(kPrometheus)) GTEST_SKIP() << kPrometheus << " not installed";
  server::PrometheusMetrics metrics(
      {.model_name = kModelName, .num_layers = 2, .num_routed_experts = 4, .num_kv_blocks = 16});
  for (int i = 1; i <= 5; ++i) metrics.OnFirstToken(0.05 * i);
  auto http = server::HttpServer::Start("127.0.0.1", 0, server::MetricsPortOptions(),
                                        [&](std::shared_ptr<server::HttpExchange> exchange) {
                                          server::ServeMetricsPort(
                                              *exchange, [&] { return metrics.Serialize(); });
                                        });
  ASSERT_TRUE(http.ok()) << http.status();

  PrometheusProcess prometheus;
  ASSERT_TRUE(prometheus.Start((*http)->port())) << prometheus.error();
  ASSERT_TRUE(prometheus.WaitForTargetUp(90s)) << prometheus.error();
  const auto count = prometheus.PollQuery(
      "moeserve_time_to_first_token_seconds_count{model_name=\"tiny-v3\"}",
      [](double v) { return v >= 5; }, 30s);
  ASSERT_TRUE(count.has_value());
  EXPECT_EQ(*count, 5);
  // Observations 0.05..0.25 s: the median is interpolated inside the (0.1, 0.25] bucket.
  const auto median = prometheus.PollQuery(
      "histogram_quantile(0.5, sum by (le) (moeserve_time_to_first_token_seconds_bucket))",
      [](double v) { return std::isfinite(v); }, 30s);
  ASSERT_TRUE(median.has_value());
  EXPECT_GT(*median, 0.1);
  EXPECT_LE(*median, 0.25);
  EXPECT_EQ(prometheus.Query("moeserve_cache_config_info{num_blocks=\"16\"}"), 1);
  EXPECT_EQ(prometheus.Query("moeserve_moe_expert_balancedness{layer=\"1\"}"), 1);
}

TEST(PrometheusScrapeTest, PrometheusScrapesTheServersTtftHistogram) {
  if (!fs::exists(kPrometheus)) GTEST_SKIP() << kPrometheus << " not installed";

  testing::ServerProcess server;
  ASSERT_TRUE(server.Start(testing::ServerBinary(),
                           {"--model", testing::TestCheckpointDir("tiny-v3", false),
                            "--served-model-name", kModelName, "--device", "cpu"}))
      << server.error();

  auto channel = grpc::CreateChannel(server.target(), grpc::InsecureChannelCredentials());
  auto stub = v1::Moeserve::NewStub(channel);
  constexpr int kRequests = 4;
  constexpr int kMaxTokens = 4;
  int generated = 0;
  for (int i = 0; i < kRequests; ++i) {
    int completion_tokens = 0;
    const grpc::Status status =
        Generate(*stub, "Hello number " + std::to_string(i), kMaxTokens, &completion_tokens);
    ASSERT_TRUE(status.ok()) << status.error_message() << "\n" << server.Log();
    EXPECT_EQ(completion_tokens, kMaxTokens);
    generated += completion_tokens;
  }

  // The exposition as the server serves it. The gRPC call counter is bumped in the call's
  // OnDone, which can run just after the client has read the status: scrape until it shows.
  testing::HttpResponse scrape = HttpGet(server.metrics_port(), "/metrics");
  for (int attempt = 0; attempt < 100 && MetricValue(scrape.body, "moeserve_grpc_requests_total",
                                                     {{"method", "Generate"}, {"code", "OK"}})
                                                 .value_or(0) < kRequests;
       ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    scrape = HttpGet(server.metrics_port(), "/metrics");
  }
  ASSERT_EQ(scrape.status, 200) << scrape.headers;
  EXPECT_NE(scrape.headers.find("Content-Type: text/plain; version=0.0.4"), std::string::npos)
      << scrape.headers;
  const std::map<std::string, std::string> model = {{"model_name", kModelName}};
  EXPECT_EQ(MetricValue(scrape.body, "moeserve_time_to_first_token_seconds_count", model),
            kRequests);
  EXPECT_EQ(MetricValue(scrape.body, "moeserve_request_success_total",
                        {{"model_name", kModelName}, {"finished_reason", "length"}}),
            kRequests);
  EXPECT_EQ(MetricValue(scrape.body, "moeserve_generation_tokens_total", model), generated);
  EXPECT_EQ(MetricValue(scrape.body, "moeserve_e2e_request_latency_seconds_count", model),
            kRequests);
  EXPECT_EQ(MetricValue(scrape.body, "moeserve_num_requests_running", model), 0);
  EXPECT_GE(MetricValue(scrape.body, "moeserve_grpc_requests_total",
                        {{"method", "Generate"}, {"code", "OK"}})
                .value_or(0),
            kRequests);
  EXPECT_GT(MetricValue(scrape.body, "moeserve_moe_routed_tokens_total").value_or(0), 0);
  EXPECT_TRUE(MetricValue(scrape.body, "moeserve_cache_config_info", model).has_value());

  if (fs::exists(kPromtool)) {
    const fs::path file =
        fs::path(::testing::TempDir()) / ("moeserve_scrape_" + std::to_string(getpid()) + ".prom");
    std::ofstream(file) << scrape.body;
    const std::string report = file.string() + ".promtool";
    const int rc = std::system(
        (std::string(kPromtool) + " check metrics < " + file.string() + " > " + report + " 2>&1")
            .c_str());
    EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << "promtool check metrics:\n"
                                                       << ReadFile(report);
  }

  PrometheusProcess prometheus;
  ASSERT_TRUE(prometheus.Start(server.metrics_port())) << prometheus.error();
  ASSERT_TRUE(prometheus.WaitForTargetUp(90s)) << prometheus.error();
  const auto count = prometheus.PollQuery(
      "moeserve_time_to_first_token_seconds_count{model_name=\"tiny-v3\"}",
      [](double v) { return v >= kRequests; }, 30s);
  ASSERT_TRUE(count.has_value()) << "no TTFT count in Prometheus";
  EXPECT_GE(*count, kRequests);
  // The buckets arrive with their `le` labels, so quantiles work in PromQL.
  const auto median = prometheus.PollQuery(
      "histogram_quantile(0.5, sum by (le) (moeserve_time_to_first_token_seconds_bucket))",
      [](double v) { return std::isfinite(v); }, 30s);
  ASSERT_TRUE(median.has_value());
  EXPECT_TRUE(std::isfinite(*median) && *median > 0) << *median;
  prometheus.Stop();

  EXPECT_EQ(server.Stop(), 0) << server.Log();
}

}  // namespace
}  // namespace moeserve
