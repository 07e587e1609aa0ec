// A step's result, from the model runner (plain or speculative) back to the engine loop.
#pragma once

#include <cstdint>
#include <vector>

#include "engine/sampling/sampler.h"
#include "engine/scheduler/sequence.h"

namespace moeserve::engine {

// What one sequence gained in a step, in order: without speculation one sampled token; with it,
// the accepted draft tokens and then one token sampled from the target model (the correction
// of the first rejected draft, or the bonus token after the last accepted one).
struct SequenceOutput {
  Sequence* sequence = nullptr;
  std::vector<SampledToken> tokens;
  // Speculative decoding: the MTP module's drafts for the tokens after these (next step's).
  std::vector<int32_t> next_drafts;
};

struct StepOutput {
  std::vector<SequenceOutput> sequences;  // one per ScheduledSequence that samples, batch order
  // Per ScheduledSequence (every one, batch order): how many of its draft tokens were accepted.
  std::vector<int64_t> accepted_drafts;
};

}  // namespace moeserve::engine
