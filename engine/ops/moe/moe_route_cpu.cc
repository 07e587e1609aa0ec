#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "engine/ops/cpu/parallel_for.h"
#include "engine/ops/moe/moe_route.h"

namespace moeserve::engine {
namespace {

constexpr float kMasked = -std::numeric_limits<float>::infinity();

// A NaN (a diverged activation or bias) reads as −inf, so it is never chosen over a finite
// value and the sorts below see a strict weak order. The CUDA router does the same.
float NanAsMasked(float value) { return std::isnan(value) ? kMasked : value; }

// Indices of the `count` largest values, descending; ties to the lower index.
void TopIndices(const std::vector<float>& values, int64_t count, std::vector<int32_t>& out) {
  out.resize(values.size());
  std::iota(out.begin(), out.end(), 0);
  std::partial_sort(out.begin(), out.begin() + count, out.end(), [&](int32_t a, int32_t b) {
    return values[a] > values[b] || (values[a] == values[b] && a < b);
  });
  out.resize(static_cast<size_t>(count));
}

// Logits already NaN-free; all −inf gives all-zero scores (no expert has any weight).
void Softmax(const float* logits, int64_t n, float* out) {
  float max_logit = logits[0];
  for (int64_t i = 1; i < n; ++i) max_logit = std::max(max_logit, logits[i]);
  if (max_logit == kMasked) {
    std::fill(out, out + n, 0.0f);
    return;
  }
  float sum = 0.0f;
  for (int64_t i = 0; i < n; ++i) {
    out[i] = std::exp(logits[i] - max_logit);
    sum += out[i];
  }
  for (int64_t i = 0; i < n; ++i) out[i] /= sum;
}

// Masks (to -inf) every expert outside the topk_groups groups with the best group score:
// the max selection score (group-limited greedy) or the sum of the top two (noaux_tc).
void MaskGroups(const RoutingParams& p, std::vector<float>& selection) {
  const int64_t group_size = p.num_experts / p.num_groups;
  std::vector<float> group_scores(static_cast<size_t>(p.num_groups));
  for (int64_t g = 0; g < p.num_groups; ++g) {
    const float* begin = selection.data() + g * group_size;
    if (p.rule == RoutingRule::kSigmoidNoauxTc) {
      std::vector<float> members(begin, begin + group_size);
      std::partial_sort(members.begin(), members.begin() + 2, members.end(), std::greater<>());
      group_scores[g] = members[0] + members[1];
    } else {
      group_scores[g] = *std::max_element(begin, begin + group_size);
    }
  }
  std::vector<int32_t> kept;
  TopIndices(group_scores, p.topk_groups, kept);
  std::vector<bool> keep(static_cast<size_t>(p.num_groups), false);
  for (int32_t g : kept) keep[g] = true;
  for (int64_t e = 0; e < p.num_experts; ++e) {
    if (!keep[e / group_size]) selection[e] = kMasked;
  }
}

}  // namespace

void RouteCpu(const RoutingParams& p, const float* logits, int64_t num_tokens, int32_t* expert_ids,
              float* weights) {
  const int64_t e_count = p.num_experts;
  ParallelFor(num_tokens, num_tokens * e_count > 4096, [&](int64_t t) {
    std::vector<float> row(logits + t * e_count, logits + (t + 1) * e_count);
    for (float& logit : row) logit = NanAsMasked(logit);
    std::vector<float> scores(static_cast<size_t>(e_count));
    if (p.rule == RoutingRule::kSigmoidNoauxTc) {
      for (int64_t e = 0; e < e_count; ++e) scores[e] = 1.0f / (1.0f + std::exp(-row[e]));
    } else {
      Softmax(row.data(), e_count, scores.data());
    }
    // The bias only decides the selection; weights come from the unbiased scores.
    std::vector<float> selection = scores;
    if (p.correction_bias != nullptr) {
      for (int64_t e = 0; e < e_count; ++e) {
        selection[e] = NanAsMasked(selection[e] + p.correction_bias[e]);
      }
    }
    if (p.rule != RoutingRule::kSoftmaxGreedy && p.num_groups > 1) MaskGroups(p, selection);

    std::vector<int32_t> chosen;
    TopIndices(selection, p.top_k, chosen);
    float sum = 0.0f;
    for (int64_t i = 0; i < p.top_k; ++i) {
      expert_ids[t * p.top_k + i] = chosen[i];
      weights[t * p.top_k + i] = scores[chosen[i]];
      sum += scores[chosen[i]];
    }
    for (int64_t i = 0; i < p.top_k; ++i) {
      float& w = weights[t * p.top_k + i];
      if (p.renormalize) w /= sum + 1e-20f;
      w *= p.scaling;
    }
  });
}

}  // namespace moeserve::engine
