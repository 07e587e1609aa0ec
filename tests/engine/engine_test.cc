// The engine end to end on the CPU backend with tiny-v3: batch invariance across chunking,
// preemption and prefix-cache hits; cancellation; shutdown; no KV block leaks; validation.
#include "engine/engine.h"

#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "absl/strings/str_cat.h"
#include "tests/testing/collecting_sink.h"
#include "tests/testing/engine_requests.h"
#include "tests/testing/test_checkpoints.h"

namespace moeserve::engine {
namespace {

using testing::CollectingSink;

class EngineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = moeserve::testing::TestCheckpointDir("tiny-v3", false);
    auto model = DeepseekModel::Load(dir);
    ASSERT_TRUE(model.ok()) << model.status();
    model_ = model->release();
    auto tokenizer = Tokenizer::Load(dir);
    ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
    tokenizer_ = tokenizer->release();
  }
  static void TearDownTestSuite() {
    delete model_;
    delete tokenizer_;
  }

  static GenerateRequest Greedy(std::string id, std::vector<int32_t> prompt, int64_t max_tokens) {
    return testing::GreedyRequest(std::move(id), std::move(prompt), max_tokens);
  }

  // Requests of random lengths: every third shares a 70-token prefix (prefix-cache hits) and
  // the others generate long enough to need new KV blocks while decoding (preemption).
  static std::vector<GenerateRequest> MakeRequests(int count, uint64_t seed) {
    return testing::MixedGreedyRequests(count, seed, 500);
  }

  // Each request alone, in an engine with room to spare and no prefix cache.
  static std::vector<std::vector<int32_t>> RunAlone(const std::vector<GenerateRequest>& requests) {
    EngineOptions options{.num_kv_blocks = 64, .enable_prefix_caching = false};
    auto engine = Engine::Create(*model_, tokenizer_, options);
    EXPECT_TRUE(engine.ok());
    std::vector<std::vector<int32_t>> tokens;
    for (const GenerateRequest& r : requests) {
      CollectingSink sink;
      auto handle = (*engine)->Submit(r, &sink);
      EXPECT_TRUE(handle.ok()) << handle.status();
      EXPECT_TRUE(sink.WaitFinished());
      tokens.push_back(sink.token_ids());
    }
    return tokens;
  }

  static DeepseekModel* model_;
  static Tokenizer* tokenizer_;
};

DeepseekModel* EngineTest::model_ = nullptr;
Tokenizer* EngineTest::tokenizer_ = nullptr;

void ExpectNoLeak(const Engine& engine) {
  const EngineStats stats = engine.Stats();
  EXPECT_EQ(stats.num_running, 0);
  EXPECT_EQ(stats.num_waiting, 0);
  EXPECT_EQ(stats.num_kv_blocks_used, 0) << "KV blocks still referenced after every request ended";
}

