// TokenEvent → GenerateResponse: chunks carry ids, text, cumulative usage and logprobs as asked;
// the complete message carries the finish reason, matched stop, timing and every output id.
#include "server/response_builder.h"

#include <gtest/gtest.h>

#include <chrono>

namespace moeserve::server {
namespace {

engine::TokenEvent Event(std::vector<int32_t> ids, std::string text, int64_t completion) {
  engine::TokenEvent event;
  for (int32_t id : ids) {
    engine::GeneratedToken token;
    token.token_id = id;
    token.logprob = -0.5f * static_cast<float>(id);
    token.top_logprobs = {{id, token.logprob}, {id + 1, -9.0f}};
    event.tokens.push_back(token);
  }
  event.text_delta = std::move(text);
  event.usage = {.prompt_tokens = 7, .completion_tokens = completion, .cached_tokens = 3};
  return event;
}

TEST(ResponseBuilderTest, ChunkCarriesIdsTextAndUsage) {
  ResponseBuilder builder(/*num_logprobs=*/-1);
  const auto response = builder.Chunk(Event({42}, "hi", 1));
  ASSERT_TRUE(response.has_value());
  ASSERT_TRUE(response->has_chunk());
  const auto& chunk = response->chunk();
  EXPECT_EQ(std::vector<uint32_t>(chunk.token_ids().begin(), chunk.token_ids().end()),
            std::vector<uint32_t>{42});
  EXPECT_EQ(chunk.text(), "hi");
  EXPECT_EQ(chunk.prompt_tokens(), 7u);
  EXPECT_EQ(chunk.completion_tokens(), 1u);
  EXPECT_EQ(chunk.cached_tokens(), 3u);
  EXPECT_FALSE(chunk.has_output_logprobs());
}

TEST(ResponseBuilderTest, LogprobsFollowTheRequest) {
  ResponseBuilder chosen_only(0);
  const auto a = chosen_only.Chunk(Event({4}, "", 1));
  ASSERT_TRUE(a->chunk().has_output_logprobs());
  EXPECT_EQ(a->chunk().output_logprobs().token_logprobs(0), -2.0f);
  EXPECT_EQ(a->chunk().output_logprobs().token_ids(0), 4u);
  EXPECT_EQ(a->chunk().output_logprobs().top_logprobs_size(), 0);

  ResponseBuilder with_top(2);
  const auto b = with_top.Chunk(Event({4}, "", 1));
  ASSERT_EQ(b->chunk().output_logprobs().top_logprobs_size(), 1);
  const auto& top = b->chunk().output_logprobs().top_logprobs(0);
  EXPECT_EQ(std::vector<uint32_t>(top.token_ids().begin(), top.token_ids().end()),
            (std::vector<uint32_t>{4, 5}));
  EXPECT_EQ(top.values(1), -9.0f);
}

TEST(ResponseBuilderTest, EmptyEventMakesNoChunk) {
  ResponseBuilder builder(-1);
  EXPECT_FALSE(builder.Chunk(Event({}, "", 0)).has_value());
}

TEST(ResponseBuilderTest, CompleteAccumulatesOutputIdsAndTiming) {
  ResponseBuilder builder(-1);
  builder.Chunk(Event({1}, "a", 1));
  builder.Chunk(Event({2, 3}, "b", 3));
  engine::TokenEvent last = Event({9}, "c", 4);
  builder.Chunk(last);
  last.finish = engine::FinishReason::kStop;
  last.matched_stop_string = std::string(1, 'c');
  const engine::Clock::time_point t0 = engine::Clock::now();
  last.timestamps.queued = t0;
  last.timestamps.scheduled = t0 + std::chrono::milliseconds(10);
  last.timestamps.first_token = t0 + std::chrono::milliseconds(30);
  last.timestamps.finished = t0 + std::chrono::milliseconds(100);
  const auto response = builder.Complete(last);
  ASSERT_TRUE(response.has_complete());
  const auto& complete = response.complete();
  EXPECT_EQ(complete.finish_reason(), "stop");
  EXPECT_EQ(complete.matched_stop_str(), "c");
  EXPECT_EQ(std::vector<uint32_t>(complete.output_ids().begin(), complete.output_ids().end()),
            (std::vector<uint32_t>{1, 2, 3, 9}));
  EXPECT_EQ(complete.completion_tokens(), 4u);
  EXPECT_NEAR(complete.timing().queue_seconds(), 0.010, 1e-9);
  EXPECT_NEAR(complete.timing().time_to_first_token_seconds(), 0.030, 1e-9);
  EXPECT_NEAR(complete.timing().e2e_seconds(), 0.100, 1e-9);
}

TEST(ResponseBuilderTest, MatchedStopTokenAndAbort) {
  ResponseBuilder builder(-1);
  engine::TokenEvent eos = Event({}, "", 2);
  eos.finish = engine::FinishReason::kStop;
  eos.matched_stop_token = 1;
  EXPECT_EQ(builder.Complete(eos).complete().matched_token_id(), 1u);

  engine::TokenEvent abort = Event({}, "", 0);
  abort.finish = engine::FinishReason::kAbort;
  const auto complete = builder.Complete(abort).complete();
  EXPECT_EQ(complete.finish_reason(), "abort");
  EXPECT_EQ(complete.matched_stop_case(), moeserve::v1::GenerateComplete::MATCHED_STOP_NOT_SET);
  EXPECT_EQ(complete.timing().time_to_first_token_seconds(), 0.0);  // never produced a token
}

}  // namespace
}  // namespace moeserve::server
