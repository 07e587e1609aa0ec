#include "engine/model/moe_layer.h"

#include <algorithm>
#include <vector>

#include "engine/model/dense_mlp.h"
#include "engine/ops/linear/gemm.h"

namespace moeserve::engine {

RoutingParams MakeRoutingParams(const ModelConfig& c, const MoeWeights& moe) {
  RoutingParams p;
  switch (c.topk_method) {
    case TopkMethod::kGreedy:
      p.rule = RoutingRule::kSoftmaxGreedy;
      break;
    case TopkMethod::kGroupLimitedGreedy:
      p.rule = RoutingRule::kSoftmaxGroupLimited;
      break;
    case TopkMethod::kNoauxTc:
      p.rule = RoutingRule::kSigmoidNoauxTc;
      break;
  }
  p.num_experts = c.n_routed_experts;
  p.top_k = c.num_experts_per_tok;
  p.num_groups = c.n_group;
  p.topk_groups = c.topk_group;
  p.renormalize = c.norm_topk_prob && c.num_experts_per_tok > 1;
  p.scaling = static_cast<float>(c.routed_scaling_factor);
  p.correction_bias = moe.correction_bias.empty() ? nullptr : moe.correction_bias.data();
  return p;
}

void MoeForward(const ModelConfig& c, const MoeWeights& moe, const float* x, int64_t rows,
                bool quantize_activations, float* out, int64_t* expert_token_counts) {
  const int64_t hidden = c.hidden_size, num_experts = c.n_routed_experts;
  const int64_t top_k = c.num_experts_per_tok;

  // Router logits in fp32 (reference §3.3), never through FP8.
  std::vector<float> logits(static_cast<size_t>(rows * num_experts));
  GemmCpu(x, hidden, moe.router.data(), logits.data(), num_experts, rows, num_experts, hidden);
  std::vector<int32_t> expert_ids(static_cast<size_t>(rows * top_k));
  std::vector<float> route_weights(static_cast<size_t>(rows * top_k));
  RouteCpu(MakeRoutingParams(c, moe), logits.data(), rows, expert_ids.data(), route_weights.data());

  // Permute: for each expert, the (token, weight) pairs routed to it, in token order.
  std::vector<std::vector<std::pair<int64_t, float>>> assigned(static_cast<size_t>(num_experts));
  for (int64_t t = 0; t < rows; ++t) {
    for (int64_t i = 0; i < top_k; ++i) {
      assigned[expert_ids[t * top_k + i]].emplace_back(t, route_weights[t * top_k + i]);
    }
  }

  std::fill(out, out + rows * hidden, 0.0f);
  std::vector<float> gathered, expert_out;
  for (int64_t e = 0; e < num_experts; ++e) {
    const auto& tokens = assigned[e];
    if (expert_token_counts != nullptr) expert_token_counts[e] += tokens.size();
    if (tokens.empty()) continue;
    const int64_t n = static_cast<int64_t>(tokens.size());
    gathered.resize(static_cast<size_t>(n * hidden));
    for (int64_t i = 0; i < n; ++i) {
      std::copy(x + tokens[i].first * hidden, x + (tokens[i].first + 1) * hidden,
                gathered.begin() + i * hidden);
    }
    expert_out.resize(static_cast<size_t>(n * hidden));
    MlpForward(moe.experts[e], gathered.data(), n, quantize_activations, expert_out.data());
    // Un-permute with the routing weights.
    for (int64_t i = 0; i < n; ++i) {
      float* dst = out + tokens[i].first * hidden;
      const float* src = expert_out.data() + i * hidden;
      const float w = tokens[i].second;
      for (int64_t d = 0; d < hidden; ++d) dst[d] += w * src[d];
    }
  }
  if (moe.shared.has_value()) {
    MlpForward(*moe.shared, x, rows, quantize_activations, out, /*accumulate=*/true);
  }
}

}  // namespace moeserve::engine
