// What sampling needs from a sequence besides its logits, shared by the model runner's plain
// and speculative steps.
#pragma once

#include <cstdint>

#include "absl/types/span.h"
#include "engine/scheduler/sequence.h"

namespace moeserve::engine {

// Before min_new_tokens, EOS and the stop ids may not be chosen (vLLM's
// MinTokensLogitsProcessor): sets them to -inf in `row`, the logits of the sequence's
// output token number `generated_index` (0-based). Returns whether it changed anything.
bool MaskStopTokensBeforeMinTokens(const Sequence& s, int64_t generated_index,
                                   absl::Span<float> row);

// Whether MaskStopTokensBeforeMinTokens would change the row of output token `generated_index`.
inline bool MasksStopTokens(const Sequence& s, int64_t generated_index) {
  return generated_index < s.request.stop.min_new_tokens;
}

}  // namespace moeserve::engine
