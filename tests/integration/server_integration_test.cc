// The real `moeserve` binary on 127.0.0.1 (port 0) with the tiny-v3 checkpoint, driven by the
// C++ gRPC client: streaming with text and token input (greedy output equal to the library's
// GenerateGreedy), 40 concurrent streams with mixed sampling parameters, a table of bad inputs
// over the wire, cancellation, Abort, deadlines, queue limits and info RPCs. Startup, health
// and SIGTERM behaviour are in server_lifecycle_test.cc, reflection in reflection_test.cc.
#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <regex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "engine/model/deepseek_model.h"
#include "engine/runner/offline_runner.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "tests/integration/server_test_client.h"
#include "tests/testing/server_process.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve::testing {
namespace {

class ServerIntegrationTest : public ::testing::Test {
 protected:
  void StartServer(std::vector<std::string> extra_args = {}) {
    model_dir_ = TestCheckpointDir("tiny-v3", false);
    std::vector<std::string> args = {"--model", model_dir_,          "--served-model-name",
                                     "tiny",    "--kv-cache-tokens", "8192"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    ASSERT_TRUE(server_.Start(ServerBinary(), args)) << server_.error();
    channel_ = MakeChannel(server_.target());
    stub_ = v1::Moeserve::NewStub(channel_);
  }
  void SetUp() override { StartServer(); }
  void TearDown() override {
    if (HasFailure()) std::cerr << "server log:\n" << server_.Log();
  }

  static v1::GenerateRequest Greedy(const std::string& text, uint32_t max_tokens) {
    v1::GenerateRequest request;
    request.set_text(text);
    request.mutable_sampling_params()->set_temperature(0.0f);
    request.mutable_sampling_params()->set_max_tokens(max_tokens);
    request.mutable_sampling_params()->set_ignore_eos(true);
    return request;
  }

  // Starts a long stream and returns once its first chunk arrived.
  struct LongStream {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<v1::GenerateResponse>> reader;
  };
  std::unique_ptr<LongStream> StartLongStream(const std::string& request_id,
                                              uint32_t max_tokens = 3000) {
    auto stream = std::make_unique<LongStream>();
    v1::GenerateRequest request = Greedy("A long story:", max_tokens);
    request.set_request_id(request_id);
    stream->reader = stub_->Generate(&stream->context, request);
    v1::GenerateResponse first;
    EXPECT_TRUE(stream->reader->Read(&first));
    EXPECT_TRUE(first.has_chunk());
    return stream;
  }

  std::string model_dir_;
  ServerProcess server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Moeserve::Stub> stub_;
};

// The library's greedy continuation, as moeserve-generate computes it.
std::vector<uint32_t> LibraryGreedy(const std::string& model_dir,
                                    const std::vector<int32_t>& prompt, int64_t num_tokens) {
  auto model = engine::DeepseekModel::Load(model_dir);
  EXPECT_TRUE(model.ok()) << model.status();
  auto generated = engine::GenerateGreedy(**model, {prompt}, num_tokens);
  EXPECT_TRUE(generated.ok()) << generated.status();
  return std::vector<uint32_t>((*generated)[0].begin(), (*generated)[0].end());
}

TEST_F(ServerIntegrationTest, GreedyTextStreamMatchesLibrary) {
  const std::string prompt = "In the beginning God";
  auto tokenizer = engine::Tokenizer::Load(model_dir_);
  ASSERT_TRUE(tokenizer.ok());
  const std::vector<int32_t> prompt_ids = *(*tokenizer)->Encode(prompt, true);
  const std::vector<uint32_t> expected = LibraryGreedy(model_dir_, prompt_ids, 12);

  const StreamResult result = Generate(*stub_, Greedy(prompt, 12));
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.token_ids, expected);
  const std::vector<int32_t> expected_signed(expected.begin(), expected.end());
  EXPECT_EQ(result.text, engine::LossyUtf8((*tokenizer)->Decode(expected_signed, true)));
  ASSERT_TRUE(result.complete.has_value());
  EXPECT_TRUE(result.complete_was_last);
  EXPECT_EQ(result.complete->finish_reason(), "length");
  EXPECT_EQ(result.complete->completion_tokens(), 12u);
  EXPECT_EQ(result.complete->prompt_tokens(), prompt_ids.size());
  EXPECT_EQ(std::vector<uint32_t>(result.complete->output_ids().begin(),
                                  result.complete->output_ids().end()),
            expected);
  EXPECT_GT(result.complete->timing().e2e_seconds(), 0.0);
  EXPECT_GE(result.complete->timing().e2e_seconds(),
            result.complete->timing().time_to_first_token_seconds());
}

TEST_F(ServerIntegrationTest, GreedyTokenStreamMatchesLibrary) {
  const std::vector<int32_t> prompt = {0, 17, 200, 31, 450, 9, 77};
  const std::vector<uint32_t> expected = LibraryGreedy(model_dir_, prompt, 10);
  v1::GenerateRequest request;
  for (int32_t id : prompt) request.mutable_tokenized()->add_input_ids(id);
  request.mutable_sampling_params()->set_temperature(0.0f);
  request.mutable_sampling_params()->set_max_tokens(10);
  request.mutable_sampling_params()->set_ignore_eos(true);
  request.mutable_sampling_params()->set_logprobs(3);
  const StreamResult result = Generate(*stub_, request);
  ASSERT_TRUE(result.status.ok()) << result.status.error_message();
  EXPECT_EQ(result.token_ids, expected);
  EXPECT_EQ(result.num_logprob_entries, 10);
  ASSERT_TRUE(result.complete.has_value());
  EXPECT_EQ(result.complete->prompt_tokens(), prompt.size());
}

TEST_F(ServerIntegrationTest, ConcurrentStreamsWithMixedParametersAllFinish) {
  constexpr int kStreams = 40;
  struct Case {
    v1::GenerateRequest request;
    StreamResult result;
  };
  std::vector<Case> cases(kStreams);
  for (int i = 0; i < kStreams; ++i) {
    v1::GenerateRequest& r = cases[i].request;
    // Three prompts, so that some requests share a prefix (prefix cache) and others do not.
    r.set_text(i % 3 == 0 ? "Once upon a time" : i % 3 == 1 ? "The river" : "Numbers: 1 2 3");
    r.set_request_id(absl::StrCat("mixed-", i));
    v1::SamplingParams* p = r.mutable_sampling_params();
    p->set_max_tokens(4 + i % 9);
    p->set_ignore_eos(true);
    switch (i % 5) {
      case 0:
        p->set_temperature(0.0f);
        break;
      case 1:
        p->set_temperature(0.8f);
        p->set_top_k(20);
        p->set_seed(7);
        break;
      case 2:
        p->set_temperature(1.0f);
        p->set_top_p(0.9f);
        p->set_min_p(0.05f);
        p->set_logprobs(2);
        break;
      case 3:
        p->set_temperature(0.7f);
        p->set_repetition_penalty(1.3f);
        p->set_frequency_penalty(0.5f);
        p->set_presence_penalty(0.5f);
        (*p->mutable_logit_bias())[5] = -100.0f;
        break;
      case 4:
        p->set_temperature(1.2f);
        p->set_min_tokens(2);
        r.set_priority(i % 2 == 0 ? -1 : 1);
        break;
    }
  }
  std::vector<std::thread> threads;
  for (Case& c : cases) {
    threads.emplace_back([&] { c.result = Generate(*stub_, c.request); });
  }
  for (std::thread& t : threads) t.join();

  std::map<std::string, std::vector<uint32_t>> greedy_by_prompt;
  for (int i = 0; i < kStreams; ++i) {
    const Case& c = cases[i];
    SCOPED_TRACE(c.request.request_id());
    ASSERT_TRUE(c.result.status.ok()) << c.result.status.error_message();
    const uint32_t max_tokens = c.request.sampling_params().max_tokens();
    EXPECT_EQ(c.result.token_ids.size(), max_tokens);
    ASSERT_TRUE(c.result.complete.has_value());
    EXPECT_EQ(c.result.complete->finish_reason(), "length");
    EXPECT_EQ(c.result.complete->completion_tokens(), max_tokens);
    EXPECT_EQ(static_cast<size_t>(c.result.complete->output_ids_size()), max_tokens);
    if (c.request.sampling_params().has_logprobs()) {
      EXPECT_EQ(c.result.num_logprob_entries, static_cast<int>(max_tokens));
    }
    if (i % 5 == 3) {
      for (uint32_t id : c.result.token_ids) EXPECT_NE(id, 5u);  // logit_bias -100
    }
    if (i % 5 == 0) {
      // Greedy: the same prompt gives the same tokens whatever the batch around it.
      auto [it, inserted] = greedy_by_prompt.emplace(c.request.text(), c.result.token_ids);
      const size_t n = std::min(it->second.size(), c.result.token_ids.size());
      EXPECT_TRUE(std::equal(c.result.token_ids.begin(), c.result.token_ids.begin() + n,
                             it->second.begin()));
    }
  }
  EXPECT_TRUE(WaitUntilIdle(*stub_));
}

// Bad inputs over the wire: each gets its code with the field named, and the server keeps
// serving afterwards.
TEST_F(ServerIntegrationTest, BadInputTableOverTheWire) {
  struct BadCase {
    const char* name;
    std::function<void(v1::GenerateRequest&)> mutate;
    grpc::StatusCode code;
    const char* field;
  };
  auto sp = [](v1::GenerateRequest& r) { return r.mutable_sampling_params(); };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<BadCase> cases = {
      {"no input", [](auto& r) { r.clear_input(); }, grpc::StatusCode::INVALID_ARGUMENT, "input"},
      {"empty text", [](auto& r) { r.set_text(""); }, grpc::StatusCode::INVALID_ARGUMENT, "text"},
      {"empty token ids", [](auto& r) { r.mutable_tokenized(); },
       grpc::StatusCode::INVALID_ARGUMENT, "tokenized.input_ids"},
      {"token id >= vocab", [](auto& r) { r.mutable_tokenized()->add_input_ids(100000); },
       grpc::StatusCode::INVALID_ARGUMENT, "tokenized.input_ids[0]"},
      {"prompt longer than context",
       [](auto& r) {
         for (int i = 0; i < 9000; ++i) r.mutable_tokenized()->add_input_ids(7);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "tokenized.input_ids"},
      {"temperature NaN", [&](auto& r) { sp(r)->set_temperature(nan); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.temperature"},
      {"temperature < 0", [&](auto& r) { sp(r)->set_temperature(-1.0f); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.temperature"},
      {"top_p 0", [&](auto& r) { sp(r)->set_top_p(0.0f); }, grpc::StatusCode::INVALID_ARGUMENT,
       "sampling_params.top_p must be in (0, 1], got 0"},
      {"top_k 0", [&](auto& r) { sp(r)->set_top_k(0); }, grpc::StatusCode::INVALID_ARGUMENT,
       "sampling_params.top_k"},
      {"min_p 2", [&](auto& r) { sp(r)->set_min_p(2.0f); }, grpc::StatusCode::INVALID_ARGUMENT,
       "sampling_params.min_p"},
      {"repetition_penalty 0", [&](auto& r) { sp(r)->set_repetition_penalty(0.0f); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.repetition_penalty"},
      {"frequency_penalty 3", [&](auto& r) { sp(r)->set_frequency_penalty(3.0f); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.frequency_penalty"},
      {"presence_penalty NaN", [&](auto& r) { sp(r)->set_presence_penalty(nan); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.presence_penalty"},
      {"max_tokens 0", [&](auto& r) { sp(r)->set_max_tokens(0); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.max_tokens"},
      {"max_tokens beyond context", [&](auto& r) { sp(r)->set_max_tokens(1000000); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.max_tokens"},
      {"min_tokens > max_tokens",
       [&](auto& r) {
         sp(r)->set_max_tokens(2);
         sp(r)->set_min_tokens(3);
       },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.min_tokens"},
      {"17 stop strings",
       [&](auto& r) {
         for (int i = 0; i < 17; ++i) sp(r)->add_stop(absl::StrCat("x", i));
       },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.stop"},
      {"empty stop string", [&](auto& r) { sp(r)->add_stop(""); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.stop[0]"},
      {"stop_token_id >= vocab", [&](auto& r) { sp(r)->add_stop_token_ids(100000); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.stop_token_ids[0]"},
      {"logprobs 21", [&](auto& r) { sp(r)->set_logprobs(21); }, grpc::StatusCode::INVALID_ARGUMENT,
       "sampling_params.logprobs"},
      {"logit_bias token >= vocab", [&](auto& r) { (*sp(r)->mutable_logit_bias())[100000] = 1; },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.logit_bias"},
      {"logit_bias 500", [&](auto& r) { (*sp(r)->mutable_logit_bias())[3] = 500; },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.logit_bias[3]"},
      {"request_id too long", [](auto& r) { r.set_request_id(std::string(300, 'a')); },
       grpc::StatusCode::INVALID_ARGUMENT, "request_id"},
      {"request_id with control byte", [](auto& r) { r.set_request_id("a\tb"); },
       grpc::StatusCode::INVALID_ARGUMENT, "request_id"},
      {"message over 4 MiB", [](auto& r) { r.set_text(std::string(5 << 20, 'a')); },
       grpc::StatusCode::RESOURCE_EXHAUSTED, ""},
      {"temperature inf",
       [&](auto& r) { sp(r)->set_temperature(std::numeric_limits<float>::infinity()); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.temperature"},
      {"top_p > 1", [&](auto& r) { sp(r)->set_top_p(1.5f); }, grpc::StatusCode::INVALID_ARGUMENT,
       "sampling_params.top_p"},
      {"top_k < -1", [&](auto& r) { sp(r)->set_top_k(-2); }, grpc::StatusCode::INVALID_ARGUMENT,
       "sampling_params.top_k"},
      {"logprobs -1", [&](auto& r) { sp(r)->set_logprobs(-1); }, grpc::StatusCode::INVALID_ARGUMENT,
       "sampling_params.logprobs"},
      {"stop string of 257 bytes", [&](auto& r) { sp(r)->add_stop(std::string(257, 's')); },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.stop[0]"},
      {"logit_bias NaN", [&](auto& r) { (*sp(r)->mutable_logit_bias())[3] = nan; },
       grpc::StatusCode::INVALID_ARGUMENT, "sampling_params.logit_bias[3]"},
      {"token id 2^32-1", [](auto& r) { r.mutable_tokenized()->add_input_ids(0xFFFFFFFFu); },
       grpc::StatusCode::INVALID_ARGUMENT, "tokenized.input_ids[0]"},
  };
  ASSERT_GE(cases.size(), 30u);
  // Another client's stream runs through the whole table and must come out whole.
  StreamResult background;
  std::thread background_client(
      [&] { background = Generate(*stub_, Greedy("A client minding its own business", 120)); });
  for (const BadCase& c : cases) {
    v1::GenerateRequest request;
    request.set_text("Hello");
    c.mutate(request);
    const StreamResult result = Generate(*stub_, request);
    EXPECT_EQ(result.status.error_code(), c.code)
        << c.name << ": " << result.status.error_message();
    EXPECT_EQ(result.status.error_message().rfind(c.field, 0), 0u)
        << c.name << ": " << result.status.error_message();
    EXPECT_EQ(result.num_chunks, 0) << c.name;
  }

  // Bytes a typed client cannot produce. Field 3 is `text`, field 4 `sampling_params`, whose
  // field 10 is `stop`; field 99 exists nowhere.
  struct RawCase {
    const char* name;
    std::string bytes;
    const char* field;
  };
  const std::vector<RawCase> raw_cases = {
      {"invalid UTF-8 text", std::string("\x1a\x03\x61\xff\x62", 5), "text is not valid UTF-8"},
      {"invalid UTF-8 stop string", std::string("\x1a\x02Hi\x22\x05\x52\x03\x61\xc3\x28", 11),
       "sampling_params.stop[0] is not valid UTF-8"},
      {"unknown field", std::string("\x1a\x02Hi\xf8\x06\x01", 7), "GenerateRequest: unknown field"},
      {"truncated message", std::string("\x1a\x09Hi", 4), "the request is not a valid"},
  };
  for (const RawCase& c : raw_cases) {
    const grpc::Status status = RawGenerate(*channel_, c.bytes);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT)
        << c.name << ": " << status.error_message();
    EXPECT_EQ(status.error_message().rfind(c.field, 0), 0u)
        << c.name << ": " << status.error_message();
  }
  // Tokenize and Abort validate too.
  const grpc::Status tokenize =
      RawUnary(*channel_, "/moeserve.v1.Moeserve/Tokenize", std::string("\x0a\x01\xff", 3));
  EXPECT_EQ(tokenize.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(tokenize.error_message().rfind("text", 0), 0u) << tokenize.error_message();
  {
    grpc::ClientContext context;
    v1::AbortRequest request;
    request.add_request_ids("");
    v1::AbortResponse response;
    const grpc::Status abort = stub_->Abort(&context, request, &response);
    EXPECT_EQ(abort.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_EQ(abort.error_message(), "request_ids[0] must not be empty");
  }
  // A live request id cannot be reused.
  {
    auto running = StartLongStream("dup-id");
    v1::GenerateRequest request = Greedy("Hello", 2);
    request.set_request_id("dup-id");
    const StreamResult duplicate = Generate(*stub_, request);
    EXPECT_EQ(duplicate.status.error_code(), grpc::StatusCode::ALREADY_EXISTS)
        << duplicate.status.error_message();
    running->context.TryCancel();
  }

  // A deadline already passed when the call starts, and a call cancelled before it started.
  {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() - std::chrono::seconds(1));
    auto reader = stub_->Generate(&context, Greedy("Hello", 4));
    v1::GenerateResponse response;
    EXPECT_FALSE(reader->Read(&response));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  }
  {
    grpc::ClientContext context;
    context.TryCancel();
    auto reader = stub_->Generate(&context, Greedy("Hello", 4));
    v1::GenerateResponse response;
    EXPECT_FALSE(reader->Read(&response));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  background_client.join();
  ASSERT_TRUE(background.status.ok()) << background.status.error_message();
  EXPECT_EQ(background.token_ids.size(), 120u);

  // Still serving, nothing leaked.
  const StreamResult after = Generate(*stub_, Greedy("Hello", 3));
  ASSERT_TRUE(after.status.ok()) << after.status.error_message();
  EXPECT_EQ(after.token_ids.size(), 3u);
  EXPECT_TRUE(WaitUntilIdle(*stub_));
  const std::string metrics = ScrapeMetrics(server_.metrics_port());
  EXPECT_NE(metrics.find("code=\"INVALID_ARGUMENT\""), std::string::npos) << metrics;
  EXPECT_EQ(MetricValue(metrics, "moeserve_kv_cache_usage_perc{"), 0.0) << metrics;
  EXPECT_EQ(ServerInfo(*stub_).kv_cache_usage(), 0.0);
}

TEST_F(ServerIntegrationTest, ClientCancelMidStreamFreesKvBlocks) {
  auto stream = StartLongStream("to-cancel");
  v1::GenerateResponse response;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(stream->reader->Read(&response));
  EXPECT_GT(ServerInfo(*stub_).kv_cache_usage(), 0.0);
  stream->context.TryCancel();
  while (stream->reader->Read(&response)) {
  }
  EXPECT_EQ(stream->reader->Finish().error_code(), grpc::StatusCode::CANCELLED);

  EXPECT_TRUE(WaitUntilIdle(*stub_)) << ServerInfo(*stub_).DebugString();
  const std::string metrics = ScrapeMetrics(server_.metrics_port());
  EXPECT_EQ(MetricValue(metrics, "moeserve_kv_cache_usage_perc{"), 0.0) << metrics;
  EXPECT_EQ(MetricValue(metrics, "moeserve_num_requests_running{"), 0.0) << metrics;
  EXPECT_GE(
      MetricValue(metrics,
                  "moeserve_request_success_total{model_name=\"tiny\",finished_reason=\"abort\"}"),
      1.0)
      << metrics;
}

TEST_F(ServerIntegrationTest, AbortRpcEndsTheStreamWithFinishReasonAbort) {
  auto stream = StartLongStream("abort-me");
  {
    grpc::ClientContext context;
    v1::AbortRequest request;
    request.add_request_ids("abort-me");
    request.add_request_ids("no-such-request");
    v1::AbortResponse response;
    const grpc::Status status = stub_->Abort(&context, request, &response);
    // The unknown id is named; the caller's own id is aborted all the same.
    EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND) << status.error_message();
    EXPECT_NE(status.error_message().find("'no-such-request'"), std::string::npos)
        << status.error_message();
    EXPECT_EQ(status.error_message().find("abort-me"), std::string::npos) << status.error_message();
  }
  v1::GenerateResponse response;
  std::optional<v1::GenerateComplete> complete;
  uint32_t chunks = 1;
  while (stream->reader->Read(&response)) {
    if (response.has_complete()) complete = response.complete();
    if (response.has_chunk()) ++chunks;
  }
  const grpc::Status status = stream->reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  ASSERT_TRUE(complete.has_value());
  EXPECT_EQ(complete->finish_reason(), "abort");
  EXPECT_LT(complete->completion_tokens(), 3000u);
  EXPECT_EQ(static_cast<uint32_t>(complete->output_ids_size()), complete->completion_tokens());
  EXPECT_TRUE(WaitUntilIdle(*stub_));
}

// Issue 21, row 10: any client could end any request whose id it knew. Another connection's
// Abort of a running id gets NOT_FOUND, exactly as an unknown id, and the stream runs on; the
// submitting connection's Abort still ends it.
TEST_F(ServerIntegrationTest, AbortOfAnotherClientsRequestIsNotFound) {
  auto stream = StartLongStream("owned-by-first-client");
  auto other_stub = v1::Moeserve::NewStub(MakeChannel(server_.target()));
  auto abort = [](v1::Moeserve::Stub& stub, const std::string& id) {
    grpc::ClientContext context;
    v1::AbortRequest request;
    request.add_request_ids(id);
    v1::AbortResponse response;
    return stub.Abort(&context, request, &response);
  };
  const grpc::Status foreign = abort(*other_stub, "owned-by-first-client");
  EXPECT_EQ(foreign.error_code(), grpc::StatusCode::NOT_FOUND) << foreign.error_message();
  const grpc::Status unknown = abort(*other_stub, "never-submitted");
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(foreign.error_message(),
            std::regex_replace(unknown.error_message(), std::regex("never-submitted"),
                               "owned-by-first-client"));
  // Still running: more chunks arrive after the foreign abort.
  v1::GenerateResponse response;
  ASSERT_TRUE(stream->reader->Read(&response));
  ASSERT_TRUE(response.has_chunk());
  EXPECT_TRUE(abort(*stub_, "owned-by-first-client").ok());
  std::optional<v1::GenerateComplete> complete;
  while (stream->reader->Read(&response)) {
    if (response.has_complete()) complete = response.complete();
  }
  EXPECT_TRUE(stream->reader->Finish().ok());
  ASSERT_TRUE(complete.has_value());
  EXPECT_EQ(complete->finish_reason(), "abort");
  EXPECT_TRUE(WaitUntilIdle(*stub_));
}

TEST_F(ServerIntegrationTest, DeadlineExceededCancelsTheRequest) {
  const auto begin = std::chrono::steady_clock::now();
  const StreamResult result =
      Generate(*stub_, Greedy("A long story:", 4000), std::chrono::milliseconds(300));
  EXPECT_EQ(result.status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << result.status.error_message();
  EXPECT_LT(std::chrono::steady_clock::now() - begin, std::chrono::seconds(10));
  EXPECT_TRUE(WaitUntilIdle(*stub_)) << ServerInfo(*stub_).DebugString();
}

TEST_F(ServerIntegrationTest, StopStringsAndStopTokensEndWithStop) {
  // Find what greedy generates, then stop on its third token's id and on its text.
  const StreamResult free_run = Generate(*stub_, Greedy("Once upon a time", 8));
  ASSERT_TRUE(free_run.status.ok());
  ASSERT_EQ(free_run.token_ids.size(), 8u);

  v1::GenerateRequest by_token = Greedy("Once upon a time", 8);
  by_token.mutable_sampling_params()->add_stop_token_ids(free_run.token_ids[2]);
  const StreamResult token_stop = Generate(*stub_, by_token);
  ASSERT_TRUE(token_stop.complete.has_value());
  EXPECT_EQ(token_stop.complete->finish_reason(), "stop");
  EXPECT_EQ(token_stop.complete->matched_token_id(), free_run.token_ids[2]);

  // Two printable ASCII characters from the middle of the text (a stop string must be UTF-8).
  std::string stop_text;
  for (size_t i = free_run.text.size() / 2; i + 1 < free_run.text.size(); ++i) {
    if (std::isprint(static_cast<unsigned char>(free_run.text[i])) &&
        std::isprint(static_cast<unsigned char>(free_run.text[i + 1]))) {
      stop_text = free_run.text.substr(i, 2);
      break;
    }
  }
  if (stop_text.empty()) GTEST_SKIP() << "no ASCII text to stop on: " << free_run.text;
  v1::GenerateRequest by_string = Greedy("Once upon a time", 8);
  by_string.mutable_sampling_params()->add_stop(stop_text);
  const StreamResult string_stop = Generate(*stub_, by_string);
  ASSERT_TRUE(string_stop.complete.has_value());
  EXPECT_EQ(string_stop.complete->finish_reason(), "stop");
  EXPECT_EQ(string_stop.complete->matched_stop_str(), stop_text);
  EXPECT_EQ(string_stop.text.find(stop_text), std::string::npos);
}

TEST_F(ServerIntegrationTest, InfoRpcsDescribeModelAndServer) {
  grpc::ClientContext context;
  v1::GetModelInfoResponse model;
  ASSERT_TRUE(stub_->GetModelInfo(&context, {}, &model).ok());
  EXPECT_EQ(model.served_model_name(), "tiny");
  EXPECT_EQ(model.architecture(), "DeepseekV3ForCausalLM");
  EXPECT_EQ(model.model_type(), "deepseek_v3");
  EXPECT_EQ(model.vocab_size(), 512u);
  EXPECT_EQ(model.kv_cache_capacity_tokens(), 8192u);
  EXPECT_EQ(model.max_context_length(), 8192u);
  EXPECT_EQ(model.num_layers(), 3u);
  EXPECT_EQ(model.num_routed_experts(), 16u);
  EXPECT_EQ(model.num_experts_per_token(), 4u);
  EXPECT_EQ(model.dtype(), "float32");
  EXPECT_EQ(model.quantization(), "none");
  EXPECT_EQ(model.device(), "cpu");
  EXPECT_FALSE(model.eos_token_ids().empty());

  const v1::GetServerInfoResponse info = ServerInfo(*stub_);
  EXPECT_EQ(info.version(), "0.1.0");
  EXPECT_GT(info.uptime_seconds(), 0.0);
  EXPECT_FALSE(info.is_draining());
  EXPECT_EQ(info.active_requests(), 0u);

  grpc::ClientContext tokenize_context;
  v1::TokenizeRequest tokenize;
  tokenize.set_text("Hello world");
  v1::TokenizeResponse tokens;
  ASSERT_TRUE(stub_->Tokenize(&tokenize_context, tokenize, &tokens).ok());
  auto tokenizer = engine::Tokenizer::Load(model_dir_);
  const std::vector<int32_t> expected = *(*tokenizer)->Encode("Hello world", true);
  EXPECT_EQ(std::vector<int32_t>(tokens.token_ids().begin(), tokens.token_ids().end()), expected);
}

class QueueLimitTest : public ServerIntegrationTest {
 protected:
  void SetUp() override { StartServer({"--max-num-seqs", "1", "--max-queue", "0"}); }
};

TEST_F(QueueLimitTest, FullQueueIsResourceExhausted) {
  auto running = StartLongStream("occupies-the-engine");
  const StreamResult refused = Generate(*stub_, Greedy("Hello", 2));
  EXPECT_EQ(refused.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << refused.status.error_message();
  running->context.TryCancel();
  EXPECT_TRUE(WaitUntilIdle(*stub_));
  const StreamResult accepted = Generate(*stub_, Greedy("Hello", 2));
  EXPECT_TRUE(accepted.status.ok()) << accepted.status.error_message();
}

}  // namespace
}  // namespace moeserve::testing
