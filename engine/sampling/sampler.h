// The sampler: one row of logits → one token (CPU reference implementation).
//
// Order of processing, following vLLM's v0 Sampler and Hugging Face's logits warpers
// (GenerationMixin._get_logits_processor: Temperature, TopK, TopP, MinP):
//   1. logit bias, 2. repetition / frequency / presence penalties  (logits_processors.h)
//   3. greedy when temperature < kGreedyTemperature: argmax of the processed logits, ties to the
//      lower id (torch.argmax returns the first maximum).
//   4. temperature: p ∝ exp(logit / T).
//   5. top-k: keep the k largest; tokens tied with the k-th are kept too (HF TopKLogitsWarper
//      and vLLM mask `logits < kth_value`).
//   6. top-p over the top-k survivors renormalised: in descending probability (ties: lower id
//      first) keep the smallest prefix whose mass is >= top_p; at least one token.
//   7. min-p: drop tokens with p < min_p * p_max (vLLM _apply_min_p, HF MinPLogitsWarper).
//   8. renormalise and draw by inverse CDF with ONE uniform from the sequence's SequenceRng,
//      walking the kept tokens in ascending id order, so the token depends only on the kept
//      distribution and the uniform, not on how the truncation was computed.
// (vLLM v1 moved min-p before top-k/top-p; the two orders keep the same set except that v1's
// top-p mass is measured after min-p.)
//
// Every call consumes exactly one uniform, greedy or not, so a sequence's draws stay aligned:
// token i always uses draw i of its seed, whatever the batch, whatever earlier steps did.
//
// Logprobs follow vLLM's default (logprobs_mode "raw_logprobs"): log_softmax of the RAW model
// logits, before bias, penalties, temperature and truncation. They describe what the model
// predicted, not the distribution the token was drawn from.
//
// Cost for a vocabulary of V tokens: a few linear passes and at most V exps, whatever k, top_p
// or the size of the nucleus: top-k finds the k-th largest logit and top-p the probability where
// the nucleus ends by radix selection (radix_select.h), never by sorting. The functions are
// thread-compatible: concurrent calls need their own SamplingWorkspace and SequenceRng.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/types/span.h"
#include "engine/sampling/logits_processors.h"
#include "engine/sampling/radix_select.h"
#include "engine/sampling/sampling_params.h"
#include "engine/sampling/sequence_rng.h"

namespace moeserve::engine {

struct TokenLogprob {
  int32_t token_id = 0;
  float logprob = 0.0f;
};

struct SampledToken {
  int32_t token_id = 0;
  // log_softmax(raw logits)[token_id] when params.num_logprobs >= 0, else 0.
  float logprob = 0.0f;
  // The num_logprobs most likely tokens under the raw logits, in descending logprob (ties: lower
  // id first); may or may not contain token_id. Empty when num_logprobs <= 0.
  std::vector<TokenLogprob> top_logprobs;
};

// One token of the distribution the sampler draws from.
struct TokenProbability {
  int32_t token_id = 0;
  double probability = 0.0;
};

// Scratch buffers reused across calls; one per thread. Optional: the overloads without one
// allocate their own. The contents between calls are unspecified.
struct SamplingWorkspace {
  std::vector<float> logits;       // processed copy, only when HasLogitsProcessors(params)
  std::vector<float> weights;      // [vocab] unnormalised probabilities of the kept tokens
  std::vector<double> block_sums;  // sums of `weights` per block, for the draw
  RadixScratch radix;
  PenaltyScratch penalty;
};

// Samples one token from one non-empty row of logits [vocab]. Deterministic given (logits, params,
// context, rng.seed(), rng.counter()); advances rng by one draw. params must be valid
// (ValidateSamplingParams). If every processed logit is -inf or NaN it returns the argmax rule's
// answer (token 0 when all are NaN) rather than failing.
SampledToken SampleToken(absl::Span<const float> logits, const SamplingParams& params,
                         const PenaltyContext& context, SequenceRng& rng);
SampledToken SampleToken(absl::Span<const float> logits, const SamplingParams& params,
                         const PenaltyContext& context, SequenceRng& rng,
                         SamplingWorkspace& workspace);

// The distribution SampleToken draws from after steps 1-8: the tokens with probability > 0 in
// ascending id order, probabilities summing to 1. Greedy gives the argmax with probability 1.
// For tests and debugging.
std::vector<TokenProbability> SamplingDistribution(absl::Span<const float> logits,
                                                   const SamplingParams& params,
                                                   const PenaltyContext& context);

// Step 3's argmax on raw logits: the largest value, ties to the lower id, NaN never wins (0 if
// every value is NaN). The CUDA backend's LaunchArgmaxF32 follows the same rule.
int32_t GreedyToken(absl::Span<const float> logits);

// True when SampleToken's answer for `params` is GreedyToken of the raw logits and nothing else
// is wanted: greedy, no logit bias, no penalties, no logprobs. The model runner then asks the
// backend for argmax ids instead of whole logit rows (a GPU keeps the logits on the device).
bool NeedsOnlyArgmax(const SamplingParams& params);

// Speculative verification of one draft token at one position (Leviathan et al., "Fast
// Inference from Transformers via Speculative Decoding", 2023; Chen et al., "Accelerating Large
// Language Model Decoding with Speculative Sampling", 2023) for a deterministic drafter, whose
// proposal q is one-hot on `draft` (the MTP module's argmax). With p SampleToken's distribution
// for these logits: greedy params accept iff the argmax is `draft`, and the token is the argmax;
// otherwise `draft` is accepted with probability min(1, p(draft) / q(draft)) = p(draft), and on
// rejection the token is drawn from max(0, p - q) renormalised, i.e. p with `draft` removed.
// Either way the token is distributed exactly as SampleToken's. Draws one uniform for an
// accepted (or greedy) token and two for a rejected one. Logprobs as SampleToken's.
struct VerifiedToken {
  SampledToken token;
  bool accepted = false;  // token.token_id == draft
};
VerifiedToken VerifyDraftToken(absl::Span<const float> logits, const SamplingParams& params,
                               const PenaltyContext& context, int32_t draft, SequenceRng& rng,
                               SamplingWorkspace& workspace);

// One row of a batched call.
struct SamplingRow {
  const SamplingParams* params = nullptr;
  PenaltyContext context;
  SequenceRng* rng = nullptr;
};

// Samples every row of logits [rows.size(), vocab_size] (row-major; logits.size() must be
// rows.size() * vocab_size), rows in parallel with OpenMP. Each row needs its own SequenceRng.
// Row r's result and rng advance are exactly those of SampleToken on that row alone.
std::vector<SampledToken> SampleBatch(absl::Span<const float> logits, int64_t vocab_size,
                                      absl::Span<const SamplingRow> rows);

}  // namespace moeserve::engine
