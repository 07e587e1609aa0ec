#include "engine/sampling/logits_processors.h"

#include <cstddef>

namespace moeserve::engine {
namespace {

bool HasPenalties(const SamplingParams& p) {
  return p.repetition_penalty != 1.0f || p.frequency_penalty != 0.0f || p.presence_penalty != 0.0f;
}

bool InVocab(int32_t token_id, size_t vocab) {
  return token_id >= 0 && static_cast<size_t>(token_id) < vocab;
}

// HF RepetitionPenaltyLogitsProcessor: dividing a positive logit and multiplying a negative one
// both make the token less likely when r > 1.
float RepetitionPenalized(float logit, float r) { return logit > 0.0f ? logit / r : logit * r; }

// Applies the repetition penalty once to every distinct id of `tokens` not yet in `seen`.
void PenalizeRepeats(absl::Span<const int32_t> tokens, float r, absl::Span<float> logits,
                     std::vector<uint8_t>& seen) {
  for (int32_t t : tokens) {
    if (!InVocab(t, logits.size()) || seen[t] != 0) continue;
    seen[t] = 1;
    logits[t] = RepetitionPenalized(logits[t], r);
  }
}

void ClearSeen(absl::Span<const int32_t> tokens, std::vector<uint8_t>& seen) {
  for (int32_t t : tokens) {
    if (InVocab(t, seen.size())) seen[t] = 0;
  }
}

}  // namespace

bool HasLogitsProcessors(const SamplingParams& params) {
  return !params.logit_bias.empty() || HasPenalties(params);
}

void ApplyLogitBias(const SamplingParams& params, absl::Span<float> logits) {
  for (const auto& [token_id, bias] : params.logit_bias) {
    if (InVocab(token_id, logits.size())) logits[token_id] += bias;
  }
}

void ApplyPenalties(const SamplingParams& params, const PenaltyContext& context,
                    absl::Span<float> logits, PenaltyScratch* scratch) {
  if (!HasPenalties(params)) return;
  PenaltyScratch local;
  PenaltyScratch& s = scratch != nullptr ? *scratch : local;
  const size_t vocab = logits.size();
  // A resized scratch array is all zeros; otherwise the previous call left it zeroed.
  if (params.repetition_penalty != 1.0f) {
    if (s.seen.size() != vocab) s.seen.assign(vocab, 0);
    PenalizeRepeats(context.prompt_tokens, params.repetition_penalty, logits, s.seen);
    PenalizeRepeats(context.generated_tokens, params.repetition_penalty, logits, s.seen);
    ClearSeen(context.prompt_tokens, s.seen);
    ClearSeen(context.generated_tokens, s.seen);
  }

  if (params.frequency_penalty == 0.0f && params.presence_penalty == 0.0f) return;
  if (s.generated_count.size() != vocab) s.generated_count.assign(vocab, 0);
  for (int32_t t : context.generated_tokens) {
    if (InVocab(t, vocab)) ++s.generated_count[t];
  }
  // Each distinct token is handled at its first occurrence; zeroing its count then both marks
  // it done and leaves the scratch clean for the next call.
  for (int32_t t : context.generated_tokens) {
    if (!InVocab(t, vocab) || s.generated_count[t] == 0) continue;
    // Two subtractions, as vLLM's apply_penalties does them.
    logits[t] -= params.frequency_penalty * static_cast<float>(s.generated_count[t]);
    logits[t] -= params.presence_penalty;
    s.generated_count[t] = 0;
  }
}

void ApplyLogitsProcessors(const SamplingParams& params, const PenaltyContext& context,
                           absl::Span<float> logits, PenaltyScratch* scratch) {
  ApplyLogitBias(params, logits);
  ApplyPenalties(params, context, logits, scratch);
}

}  // namespace moeserve::engine
