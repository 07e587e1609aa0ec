#include "engine/runner/sampling_inputs.h"

#include <cmath>

namespace moeserve::engine {

bool MaskStopTokensBeforeMinTokens(const Sequence& s, int64_t generated_index,
                                   absl::Span<float> row) {
  if (!MasksStopTokens(s, generated_index)) return false;
  if (!s.request.stop.ignore_eos) {
    for (int32_t id : s.request.stop.eos_token_ids) row[id] = -INFINITY;
  }
  for (int32_t id : s.request.stop.stop_token_ids) row[id] = -INFINITY;
  return true;
}

}  // namespace moeserve::engine
