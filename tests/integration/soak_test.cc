// Soak and faults on loopback, bounded in time. Many clients stream requests of random prompt
// and output lengths against a small queue, cancelling some mid-stream, dropping the connection
// of others, giving some a deadline that expires, so that the queue overflows. Every stream must
// end with either a complete message last or a clean status; afterwards the server is healthy,
// its RSS is within a bound of what it was after warm-up, and every KV block is free. Then
// SIGTERM under load: every accepted request ends properly, the server exits 0 and restarts.
//
// CI runs MOESERVE_SOAK_REQUESTS=1500 (a few seconds); docs/hardening.md records the 10,000-request
// run: MOESERVE_SOAK_REQUESTS=10000 build/tests/integration/soak_test
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "proto/grpc_code_name.h"
#include "tests/integration/server_test_client.h"
#include "tests/testing/server_process.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve::testing {
namespace {

using grpc::health::v1::HealthCheckResponse;

int SoakRequests() {
  const char* value = std::getenv("MOESERVE_SOAK_REQUESTS");
  return value != nullptr ? std::atoi(value) : 1500;
}

// Resident set of `pid` in KiB (VmRSS), or -1.
int64_t RssKib(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atoll(line.c_str() + 6);
  }
  return -1;
}

enum class Fault { kNone, kCancelMidStream, kDisconnect, kShortDeadline };

struct Outcome {
  grpc::StatusCode code = grpc::StatusCode::OK;
  bool complete_last = false;  // a complete message came, and nothing after it
  bool consistent = true;      // token counts agree with usage and max_tokens
};

// One streamed request with random lengths and maybe a fault; checks what a client can check.
Outcome RunOne(const std::string& target, std::shared_ptr<grpc::Channel> shared_channel,
               std::mt19937& rng) {
  const uint32_t max_tokens = 1 + rng() % 12;
  v1::GenerateRequest request;
  const int prompt_length = 1 + static_cast<int>(rng() % 48);
  for (int i = 0; i < prompt_length; ++i) request.mutable_tokenized()->add_input_ids(rng() % 512);
  request.mutable_sampling_params()->set_temperature(rng() % 2 == 0 ? 0.0f : 0.8f);
  request.mutable_sampling_params()->set_max_tokens(max_tokens);
  request.mutable_sampling_params()->set_ignore_eos(true);
  const int roll = static_cast<int>(rng() % 100);
  const Fault fault = roll < 8    ? Fault::kCancelMidStream
                      : roll < 12 ? Fault::kDisconnect
                      : roll < 16 ? Fault::kShortDeadline
                                  : Fault::kNone;
  // A disconnecting client has its own connection, torn down mid-stream.
  std::shared_ptr<grpc::Channel> channel =
      fault == Fault::kDisconnect ? MakeChannel(target) : shared_channel;
  auto stub = v1::Moeserve::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + (fault == Fault::kShortDeadline
                                                               ? std::chrono::milliseconds(3)
                                                               : std::chrono::milliseconds(60000)));
  auto reader = stub->Generate(&context, request);
  v1::GenerateResponse response;
  Outcome outcome;
  uint32_t tokens = 0;
  std::optional<v1::GenerateComplete> complete;
  bool after_complete = false;
  while (reader->Read(&response)) {
    if (complete) after_complete = true;
    if (response.has_chunk()) {
      tokens += response.chunk().token_ids_size();
      if (fault == Fault::kCancelMidStream || fault == Fault::kDisconnect) {
        context.TryCancel();
        if (fault == Fault::kDisconnect) channel.reset();
      }
    } else if (response.has_complete()) {
      complete = response.complete();
    }
  }
  outcome.code = reader->Finish().error_code();
  outcome.complete_last = complete.has_value() && !after_complete;
  if (outcome.code == grpc::StatusCode::OK) {
    outcome.consistent = complete.has_value() && complete->completion_tokens() == tokens &&
                         tokens <= max_tokens &&
                         complete->prompt_tokens() == uint32_t(prompt_length);
  }
  return outcome;
}

