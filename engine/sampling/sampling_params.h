// One request's sampling settings, and their validation.
//
// Field semantics follow vLLM's SamplingParams (and OpenAI's API for the penalties and
// logit_bias), so clients written for those servers get the same behaviour. The order in which
// the sampler applies them is documented in sampler.h. A plain value type; the engine checks it
// once with ValidateSamplingParams() when the request arrives, and the sampler assumes it valid.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace moeserve::engine {

// OpenAI's top_logprobs limit (0..20); vLLM's default max_logprobs is 20 as well.
inline constexpr int32_t kMaxNumLogprobs = 20;
// OpenAI's logit_bias range.
inline constexpr float kMaxLogitBias = 100.0f;
// OpenAI's frequency_penalty / presence_penalty range.
inline constexpr float kMaxAdditivePenalty = 2.0f;
// Temperatures below this sample greedily: vLLM's _SAMPLING_EPS. Dividing by a smaller
// temperature would only sharpen the distribution onto the argmax anyway.
inline constexpr float kGreedyTemperature = 1e-5f;

struct SamplingParams {
  float temperature = 1.0f;  // >= 0; below kGreedyTemperature (vLLM's 1e-5) means greedy
  int32_t top_k = -1;        // -1 or 0: disabled; else keep the k most likely (ties at k kept)
  float top_p = 1.0f;        // (0, 1]; keep the smallest most-likely set with mass >= top_p
  float min_p = 0.0f;        // [0, 1]; drop tokens with p < min_p * p_max
  // > 0. HF/vLLM semantics: for every token seen in prompt + generated (once, not per
  // occurrence) logit > 0 ? logit / r : logit * r.
  float repetition_penalty = 1.0f;
  float frequency_penalty = 0.0f;  // [-2, 2]; logit -= f * count of the token in generated
  float presence_penalty = 0.0f;   // [-2, 2]; logit -= p if the token occurs in generated
  // (token id, bias) pairs added to the logits; ids in [0, vocab), bias in [-100, 100].
  // Entries with the same id add up.
  std::vector<std::pair<int32_t, float>> logit_bias;
  // Per-request seed. Without one the engine picks a seed for the sequence, so the sequence is
  // still reproducible from (seed, number of sampled tokens), see SequenceRng.
  std::optional<uint64_t> seed;
  // -1: no logprobs; 0: the chosen token's logprob only; N > 0: also the top-N alternatives
  // (N <= kMaxNumLogprobs).
  int32_t num_logprobs = -1;

  bool greedy() const { return temperature < kGreedyTemperature; }
};

// Checks every field against the ranges above. The error is InvalidArgument and its message
// starts with the field name, e.g. "temperature must be finite and >= 0, got nan", so the
// server can prefix its own path ("sampling.").
absl::Status ValidateSamplingParams(const SamplingParams& params, int64_t vocab_size);

}  // namespace moeserve::engine
