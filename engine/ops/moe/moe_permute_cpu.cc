#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/ops/linear/fp8_segmented_layout.h"
#include "engine/ops/moe/moe_permute.h"

namespace moeserve::engine {

int64_t MoePermutedRowsUpperBound(int64_t num_tokens, int64_t top_k, int64_t num_experts,
                                  int64_t alignment) {
  const int64_t entries = num_tokens * top_k;
  return entries + std::min(entries, num_experts) * (alignment - 1);
}

absl::StatusOr<MoePermutation> BuildMoePermutation(absl::Span<const int32_t> expert_ids,
                                                   int64_t num_tokens, int64_t top_k,
                                                   int64_t num_experts, int64_t alignment) {
  if (num_tokens < 0 || top_k <= 0 || num_experts <= 0 || alignment <= 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "BuildMoePermutation: need num_tokens >= 0 and positive top_k, num_experts, "
        "alignment; got num_tokens=",
        num_tokens, " top_k=", top_k, " num_experts=", num_experts, " alignment=", alignment));
  }
  const int64_t entries = num_tokens * top_k;
  if (static_cast<int64_t>(expert_ids.size()) != entries) {
    return absl::InvalidArgumentError(absl::StrCat("BuildMoePermutation: expert_ids has ",
                                                   expert_ids.size(), " entries, expected ",
                                                   num_tokens, " x ", top_k));
  }
  MoePermutation p;
  p.num_tokens = num_tokens;
  p.top_k = top_k;
  p.num_experts = num_experts;
  p.alignment = alignment;
  p.counts.assign(static_cast<size_t>(num_experts), 0);
  for (int64_t i = 0; i < entries; ++i) {
    const int32_t e = expert_ids[i];
    if (e < 0 || e >= num_experts) {
      return absl::InvalidArgumentError(absl::StrCat("BuildMoePermutation: expert_ids[", i / top_k,
                                                     ", ", i % top_k, "] = ", e, " is outside [0, ",
                                                     num_experts, ")"));
    }
    ++p.counts[e];
  }
  p.offsets.assign(static_cast<size_t>(num_experts + 1), 0);
  for (int64_t e = 0; e < num_experts; ++e) {
    p.offsets[e + 1] = static_cast<int32_t>(p.offsets[e] + AlignUp(p.counts[e], alignment));
  }
  // Counting sort: entries are visited in (t, slot) order, so each segment keeps that order.
  p.gather.assign(static_cast<size_t>(p.offsets[num_experts]), -1);
  p.scatter.assign(static_cast<size_t>(entries), -1);
  std::vector<int32_t> next_row(p.offsets.begin(), p.offsets.end() - 1);
  for (int64_t i = 0; i < entries; ++i) {
    const int32_t row = next_row[expert_ids[i]]++;
    p.gather[row] = static_cast<int32_t>(i);
    p.scatter[i] = row;
  }
  return p;
}

void UnpermuteMoeCpu(const float* expert_out, absl::Span<const int32_t> scatter,
                     const float* weights, int64_t num_tokens, int64_t top_k, int64_t hidden,
                     const float* shared, float* out) {
  for (int64_t t = 0; t < num_tokens; ++t) {
    float* dst = out + t * hidden;
    std::fill(dst, dst + hidden, 0.0f);
    for (int64_t slot = 0; slot < top_k; ++slot) {
      const int32_t row = scatter[t * top_k + slot];
      if (row < 0) continue;
      const float w = weights[t * top_k + slot];
      const float* src = expert_out + static_cast<int64_t>(row) * hidden;
      for (int64_t d = 0; d < hidden; ++d) dst[d] += w * src[d];
    }
    if (shared != nullptr) {
      for (int64_t d = 0; d < hidden; ++d) dst[d] += shared[t * hidden + d];
    }
  }
}

}  // namespace moeserve::engine