TEST(SoakTest, RandomStreamsCancelsDisconnectsAndOverflowsLeaveTheServerClean) {
  ServerProcess server;
  ASSERT_TRUE(server.Start(ServerBinary(),
                           {"--model", TestCheckpointDir("tiny-v3", false), "--max-num-seqs", "16",
                            "--max-queue", "24", "--kv-cache-tokens", "4096"}))
      << server.error();
  auto channel = MakeChannel(server.target());
  auto stub = v1::Moeserve::NewStub(channel);
  const int total = SoakRequests();
  constexpr int kClients = 44;  // more than running + queued (40): overflows happen
  std::atomic<int> next{0};
  std::atomic<int64_t> rss_after_warmup{-1};
  std::mutex mu;
  std::map<grpc::StatusCode, int> codes;
  int bad_endings = 0, inconsistent = 0;
  const uint32_t seed = std::random_device{}();
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      std::mt19937 rng(seed + c);
      for (int i = next++; i < total; i = next++) {
        if (i == total / 10) rss_after_warmup = RssKib(server.pid());
        const Outcome o = RunOne(server.target(), channel, rng);
        if (o.code == grpc::StatusCode::RESOURCE_EXHAUSTED) {
          // As a real client would: back off before the next request.
          std::this_thread::sleep_for(std::chrono::milliseconds(10 + rng() % 40));
        }
        std::lock_guard lock(mu);
        ++codes[o.code];
        if (o.code == grpc::StatusCode::OK && !o.complete_last) ++bad_endings;
        if (!o.consistent) ++inconsistent;
      }
    });
  }
  for (std::thread& t : clients) t.join();

  std::string summary = absl::StrCat("seed ", seed, ", ", total, " requests:");
  for (const auto& [code, count] : codes)
    absl::StrAppend(&summary, " ", GrpcCodeName(code), "=", count);
  std::printf("%s\n", summary.c_str());
  RecordProperty("outcomes", summary);
  for (const auto& [code, count] : codes) {
    EXPECT_TRUE(code == grpc::StatusCode::OK || code == grpc::StatusCode::CANCELLED ||
                code == grpc::StatusCode::DEADLINE_EXCEEDED ||
                code == grpc::StatusCode::RESOURCE_EXHAUSTED)
        << GrpcCodeName(code) << " x" << count << "; " << summary;
  }
  // How many complete (rather than overflow) depends on the machine's speed; a loaded CI box
  // completes fewer. What matters is that many do and that none ends badly.
  EXPECT_GT(codes[grpc::StatusCode::OK], total / 20) << summary;
  EXPECT_GT(codes[grpc::StatusCode::CANCELLED], 0) << summary;
  EXPECT_GT(codes[grpc::StatusCode::RESOURCE_EXHAUSTED], 0) << summary;
  EXPECT_EQ(bad_endings, 0) << summary;
  EXPECT_EQ(inconsistent, 0) << summary;

  // Healthy, idle, every KV block free, memory bounded.
  EXPECT_TRUE(WaitUntilIdle(*stub)) << ServerInfo(*stub).DebugString();
  EXPECT_EQ(HealthStatus(*channel), HealthCheckResponse::SERVING);
  const std::string metrics = ScrapeMetrics(server.metrics_port());
  EXPECT_EQ(MetricValue(metrics, "moeserve_kv_cache_usage_perc{"), 0.0) << metrics;
  EXPECT_EQ(MetricValue(metrics, "moeserve_num_requests_running{"), 0.0) << metrics;
  EXPECT_EQ(MetricValue(metrics, "moeserve_num_requests_waiting{"), 0.0) << metrics;
  const int64_t rss_end = RssKib(server.pid());
  std::printf("RSS after warm-up %lld KiB, at the end %lld KiB\n",
              static_cast<long long>(rss_after_warmup.load()), static_cast<long long>(rss_end));
  ASSERT_GT(rss_after_warmup.load(), 0);
#if defined(__SANITIZE_ADDRESS__)
  // ASan keeps freed memory in its quarantine (256 MiB by default), so RSS says nothing about
  // leaks there; LeakSanitizer checks them at the server's exit instead.
  std::printf("RSS bound not checked under AddressSanitizer\n");
#else
  EXPECT_LT(rss_end, rss_after_warmup.load() + 64 * 1024) << "RSS grew by more than 64 MiB";
#endif
  const StreamResult after = Generate(*stub, [] {
    v1::GenerateRequest r;
    r.set_text("still serving");
    r.mutable_sampling_params()->set_max_tokens(4);
    r.mutable_sampling_params()->set_ignore_eos(true);
    return r;
  }());
  EXPECT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(server.Stop(), 0) << server.Log();
}

TEST(SoakTest, SigtermUnderLoadEndsEveryAcceptedRequestThenExitsZeroAndRestarts) {
  const std::string model = TestCheckpointDir("tiny-v3", false);
  ServerProcess server;
  ASSERT_TRUE(server.Start(
      ServerBinary(), {"--model", model, "--max-num-seqs", "8", "--shutdown-grace-seconds", "1"}))
      << server.error();
  auto channel = MakeChannel(server.target());
  constexpr int kClients = 24;
  std::atomic<int> started{0};
  std::vector<Outcome> outcomes(kClients);
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      auto stub = v1::Moeserve::NewStub(channel);
      v1::GenerateRequest request;
      request.set_text(absl::StrCat("client ", c, " tells a long story"));
      request.mutable_sampling_params()->set_max_tokens(c % 2 == 0 ? 20 : 3000);
      request.mutable_sampling_params()->set_ignore_eos(true);
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
      auto reader = stub->Generate(&context, request);
      v1::GenerateResponse response;
      bool counted = false, complete = false, after_complete = false;
      while (reader->Read(&response)) {
        if (!counted) {
          ++started;
          counted = true;
        }
        if (complete) after_complete = true;
        complete = complete || response.has_complete();
      }
      outcomes[c].code = reader->Finish().error_code();
      outcomes[c].complete_last = complete && !after_complete;
    });
  }
  // Half the clients streaming (or, on a very slow machine, whatever streams after 60 s).
  const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (started < kClients / 2 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_GT(started.load(), 0);
  ASSERT_EQ(kill(server.pid(), SIGTERM), 0);
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(server.Stop(), 0) << server.Log();
  for (int c = 0; c < kClients; ++c) {
    SCOPED_TRACE(c);
    // Accepted and streamed: ends with its complete message (finish_reason length or abort once
    // the grace period ran out). Refused after SIGTERM: UNAVAILABLE, cleanly.
    if (outcomes[c].code == grpc::StatusCode::OK) {
      EXPECT_TRUE(outcomes[c].complete_last);
    } else {
      EXPECT_EQ(outcomes[c].code, grpc::StatusCode::UNAVAILABLE);
    }
  }
  ServerProcess restarted;
  ASSERT_TRUE(restarted.Start(ServerBinary(), {"--model", model})) << restarted.error();
  auto stub = v1::Moeserve::NewStub(MakeChannel(restarted.target()));
  v1::GenerateRequest request;
  request.set_text("after the restart");
  request.mutable_sampling_params()->set_max_tokens(3);
  request.mutable_sampling_params()->set_ignore_eos(true);
  const StreamResult result = Generate(*stub, request);
  EXPECT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.token_ids.size(), 3u);
  EXPECT_EQ(restarted.Stop(), 0);
}

}  // namespace
}  // namespace moeserve::testing
