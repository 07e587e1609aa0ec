#include "engine/runner/step_model.h"

#include "absl/types/span.h"
#include "engine/sampling/sampler.h"
#include "engine/status_macros.h"

namespace moeserve::engine {

absl::StatusOr<std::vector<int32_t>> StepModel::ForwardArgmax(const ForwardBatch& batch,
                                                              const ForwardOptions& options) {
  ForwardOptions last_tokens = options;
  last_tokens.logits_for = LogitsFor::kLastTokenOfEachSequence;
  MOESERVE_ASSIGN_OR_RETURN(std::vector<float> logits, Forward(batch, last_tokens));
  const int64_t vocab = config().vocab_size;
  std::vector<int32_t> ids(static_cast<size_t>(batch.num_seqs()));
  for (size_t s = 0; s < ids.size(); ++s) {
    ids[s] = GreedyToken(absl::MakeConstSpan(logits).subspan(s * vocab, vocab));
  }
  return ids;
}

absl::StatusOr<ForwardOutput> StepModel::ForwardWithHidden(const ForwardBatch& /*batch*/,
                                                           const ForwardOptions& /*options*/) {
  return absl::UnimplementedError("this backend does not run speculative decoding (MTP)");
}

absl::StatusOr<ForwardOutput> StepModel::ForwardMtp(const ForwardBatch& /*batch*/,
                                                    absl::Span<const float> /*prev_hidden*/,
                                                    const ForwardOptions& /*options*/) {
  return absl::UnimplementedError("this backend does not run speculative decoding (MTP)");
}

}  // namespace moeserve::engine
