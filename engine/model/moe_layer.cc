#include "engine/model/moe_layer.h"

#include <algorithm>
#include <vector>

#include "engine/model/dense_mlp.h"
#include "engine/ops/linear/gemm.h"

namespace moeserve::engine {
namespace {

// Multiply-adds of a layer's expert work up to which MoeForward runs whole experts on different
// threads instead of splitting each expert's GEMMs (~4 M: kjv-v3-tiny's decode step is 0.3 M,
// a 4-token verification 1.2 M, batch 8 2.4 M; one V2-Lite expert for one token is 8.7 M).
constexpr int64_t kAcrossExpertsMaxMacs = int64_t{1} << 22;

}  // namespace

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

  // The experts with tokens routed to them, and the layer's expert work in multiply-adds.
  std::vector<int64_t> active;
  int64_t macs = moe.shared.has_value() ? rows * 3 * moe.shared->width() * hidden : 0;
  for (int64_t e = 0; e < num_experts; ++e) {
    const auto n = static_cast<int64_t>(assigned[e].size());
    if (expert_token_counts != nullptr) expert_token_counts[e] += n;
    if (n == 0) continue;
    active.push_back(e);
    macs += n * 3 * moe.experts[e].width() * hidden;
  }
  const auto num_routed = static_cast<int64_t>(active.size());
  // routed_out[i]: expert active[i]'s output for its tokens, [its tokens, hidden].
  std::vector<std::vector<float>> routed_out(static_cast<size_t>(num_routed));
  auto run_expert = [&](int64_t i) {
    const auto& tokens = assigned[active[i]];
    const auto n = static_cast<int64_t>(tokens.size());
    std::vector<float> gathered(static_cast<size_t>(n * hidden));
    for (int64_t t = 0; t < n; ++t) {
      std::copy(x + tokens[t].first * hidden, x + (tokens[t].first + 1) * hidden,
                gathered.begin() + t * hidden);
    }
    routed_out[i].resize(static_cast<size_t>(n * hidden));
    MlpForward(moe.experts[active[i]], gathered.data(), n, quantize_activations,
               routed_out[i].data());
  };
  // Across experts: when the whole layer's expert work is this small (a decode or verification
  // step of a small model: a token or two per expert), each expert's GEMMs are too small to
  // split between threads (weight_gemm.h), so one thread idled while the other ran them one
  // after another; instead each thread takes whole experts (the shared one among them). Experts
  // run concurrently write only their own outputs, and every GEMM's arithmetic is the same on
  // any thread.
  const int64_t num_items = num_routed + (moe.shared.has_value() ? 1 : 0);
  const bool across_experts = num_items > 1 && macs <= kAcrossExpertsMaxMacs;
  std::vector<float> shared_out;
  if (across_experts) {
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t i = 0; i < num_items; ++i) {
      if (i < num_routed) {
        run_expert(i);
      } else {
        shared_out.resize(static_cast<size_t>(rows * hidden));
        MlpForward(*moe.shared, x, rows, quantize_activations, shared_out.data());
      }
    }
  } else {
    for (int64_t i = 0; i < num_routed; ++i) run_expert(i);
  }

  // Un-permute with the routing weights, experts in ascending order, then the shared expert:
  // the same additions in the same order on either path.
  std::fill(out, out + rows * hidden, 0.0f);
  for (int64_t i = 0; i < num_routed; ++i) {
    const auto& tokens = assigned[active[i]];
    for (size_t t = 0; t < tokens.size(); ++t) {
      float* dst = out + tokens[t].first * hidden;
      const float* src = routed_out[i].data() + t * hidden;
      const float w = tokens[t].second;
      for (int64_t d = 0; d < hidden; ++d) dst[d] += w * src[d];
    }
  }
  if (!moe.shared.has_value()) return;
  if (across_experts) {
    for (int64_t j = 0; j < rows * hidden; ++j) out[j] += shared_out[j];
  } else {
    MlpForward(*moe.shared, x, rows, quantize_activations, out, /*accumulate=*/true);
  }
}

}  // namespace moeserve::engine
