#include "engine/output_processor.h"

namespace moeserve::engine {
namespace {

TokenEvent BaseEvent(const Sequence& s) {
  TokenEvent event;
  event.request_id = s.request.request_id;
  event.usage = Usage{.prompt_tokens = s.num_prompt_tokens,
                      .completion_tokens = s.num_generated(),
                      .cached_tokens = s.num_cached_tokens};
  event.timestamps = s.timestamps;
  return event;
}

}  // namespace

TokenEvent ProcessSampledToken(Sequence& s, const SampledToken& token) {
  const Clock::time_point now = Clock::now();
  if (!s.timestamps.first_token) s.timestamps.first_token = now;
  const std::string delta = s.detokenizer ? s.detokenizer->Append(token.token_id) : "";
  StopDecision decision = s.stop_checker.OnToken(token.token_id, delta, s.num_generated());
  if (decision.finish == FinishReason::kLength && s.detokenizer) {
    decision.text += s.detokenizer->Finish();  // unfinished character → U+FFFD, as a full decode
  }
  if (decision.finish) s.timestamps.finished = now;

  TokenEvent event = BaseEvent(s);
  GeneratedToken generated{.token_id = token.token_id};
  if (s.request.sampling.num_logprobs >= 0) {
    generated.logprob = token.logprob;
    generated.top_logprobs = token.top_logprobs;
  }
  event.tokens.push_back(std::move(generated));
  event.text_delta = std::move(decision.text);
  event.finish = decision.finish;
  event.matched_stop_string = std::move(decision.matched_stop_string);
  event.matched_stop_token = decision.matched_stop_token;
  return event;
}

TokenEvent MakeFinalEvent(Sequence& s, FinishReason reason, std::string error_message) {
  s.timestamps.finished = Clock::now();
  TokenEvent event = BaseEvent(s);
  event.text_delta = s.stop_checker.Flush();
  if (s.detokenizer) event.text_delta += s.detokenizer->Finish();
  event.finish = reason;
  event.error_message = std::move(error_message);
  return event;
}

}  // namespace moeserve::engine
