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

#include "absl/status/statusor.h"
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
  // Tokens of `batch` whose logits the caller asked for (LogitRows under the caller's
  // options: the last token of each sequence, its last logits_per_sequence[s], or every token),
  // in the caller's order.
  std::vector<int32_t> logit_rows;
  // new_index[i]: where the caller's token i sits in `batch` (per-token inputs such as the MTP
  // module's previous hidden states are permuted with it).
  std::vector<int32_t> new_index;
};

// InvalidArgument when options.logits_per_sequence does not fit the batch (LogitRows).
absl::StatusOr<AttentionOrderedBatch> OrderForAttention(const ForwardBatch& batch,
                                                        const ForwardOptions& options);

}  // namespace moeserve::engine
