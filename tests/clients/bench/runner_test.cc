// The runner against an in-process fake Moeserve service on loopback: the concurrency limit
// holds, send times follow the schedule, multi-id messages are counted by ids, errors keep
// their gRPC code, deadlines and Ctrl-C cancel, and a --duration run stops sending on time.
#include "clients/bench/runner.h"

#include <atomic>
#include <chrono>
#include <thread>

#include "clients/bench/bench_metrics.h"
#include "clients/bench/grpc_backend.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "moeserve/v1/moeserve.grpc.pb.h"

namespace moeserve::bench {
namespace {

using std::chrono::milliseconds;

// Streams max_tokens ids, 5 ms apart, every third message carrying two ids; prompt text "fail"
// is refused, "slow" streams 1 id per 200 ms until cancelled.
class FakeMoeserve final : public v1::Moeserve::Service {
 public:
  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        grpc::ServerWriter<v1::GenerateResponse>* writer) override {
    const int now = ++in_flight_;
    int peak = max_in_flight_.load();
    while (now > peak && !max_in_flight_.compare_exchange_weak(peak, now)) {
    }
    const grpc::Status status = Stream(context, *request, writer);
    --in_flight_;
    return status;
  }

  int max_in_flight() const { return max_in_flight_; }

 private:
  grpc::Status Stream(grpc::ServerContext* context, const v1::GenerateRequest& request,
                      grpc::ServerWriter<v1::GenerateResponse>* writer) {
    if (request.text() == "fail") {
      return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "queue full");
    }
    const bool slow = request.text() == "slow";
    const uint32_t max_tokens = request.sampling_params().max_tokens();
    uint32_t sent = 0;
    for (int message = 0; sent < max_tokens; ++message) {
      if (context->IsCancelled()) return grpc::Status::CANCELLED;
      std::this_thread::sleep_for(milliseconds(slow ? 200 : 5));
      v1::GenerateResponse response;
      const uint32_t ids = std::min<uint32_t>(message % 3 == 2 ? 2 : 1, max_tokens - sent);
      for (uint32_t i = 0; i < ids; ++i) response.mutable_chunk()->add_token_ids(7);
      sent += ids;
      response.mutable_chunk()->set_completion_tokens(sent);
      if (!writer->Write(response)) return grpc::Status::CANCELLED;
    }
    v1::GenerateResponse done;
    done.mutable_complete()->set_finish_reason("length");
    done.mutable_complete()->set_completion_tokens(sent);
    done.mutable_complete()->set_prompt_tokens(request.tokenized().input_ids_size());
    writer->Write(done);
    return grpc::Status::OK;
  }

  std::atomic<int> in_flight_{0};
  std::atomic<int> max_in_flight_{0};
};

class RunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Moeserve::NewStub(channel_);
  }
  void TearDown() override { server_->Shutdown(std::chrono::system_clock::now()); }

  static std::vector<BenchPrompt> IdPrompts(int n, int output_len) {
    std::vector<BenchPrompt> prompts(n);
    for (BenchPrompt& p : prompts) {
      p.token_ids = {5, 6, 7};
      p.prompt_len = 3;
      p.output_len = output_len;
    }
    return prompts;
  }

  FakeMoeserve service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Moeserve::Stub> stub_;
};

TEST_F(RunnerTest, ClosedLoopNeverExceedsMaxConcurrencyAndCountsIdsNotMessages) {
  const std::vector<BenchPrompt> prompts = IdPrompts(12, 7);
  GrpcBackend backend({stub_.get()}, RequestTemplate{});
  LoadRunner runner(backend, prompts);
  const RunResult run = runner.Run(RunPlan{.num_requests = 12, .max_concurrency = 3}, nullptr);
  ASSERT_EQ(run.records.size(), 12u);
  EXPECT_LE(service_.max_in_flight(), 3);
  EXPECT_FALSE(run.interrupted);
  for (const RequestRecord& r : run.records) {
    ASSERT_TRUE(r.success) << r.status_code << " " << r.error;
    // 7 ids in six messages of 1, 1, 2, 1, 1, 1: five gaps.
    EXPECT_EQ(r.output_tokens, 7);
    EXPECT_EQ(r.server_completion_tokens, 7);
    EXPECT_EQ(r.itl.size(), 5u);
    EXPECT_EQ(r.token_message_counts, (std::vector<int32_t>{1, 1, 2, 1, 1, 1}));
    EXPECT_GT(r.ttft, 0.0);
    EXPECT_LE(r.ttft, r.latency);
    EXPECT_EQ(r.finish_reason, "length");
    EXPECT_EQ(r.prompt_len, 3);
  }
  const BenchmarkMetrics m = ComputeMetrics(run.records, run.duration_s, {99}, {});
  EXPECT_EQ(m.max_concurrent_requests, 3);
  EXPECT_EQ(m.total_output, 12 * 7);
}

TEST_F(RunnerTest, RequestIdsAreNeverReusedAcrossRuns) {
  const std::vector<BenchPrompt> prompts = IdPrompts(2, 1);
  GrpcBackend backend({stub_.get()}, RequestTemplate{});
  LoadRunner runner(backend, prompts, "p-");
  const RunResult first = runner.Run(RunPlan{.num_requests = 2}, nullptr);
  const RunResult second = runner.Run(RunPlan{.num_requests = 2}, nullptr);
  EXPECT_EQ(first.records[1].request_id, "p-1");
  EXPECT_EQ(second.records[0].request_id, "p-2");
  EXPECT_EQ(second.records[0].index, 0);  // the index stays the position in its own run
}

