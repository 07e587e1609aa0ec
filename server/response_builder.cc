#include "server/response_builder.h"

#include <chrono>
#include <string>

#include "engine/stop_checker.h"

namespace moeserve::server {

namespace v1 = moeserve::v1;

double SecondsBetween(engine::Clock::time_point from,
                      const std::optional<engine::Clock::time_point>& to) {
  if (!to) return 0.0;
  return std::chrono::duration<double>(*to - from).count();
}

std::optional<v1::GenerateResponse> ResponseBuilder::Chunk(const engine::TokenEvent& event) {
  if (event.tokens.empty() && event.text_delta.empty()) return std::nullopt;
  v1::GenerateResponse response;
  v1::GenerateStreamChunk* chunk = response.mutable_chunk();
  for (const engine::GeneratedToken& token : event.tokens) {
    const auto id = static_cast<uint32_t>(token.token_id);
    chunk->add_token_ids(id);
    output_ids_.push_back(id);
  }
  chunk->set_text(event.text_delta);
  if (num_logprobs_ >= 0 && !event.tokens.empty()) {
    v1::OutputLogProbs* logprobs = chunk->mutable_output_logprobs();
    for (const engine::GeneratedToken& token : event.tokens) {
      logprobs->add_token_logprobs(token.logprob);
      logprobs->add_token_ids(static_cast<uint32_t>(token.token_id));
      if (num_logprobs_ > 0) {
        v1::TopLogProbs* top = logprobs->add_top_logprobs();
        for (const engine::TokenLogprob& alternative : token.top_logprobs) {
          top->add_values(alternative.logprob);
          top->add_token_ids(static_cast<uint32_t>(alternative.token_id));
        }
      }
    }
  }
  chunk->set_prompt_tokens(static_cast<uint32_t>(event.usage.prompt_tokens));
  chunk->set_completion_tokens(static_cast<uint32_t>(event.usage.completion_tokens));
  chunk->set_cached_tokens(static_cast<uint32_t>(event.usage.cached_tokens));
  return response;
}

v1::GenerateResponse ResponseBuilder::Complete(const engine::TokenEvent& event) const {
  v1::GenerateResponse response;
  v1::GenerateComplete* complete = response.mutable_complete();
  const engine::FinishReason reason = event.finish.value_or(engine::FinishReason::kAbort);
  complete->set_finish_reason(std::string(engine::FinishReasonName(reason)));
  if (event.matched_stop_token) {
    complete->set_matched_token_id(static_cast<uint32_t>(*event.matched_stop_token));
  } else if (!event.matched_stop_string.empty()) {
    complete->set_matched_stop_str(event.matched_stop_string);
  }
  complete->set_prompt_tokens(static_cast<uint32_t>(event.usage.prompt_tokens));
  complete->set_completion_tokens(static_cast<uint32_t>(event.usage.completion_tokens));
  complete->set_cached_tokens(static_cast<uint32_t>(event.usage.cached_tokens));
  const engine::RequestTimestamps& t = event.timestamps;
  v1::Timing* timing = complete->mutable_timing();
  timing->set_queue_seconds(SecondsBetween(t.queued, t.scheduled));
  timing->set_time_to_first_token_seconds(SecondsBetween(t.queued, t.first_token));
  timing->set_e2e_seconds(SecondsBetween(t.queued, t.finished));
  complete->mutable_output_ids()->Add(output_ids_.begin(), output_ids_.end());
  return response;
}

}  // namespace moeserve::server
