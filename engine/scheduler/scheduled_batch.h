// One step's decisions, from the scheduler to the model runner and back to the loop.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/scheduler/sequence.h"

namespace moeserve::engine {

struct ScheduledSequence {
  Sequence* sequence;
  int64_t num_new_tokens;  // tokens [num_computed_tokens, + num_new_tokens) run this step
  // The chunk reaches the end of the sequence's tokens, so its last logits give a new token.
  bool samples;
  // Speculative decoding: the last num_draft_tokens of the new tokens are the sequence's first
  // draft_tokens, verified this step (only when `samples`).
  int64_t num_draft_tokens = 0;
};

struct ScheduledBatch {
  std::vector<ScheduledSequence> sequences;  // decodes and continued prefills first
  int64_t num_prefill_tokens = 0;            // in chunks of more than one token
  int64_t num_decode_tokens = 0;
  int64_t num_preempted = 0;  // sequences preempted to make room this step
  bool empty() const { return sequences.empty(); }
};

}  // namespace moeserve::engine