TEST_F(EngineTest, BatchInvariance_GreedyTokensEqualAloneAndUnderPressure) {
  const std::vector<GenerateRequest> requests = MakeRequests(12, 7);
  const auto alone = RunAlone(requests);

  // Small token budget (chunked prefill), few blocks (preemption), prefix cache on,
  // requests arriving at random times.
  EngineOptions options{
      .num_kv_blocks = 10, .max_num_seqs = 6, .max_num_batched_tokens = 40, .max_model_len = 640};
  auto engine = Engine::Create(*model_, tokenizer_, options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<CollectingSink> sinks(requests.size());
  std::vector<RequestHandle> handles;
  std::mt19937 rng(11);
  for (size_t i = 0; i < requests.size(); ++i) {
    auto handle = (*engine)->Submit(requests[i], &sinks[i]);
    ASSERT_TRUE(handle.ok()) << handle.status();
    handles.push_back(*std::move(handle));
    // The first half arrives at once (certain pressure), the rest at random times.
    if (i >= requests.size() / 2)
      std::this_thread::sleep_for(std::chrono::milliseconds(rng() % 15));
  }
  for (size_t i = 0; i < requests.size(); ++i) {
    ASSERT_TRUE(sinks[i].WaitFinished());
    EXPECT_EQ(sinks[i].token_ids(), alone[i]) << "request " << i;
    EXPECT_EQ(*sinks[i].last().finish, FinishReason::kLength);
  }
  (*engine)->Shutdown(ShutdownMode::kDrain);  // the final stats snapshot
  const EngineStats stats = (*engine)->Stats();
  EXPECT_GT(stats.total_preemptions, 0) << "the test should exercise preemption";
  EXPECT_GT(stats.prefix_hit_tokens, 0) << "the test should exercise prefix-cache hits";
  ExpectNoLeak(**engine);
}

// Plain greedy requests take the runner's argmax-only path (StepModel::ForwardArgmax); asking for
// logprobs forces the full-logits sampler. Both must choose the same tokens, alone and when the
// two kinds share steps.
TEST_F(EngineTest, ArgmaxOnlyStepsChooseWhatTheSamplerChooses) {
  std::vector<GenerateRequest> plain = MakeRequests(6, 23);
  std::vector<GenerateRequest> with_logprobs = plain;
  for (GenerateRequest& r : with_logprobs) {
    r.request_id += "-lp";
    r.sampling.num_logprobs = 0;
  }
  const auto expected = RunAlone(with_logprobs);
  EXPECT_EQ(RunAlone(plain), expected);

  EngineOptions options{.num_kv_blocks = 64, .max_num_seqs = 12, .max_num_batched_tokens = 64};
  auto engine = Engine::Create(*model_, tokenizer_, options);
  ASSERT_TRUE(engine.ok()) << engine.status();
  std::vector<CollectingSink> sinks(2 * plain.size());
  std::vector<RequestHandle> handles;
  for (size_t i = 0; i < plain.size(); ++i) {
    for (const GenerateRequest* r : {&plain[i], &with_logprobs[i]}) {
      auto handle = (*engine)->Submit(*r, &sinks[handles.size()]);
      ASSERT_TRUE(handle.ok()) << handle.status();
      handles.push_back(*std::move(handle));
    }
  }
  for (size_t i = 0; i < sinks.size(); ++i) {
    ASSERT_TRUE(sinks[i].WaitFinished());
    EXPECT_EQ(sinks[i].token_ids(), expected[i / 2]) << "request " << i;
  }
  (*engine)->Shutdown(ShutdownMode::kDrain);  // the final stats snapshot
  ExpectNoLeak(**engine);
}

TEST_F(EngineTest, StreamedTextEqualsDecodingAllTokens) {
  auto engine = Engine::Create(*model_, tokenizer_, EngineOptions{});
  ASSERT_TRUE(engine.ok());
  auto prompt = tokenizer_->Encode("In the beginning God created");
  ASSERT_TRUE(prompt.ok());
  GenerateRequest r = Greedy("text", *prompt, 24);
  r.sampling.temperature = 1.0f;
  r.sampling.seed = 5;
  r.sampling.num_logprobs = 2;
  CollectingSink sink;
  auto handle = (*engine)->Submit(r, &sink);
  ASSERT_TRUE(handle.ok());
  ASSERT_TRUE(sink.WaitFinished());
  const std::vector<int32_t> ids = sink.token_ids();
  ASSERT_EQ(ids.size(), 24u);
  EXPECT_EQ(sink.text(), LossyUtf8(tokenizer_->Decode(ids, /*skip_special_tokens=*/true)));
  const TokenEvent last = sink.last();
  EXPECT_EQ(last.usage.prompt_tokens, static_cast<int64_t>(prompt->size()));
  EXPECT_EQ(last.usage.completion_tokens, 24);
  ASSERT_TRUE(last.timestamps.first_token && last.timestamps.finished);
  EXPECT_LE(*last.timestamps.first_token, *last.timestamps.finished);
  EXPECT_EQ(sink.events()[0].tokens[0].top_logprobs.size(), 2u);
}

TEST_F(EngineTest, SameSeedSameTokensRegardlessOfBatch) {
  auto engine = Engine::Create(*model_, tokenizer_, EngineOptions{});
  ASSERT_TRUE(engine.ok());
  GenerateRequest sampled = Greedy("s", {5, 6, 7, 8}, 16);
  sampled.sampling.temperature = 1.2f;
  sampled.sampling.top_p = 0.9f;
  sampled.sampling.seed = 1234;
  CollectingSink alone;
  {
    auto h = (*engine)->Submit(sampled, &alone);
    ASSERT_TRUE(h.ok());
    ASSERT_TRUE(alone.WaitFinished());
  }
  std::vector<CollectingSink> others(5);
  std::vector<RequestHandle> handles;
  for (size_t i = 0; i < others.size(); ++i) {
    GenerateRequest other = Greedy(absl::StrCat("o", i), {9, 10, static_cast<int32_t>(i)}, 16);
    other.sampling.temperature = 1.0f;
    handles.push_back(*(*engine)->Submit(other, &others[i]));
  }
  sampled.request_id = "s2";
  CollectingSink together;
  auto h = (*engine)->Submit(sampled, &together);
  ASSERT_TRUE(h.ok());
  ASSERT_TRUE(together.WaitFinished());
  EXPECT_EQ(alone.token_ids(), together.token_ids());
}

TEST_F(EngineTest, CancelMidPrefillAndMidDecodeFreesBlocks) {
  EngineOptions options{.max_num_batched_tokens = 16};
  auto engine = Engine::Create(*model_, tokenizer_, options);
  ASSERT_TRUE(engine.ok());
  std::vector<int32_t> long_prompt(300, 42);
  CollectingSink prefill_sink, decode_sink;
  auto prefill = (*engine)->Submit(Greedy("prefill", long_prompt, 10), &prefill_sink);
  auto decode = (*engine)->Submit(Greedy("decode", {1, 2, 3}, 400), &decode_sink);
  ASSERT_TRUE(prefill.ok() && decode.ok());
  prefill->Cancel();  // 300 tokens at 16 per step: still prefilling
  while (decode_sink.events().size() < 3) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  decode->Cancel();
  ASSERT_TRUE(prefill_sink.WaitFinished() && decode_sink.WaitFinished());
  EXPECT_EQ(*prefill_sink.last().finish, FinishReason::kAbort);
  EXPECT_EQ(*decode_sink.last().finish, FinishReason::kAbort);
  EXPECT_LT(decode_sink.token_ids().size(), 400u);
  (*engine)->Shutdown(ShutdownMode::kDrain);
  ExpectNoLeak(**engine);
}

TEST_F(EngineTest, DroppedHandleCancels) {
  auto engine = Engine::Create(*model_, tokenizer_, EngineOptions{});
  ASSERT_TRUE(engine.ok());
  CollectingSink sink;
  {
    auto handle = (*engine)->Submit(Greedy("dropped", {1, 2, 3}, 500), &sink);
    ASSERT_TRUE(handle.ok());
  }
  ASSERT_TRUE(sink.WaitFinished());
  EXPECT_EQ(*sink.last().finish, FinishReason::kAbort);
}

TEST_F(EngineTest, ShutdownDrainFinishesAndAbortEndsEverything) {
  auto engine = Engine::Create(*model_, tokenizer_, EngineOptions{});
  ASSERT_TRUE(engine.ok());
  std::vector<CollectingSink> sinks(4);
  std::vector<RequestHandle> handles;
  for (size_t i = 0; i < sinks.size(); ++i) {
    auto h = (*engine)->Submit(Greedy(absl::StrCat("d", i), {4, 5, 6}, 8), &sinks[i]);
    ASSERT_TRUE(h.ok());
    h->Detach();
  }
  (*engine)->Shutdown(ShutdownMode::kDrain);
  for (auto& s : sinks) {
    ASSERT_EQ(s.num_finished(), 1);
    EXPECT_EQ(*s.last().finish, FinishReason::kLength);
  }
  CollectingSink late;
  EXPECT_EQ((*engine)->Submit(Greedy("late", {1}, 2), &late).status().code(),
            absl::StatusCode::kUnavailable);

  auto second = Engine::Create(*model_, tokenizer_, EngineOptions{});
  ASSERT_TRUE(second.ok());
  std::vector<CollectingSink> aborted(3);
  for (size_t i = 0; i < aborted.size(); ++i) {
    auto h = (*second)->Submit(Greedy(absl::StrCat("a", i), {4, 5, 6}, 1000), &aborted[i]);
    ASSERT_TRUE(h.ok());
    h->Detach();
  }
  (*second)->Shutdown(ShutdownMode::kAbort);
  for (auto& s : aborted) {
    ASSERT_EQ(s.num_finished(), 1);
    EXPECT_EQ(*s.last().finish, FinishReason::kAbort);
  }
  ExpectNoLeak(**second);
}

TEST_F(EngineTest, RequestIdIsReusableOnceTheFinalEventArrives) {
  auto engine = Engine::Create(*model_, tokenizer_, EngineOptions{});
  ASSERT_TRUE(engine.ok());
  for (int round = 0; round < 20; ++round) {
    CollectingSink sink;
    auto handle = (*engine)->Submit(Greedy("same-id", {1, 2, 3}, 2), &sink);
    ASSERT_TRUE(handle.ok()) << "round " << round << ": " << handle.status();
    ASSERT_TRUE(sink.WaitFinished());
    handle->Detach();
  }
}

TEST_F(EngineTest, RejectsBadRequestsAndDuplicatesAndOverload) {
  EngineOptions options{.max_num_seqs = 1, .max_model_len = 256, .max_waiting_requests = 1};
  auto engine = Engine::Create(*model_, tokenizer_, options);
  ASSERT_TRUE(engine.ok());
  CollectingSink sink;
  EXPECT_EQ((*engine)->Submit(Greedy("e", {}, 4), &sink).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ((*engine)->Submit(Greedy("v", {9999}, 4), &sink).status().code(),
            absl::StatusCode::kInvalidArgument);
  auto too_long = (*engine)->Submit(Greedy("l", std::vector<int32_t>(250, 3), 10), &sink);
  EXPECT_EQ(too_long.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(too_long.status().message().find("max_model_len"), std::string::npos);
  GenerateRequest bad_temperature = Greedy("t", {1}, 4);
  bad_temperature.sampling.temperature = -1.0f;
  EXPECT_NE((*engine)->Submit(bad_temperature, &sink).status().message().find("temperature"),
            std::string::npos);

  CollectingSink s1, s2, s3;
  auto first = (*engine)->Submit(Greedy("x", {1, 2}, 200), &s1);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ((*engine)->Submit(Greedy("x", {1, 2}, 4), &s2).status().code(),
            absl::StatusCode::kAlreadyExists);
  auto second = (*engine)->Submit(Greedy("y", {1, 2}, 200), &s2);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ((*engine)->Submit(Greedy("z", {1, 2}, 4), &s3).status().code(),
            absl::StatusCode::kResourceExhausted);
  // The running requests' final events go to s1 and s2, which must still exist (engine.h).
  (*engine)->Shutdown(ShutdownMode::kAbort);
}

}  // namespace
}  // namespace moeserve::engine
