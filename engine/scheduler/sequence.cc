#include "engine/scheduler/sequence.h"

namespace moeserve::engine {

Sequence::Sequence(GenerateRequest request_in, TokenSink* sink_in, int64_t arrival_number_in,
                   uint64_t seed, const Tokenizer* tokenizer)
    : request(std::move(request_in)),
      sink(sink_in),
      arrival_number(arrival_number_in),
      tokens(std::move(request.prompt_token_ids)),
      num_prompt_tokens(static_cast<int64_t>(tokens.size())),
      rng(seed),
      stop_checker(request.stop) {
  request.prompt_token_ids.clear();
  if (tokenizer != nullptr) detokenizer.emplace(*tokenizer, request.skip_special_tokens);
  timestamps.queued = request.arrival_time;
}

}  // namespace moeserve::engine