TEST_F(RunnerTest, OpenLoopSendsAtTheScheduledTimes) {
  const std::vector<BenchPrompt> prompts = IdPrompts(3, 1);
  GrpcBackend backend({stub_.get()}, RequestTemplate{});
  LoadRunner runner(backend, prompts);
  const RunResult run =
      runner.Run(RunPlan{.num_requests = 3, .send_offsets = {0.0, 0.1, 0.2}}, nullptr);
  ASSERT_EQ(run.records.size(), 3u);
  for (const RequestRecord& r : run.records) {
    EXPECT_GE(r.start_time, r.scheduled_time);
    EXPECT_LT(r.start_time - r.scheduled_time, 0.05);
  }
  EXPECT_GE(run.duration_s, 0.2);
}

TEST_F(RunnerTest, FailuresKeepTheirStatusCodeAndDeadlinesExpire) {
  std::vector<BenchPrompt> prompts = {{.text = "fail", .prompt_len = 1, .output_len = 4},
                                      {.text = "slow", .prompt_len = 1, .output_len = 50}};
  RequestTemplate request_template;
  request_template.timeout_s = 0.3;
  GrpcBackend backend({stub_.get()}, request_template);
  LoadRunner runner(backend, prompts);
  const RunResult run = runner.Run(RunPlan{.num_requests = 2}, nullptr);
  ASSERT_EQ(run.records.size(), 2u);
  EXPECT_EQ(run.records[0].status_code, "RESOURCE_EXHAUSTED");
  EXPECT_EQ(run.records[0].error, "queue full");
  EXPECT_EQ(run.records[1].status_code, "DEADLINE_EXCEEDED");
  const BenchmarkMetrics m = ComputeMetrics(run.records, run.duration_s, {99}, {});
  EXPECT_EQ(m.failed, 2);
  EXPECT_EQ(m.errors_by_code.at("RESOURCE_EXHAUSTED"), 1);
}

TEST_F(RunnerTest, InterruptStopsSendingAndCancelsWhatIsInFlight) {
  std::vector<BenchPrompt> prompts = {{.text = "slow", .prompt_len = 1, .output_len = 100}};
  GrpcBackend backend({stub_.get()}, RequestTemplate{});
  LoadRunner runner(backend, prompts);
  std::thread interrupter([&] {
    std::this_thread::sleep_for(milliseconds(300));
    runner.Interrupt();
  });
  const auto begin = std::chrono::steady_clock::now();
  const RunResult run = runner.Run(RunPlan{.num_requests = 1000, .max_concurrency = 2}, nullptr);
  interrupter.join();
  EXPECT_LT(std::chrono::steady_clock::now() - begin, std::chrono::seconds(5));
  EXPECT_TRUE(run.interrupted);
  ASSERT_EQ(run.records.size(), 2u);  // two in flight, nothing sent after the interrupt
  for (const RequestRecord& r : run.records) EXPECT_EQ(r.status_code, "CANCELLED");
}

TEST_F(RunnerTest, DurationRunStopsSendingWhenTheTimeIsUp) {
  const std::vector<BenchPrompt> prompts = IdPrompts(4, 3);
  GrpcBackend backend({stub_.get()}, RequestTemplate{});
  LoadRunner runner(backend, prompts);
  const RunResult run = runner.Run(
      RunPlan{.num_requests = 1 << 20, .duration_s = 0.4, .max_concurrency = 2}, nullptr);
  // Each request takes ~15-20 ms, two at a time: about 40-50 in 0.4 s; allow a slow machine.
  EXPECT_GE(run.records.size(), 4u);
  EXPECT_LT(run.records.size(), 200u);
  for (const RequestRecord& r : run.records) EXPECT_LT(r.start_time, 0.4 + 0.05);
  for (const RequestRecord& r : run.records) EXPECT_TRUE(r.success) << r.status_code;
}

TEST(BuildGenerateRequestTest, IdsGoAsTokenizedInputAndTextAsText) {
  RequestTemplate t;
  t.sampling.set_temperature(0.0f);
  t.ignore_eos = true;
  const v1::GenerateRequest ids =
      BuildGenerateRequest({.token_ids = {3, 4}, .prompt_len = 2, .output_len = 9}, t, "r1");
  EXPECT_EQ(ids.request_id(), "r1");
  EXPECT_EQ(ids.tokenized().input_ids_size(), 2);
  EXPECT_EQ(ids.sampling_params().max_tokens(), 9u);
  EXPECT_TRUE(ids.sampling_params().ignore_eos());
  EXPECT_TRUE(ids.sampling_params().has_temperature());
  const v1::GenerateRequest text =
      BuildGenerateRequest({.text = "hello", .output_len = 1}, t, "r2");
  EXPECT_EQ(text.text(), "hello");
  EXPECT_FALSE(text.has_tokenized());
}

}  // namespace
}  // namespace moeserve::bench
