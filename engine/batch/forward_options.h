// Switches of one forward pass that tests and tools flip; the server uses the defaults.
#pragma once

namespace moeserve::engine {

// Which MLA form computes attention (reference §3.1).
enum class MlaForm {
  kAuto,      // naive (MHA) for sequences with several new tokens, absorbed for one
  kNaive,     // always expand the cached latents through kv_b_proj
  kAbsorbed,  // always attend in the 576-dim latent space
};

enum class LogitsFor {
  kLastTokenOfEachSequence,  // [num_seqs, vocab]: what sampling needs
  kAllTokens,                // [num_tokens, vocab]: for golden comparisons and scoring
};

struct ForwardOptions {
  MlaForm mla_form = MlaForm::kAuto;
  LogitsFor logits_for = LogitsFor::kLastTokenOfEachSequence;
  // Round the input of every FP8 linear through e4m3 per token per 128 channels, as the GPU
  // path must (reference §4). Off reproduces a dequantize-then-fp32 reference exactly.
  bool quantize_activations = true;
};

}  // namespace moeserve::engine
