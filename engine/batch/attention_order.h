// Reorders a step's sequences so the ones attending in MLA's absorbed form come first.
//
// The GPU backend runs every absorbed-form sequence (decode: one new token) in one MLA decode
// launch, which needs their tokens to be one contiguous run, and each naive-form sequence
// (a prefill chunk) in its own MHA prefill launch. Per-token work does not care about order,
// so DeepseekModelCuda reorders the batch on the host and gathers the logits back into the
// caller's order through `logit_rows`. Pure host code, tested on the CPU backend (reordered
// batch + gathered rows == original logits).
#pragma once

#include <cstdint>
#include <vector>

#include "engine/batch/forward_batch.h"
#include "engine/batch/forward_options.h"

namespace moeserve::engine {

// Whether a sequence with `num_new_tokens` new tokens attends in the absorbed form: kAuto
// picks it for decode (one token), the naive form for prefill chunks.
bool UsesAbsorbedMla(MlaForm form, int64_t num_new_tokens);

struct AttentionOrderedBatch {
  ForwardBatch batch;  // the same sequences, absorbed-form ones first, each in original order
  int64_t num_absorbed_seqs = 0;
  int64_t num_absorbed_tokens = 0;
  // Tokens of `batch` whose logits the caller asked for, in the caller's order: the last token
  // of each original sequence, or every original token (LogitsFor::kAllTokens).
  std::vector<int32_t> logit_rows;
};

AttentionOrderedBatch OrderForAttention(const ForwardBatch& batch, MlaForm form,
                                        LogitsFor logits_for);

}  // namespace moeserve::engine
