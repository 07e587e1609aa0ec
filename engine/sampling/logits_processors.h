// Logits processors: logit bias and the repetition / frequency / presence penalties.
//
// These are the sampling steps that change logits depending on the request and its token
// history, before temperature and truncation (sampler.h has the whole order). They follow
// vLLM, which follows Hugging Face and OpenAI:
//   1. logit_bias: logits[id] += bias (vLLM's LogitBiasLogitsProcessor, applied before the
//      penalties).
//   2. repetition_penalty r, for every distinct token in prompt + generated:
//      logit > 0 ? logit / r : logit * r (HF RepetitionPenaltyLogitsProcessor; vLLM
//      apply_penalties, which uses the prompt and the output tokens).
//   3. frequency_penalty f and presence_penalty p, over generated tokens only (OpenAI):
//      logit -= f * count; logit -= p * (count > 0).
// Token ids outside [0, vocab) in the history are ignored (the model cannot produce them).
//
// Stateless functions; a PenaltyScratch must not be shared between threads.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "engine/sampling/sampling_params.h"

namespace moeserve::engine {

// The token history a sequence's penalties look at.
struct PenaltyContext {
  absl::Span<const int32_t> prompt_tokens;
  absl::Span<const int32_t> generated_tokens;
};

// Per-token counters sized to the vocabulary, all zero between calls. Reusing one avoids two
// vocabulary-sized allocations per call; the calls touch only the history's entries.
struct PenaltyScratch {
  std::vector<int32_t> generated_count;
  std::vector<uint8_t> seen;
};

// True when params change logits at all (a bias or a non-neutral penalty); false lets the
// sampler read the model's logits without copying them.
bool HasLogitsProcessors(const SamplingParams& params);

// Step 1 on one row of logits [vocab], in place. Ids outside the row are ignored.
void ApplyLogitBias(const SamplingParams& params, absl::Span<float> logits);

// Steps 2 and 3 on one row of logits [vocab], in place. O(history) with scratch; without one,
// it allocates two vocabulary-sized arrays.
void ApplyPenalties(const SamplingParams& params, const PenaltyContext& context,
                    absl::Span<float> logits, PenaltyScratch* scratch = nullptr);

// Steps 1-3 in order: the processed logits the sampler's temperature and truncation see.
void ApplyLogitsProcessors(const SamplingParams& params, const PenaltyContext& context,
                           absl::Span<float> logits, PenaltyScratch* scratch = nullptr);

}  // namespace moeserve::engine
