// Switches of one forward pass that tests and tools flip; the server uses the defaults.
#pragma once

#include <cstdint>
#include <vector>

namespace moeserve::engine {

// Which MLA form computes attention (reference §3.1).
enum class MlaForm {
  kAuto,      // naive (MHA) for sequences with several new tokens, absorbed for one
  kNaive,     // always expand the cached latents through kv_b_proj
  kAbsorbed,  // always attend in the 576-dim latent space
};

enum class LogitsFor {
  // [num_seqs, vocab]: what sampling needs; or, with ForwardOptions::logits_per_sequence, the
  // last n_s tokens of each sequence s (speculative verification), [Σ n_s, vocab].
  kLastTokenOfEachSequence,
  kAllTokens,  // [num_tokens, vocab]: for golden comparisons and scoring
};

struct ForwardOptions {
  MlaForm mla_form = MlaForm::kAuto;
  LogitsFor logits_for = LogitsFor::kLastTokenOfEachSequence;
  // Round the input of every FP8 linear through e4m3 per token per 128 channels, as the GPU
  // path must (reference §4). Off reproduces a dequantize-then-fp32 reference exactly.
  bool quantize_activations = true;
  // kLastTokenOfEachSequence only: logits for the last logits_per_sequence[s] tokens of each
  // sequence s, each in [1, its new tokens] (ForwardMtp also takes 0: the sequence's positions
  // only write their latents, for drafts from later steps). Empty: one per sequence.
  std::vector<int32_t> logits_per_sequence;
};

// Logits and the hidden states that go with them (ForwardWithHidden, ForwardMtp).
struct ForwardOutput {
  std::vector<float> logits;  // [rows, vocab], rows per ForwardOptions (LogitRows)
  // ForwardWithHidden: [num_tokens, hidden], every token's state after the final norm (what the
  // first MTP module reads). ForwardMtp: [rows, hidden], the module's state after
  // shared_head.norm for the logits' rows (what the next draft step reads).
  std::vector<float> hidden;
};

}  // namespace moeserve::engine
